//! RFC 4514 distinguished names: a parsed DN survives its own string form.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(dn) = certbound::dn::parse(text) {
        let again = certbound::dn::parse(&dn.to_rfc4514());
        assert_eq!(again.as_ref(), Ok(&dn), "{text:?} -> {:?}", dn.to_rfc4514());
    }
});
