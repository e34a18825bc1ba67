//! Certificate headers in every format, XFCC included: never a panic, and a
//! certificate read by `auto` has the thumbprint of its DER.
#![no_main]
use certbound::cert_header::{parse, HeaderCert, HeaderFormat, XfccElement};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for format in ["auto", "pem", "url_encoded_pem", "base64_der", "rfc9440", "xfcc", "traefik"] {
        for element in [XfccElement::First, XfccElement::Last] {
            if let Some(f) = HeaderFormat::parse(format) {
                if let Ok(HeaderCert::Full(c)) = parse(text, f, element) {
                    assert_eq!(certbound::cert::Thumbprint::of_der(&c.der), c.thumbprint);
                }
            }
        }
    }
});
