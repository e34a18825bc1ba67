//! Test support, compiled only into the test-only build (`--features fault-injection`,
//! `make module-faults`, never the shipped module: `make module` refuses one that carries
//! it): hooks that panic on demand (tests/fault-injection), as a bug nobody has found
//! would, for tests/e2e/test_faults.py (every hook runs behind catch_unwind).

use certbound_core::flow::Host;
use certbound_fault_injection::HEADER;

pub fn stream(hook: &str, host: &mut impl Host) {
    certbound_fault_injection::stream(host.request_header(HEADER).as_deref(), hook);
}

pub fn config_new(name: &[u8]) {
    certbound_fault_injection::config_new(name);
}
