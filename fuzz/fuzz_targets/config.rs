//! The plugin configuration: refused with a named field, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = certbound::config::parse(data) {
        assert!(!e.field.is_empty());
    }
    let _ = certbound::config::parse_client(data, "fuzz");
});
