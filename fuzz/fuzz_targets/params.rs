//! The parameter-name rule (`params`): no input panics; a query or body the
//! rule accepts has, for every name a server could read as a judged name,
//! exactly that name spelled plainly; percent-encoding any other character of
//! a name never changes what it is read as (decoders decode it first); and a
//! judged value certbound reads is the strict decoding of what was sent.
#![no_main]
use certbound::client_auth::TOKEN_PARAMETERS;
use certbound::params::{first_reading, judge, reads_as, strict_decode};
use libfuzzer_sys::fuzz_target;

fn names(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == b'&' || *b == b';').map(|p| p.split(|b| *b == b'=').next().unwrap_or_default()).collect()
}

fuzz_target!(|data: &[u8]| {
    let judged = judge(data, TOKEN_PARAMETERS);
    let any = first_reading(data, TOKEN_PARAMETERS);
    if let Ok(j) = &judged {
        for raw in names(data) {
            if let Some(name) = reads_as(raw, TOKEN_PARAMETERS) {
                assert_eq!(strict_decode(raw).as_deref(), Some(name.as_bytes()), "{data:?}: {raw:?} read as {name}");
                assert!(j.get(name).is_some(), "{data:?}: {name} read by a server, not by certbound");
            }
        }
        // A judged name certbound read is one some server reads too.
        if TOKEN_PARAMETERS.iter().any(|n| j.get(n).is_some()) {
            assert!(any.is_some(), "{data:?}");
        }
    }
    // Percent-encoding one character of a name without escapes (not '+', which encoding changes) keeps its readings.
    for raw in names(data).into_iter().filter(|n| !n.contains(&b'%')).take(4) {
        for (i, b) in raw.iter().enumerate().take(8) {
            if *b == b'+' {
                continue;
            }
            let mut encoded = raw[..i].to_vec();
            encoded.extend_from_slice(format!("%{b:02X}").as_bytes());
            encoded.extend_from_slice(&raw[i + 1..]);
            assert_eq!(reads_as(&encoded, TOKEN_PARAMETERS), reads_as(raw, TOKEN_PARAMETERS), "{raw:?} vs {encoded:?}");
        }
    }
});
