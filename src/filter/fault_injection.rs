//! Test support, compiled only into the test-only build (`--features fault-injection`,
//! `make wasm-faults`, never the shipped `.wasm`: `make wasm` refuses one that carries
//! it): a request carrying `x-certbound-test-panic: <hook>` panics in that callback
//! (tests/fault-injection), which (built with panic = "abort") traps the VM, as a bug
//! nobody has found would; tests/e2e/test_faults.py shows what Envoy does then.

use certbound_fault_injection::HEADER;

pub fn stream(hook: &str) {
    certbound_fault_injection::stream(super::abi::request_header(HEADER).as_deref(), hook);
}
