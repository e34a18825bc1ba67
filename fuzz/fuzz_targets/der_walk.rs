//! A header certificate's DER, read by certbound's walk (`cert::read_der`)
//! and by x509-parser: never a panic; where x509-parser reads one whole
//! certificate and the walk reads it too, the validity is the same; what the
//! walk reads and x509-parser does not, `names` (tls_client_auth) refuses.
#![no_main]
use certbound::cert::{parse_der, read_der};
use libfuzzer_sys::fuzz_target;
use x509_parser::prelude::{FromDer, X509Certificate};

fuzz_target!(|der: &[u8]| {
    let walked = read_der(der);
    let x509 = X509Certificate::from_der(der).ok().filter(|(rest, _)| rest.is_empty()).map(|(_, c)| {
        (c.validity().not_before.timestamp(), c.validity().not_after.timestamp())
    });
    match (&walked, x509) {
        (Ok(c), Some(dates)) => assert_eq!((c.validity.not_before, c.validity.not_after), dates),
        (Ok(c), None) => {
            assert!(c.names().is_err());
            assert!(parse_der(der).is_err());
        }
        _ => {}
    }
    if let Ok(c) = &walked {
        assert_eq!(certbound::cert::Thumbprint::of_der(der), c.thumbprint);
    }
});
