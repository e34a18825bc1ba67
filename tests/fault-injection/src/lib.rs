//! The faults the test-only builds inject, as a bug nobody has found would: a panic in a hook,
//! on demand. `#[track_caller]`: the panic reports the shell's line that asked for it (the
//! `.wasm`'s or the module's `fault_injection.rs`), which is what tests/e2e/test_faults.py reads
//! in Envoy's log. Both shells ask here, so the message and the header are one.

/// A request carrying this header, with a hook's name as its value, makes that hook panic.
pub const HEADER: &str = "x-certbound-test-panic";
/// A filter_name that makes the module's http_filter_config_new panic.
pub const CONFIG_NEW: &[u8] = b"certbound-test-panic-config-new";

/// Panics when the request's [`HEADER`] (`asked`) names this `hook`.
#[track_caller]
pub fn stream(asked: Option<&str>, hook: &str) {
    if asked == Some(hook) {
        panic!("fault injected by {HEADER}: {hook}");
    }
}

/// Panics when the filter is named [`CONFIG_NEW`].
#[track_caller]
pub fn config_new(name: &[u8]) {
    if name == CONFIG_NEW {
        panic!("fault injected by filter_name: http_filter_config_new");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static WHERE: Mutex<Vec<(String, u32, String)>> = Mutex::new(Vec::new());

    #[test]
    fn only_what_was_asked_for_panics_and_the_panic_names_its_caller() {
        std::panic::set_hook(Box::new(|info| {
            let at = info.location().map(|l| (l.file().to_string(), l.line())).unwrap_or_default();
            let message = info.payload_as_str().unwrap_or_default().to_string();
            WHERE.lock().unwrap_or_else(|e| e.into_inner()).push((at.0, at.1, message));
        }));
        stream(None, "request_headers");
        stream(Some("response_body"), "request_headers");
        config_new(b"certbound");
        let line = line!() + 1;
        assert!(std::panic::catch_unwind(|| stream(Some("request_headers"), "request_headers")).is_err());
        assert!(std::panic::catch_unwind(|| config_new(CONFIG_NEW)).is_err());
        let _ = std::panic::take_hook();
        let seen = WHERE.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!((seen[0].0.as_str(), seen[0].1), (file!(), line));
        assert_eq!(seen[0].2, "fault injected by x-certbound-test-panic: request_headers");
        assert_eq!(seen[1].2, "fault injected by filter_name: http_filter_config_new");
    }
}
