//! Test support, compiled only into the test-only build (`--features fault-injection`,
//! `make wasm-faults`, never the shipped `.wasm`: `make wasm` refuses one that carries
//! it): a request carrying `x-certbound-test-panic: <hook>` panics in that callback,
//! which (built with panic = "abort") traps the VM, as a bug nobody has found would;
//! tests/e2e/test_faults.py shows what Envoy does then.

#[allow(clippy::panic)]
pub fn stream(hook: &str) {
    const HEADER: &str = "x-certbound-test-panic";
    if super::abi::request_header(HEADER).as_deref() == Some(hook) {
        panic!("fault injected by {HEADER}: {hook}");
    }
}
