//! Test support, compiled only into the test-only build (`--features fault-injection`,
//! `make module-faults`, never the shipped module: `make module` refuses one that carries
//! it): hooks that panic on demand, as a bug nobody has found would, for
//! tests/e2e/test_faults.py (every hook runs behind catch_unwind).

use certbound_core::flow::Host;

/// A request carrying this header, with a hook's name as its value, makes that hook panic.
pub const HEADER: &str = "x-certbound-test-panic";
/// A filter_name that makes http_filter_config_new panic.
pub const CONFIG_NEW: &[u8] = b"certbound-test-panic-config-new";

#[allow(clippy::panic)]
pub fn stream(hook: &str, host: &mut impl Host) {
    if host.request_header(HEADER).as_deref() == Some(hook) {
        panic!("fault injected by {HEADER}: {hook}");
    }
}

#[allow(clippy::panic)]
pub fn config_new(name: &[u8]) {
    if name == CONFIG_NEW {
        panic!("fault injected by filter_name: http_filter_config_new");
    }
}
