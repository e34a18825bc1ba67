//! What a protected request carries: the `Authorization` header, the query,
//! a form body and its content type. A Bearer token read from the header is
//! exactly the token a resource server sees (and finds the binding stored
//! for it); anything that is not a clean single credential is refused, never
//! taken for "no token"; an `access_token` in the query or the form body is
//! always refused.
#![no_main]
use certbound::binding::{bindings_for_response, key_for_token, KEY_PREFIX};
use certbound::cert::Thumbprint;
use certbound::config::BindingPolicy;
use certbound::error::Reason;
use certbound::resource::{body_check, check_form_body, check_query, credentials, BodyCheck, Credentials};
use libfuzzer_sys::fuzz_target;

fn ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The parameter names of a query or form body, split on `&` and `;`.
fn names(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|b| *b == b'&' || *b == b';').map(|p| p.split(|b| *b == b'=').next().unwrap_or_default())
}

fn check_authorization(s: &str) {
    let got = credentials(Some(s));
    match &got {
        Err(e) => assert_eq!((e.status, e.error), (400, Some("invalid_request")), "{s:?}"),
        Ok(Credentials::Absent) => panic!("{s:?}: a header that is present is never \"no token\""),
        Ok(Credentials::OtherScheme) => {
            let scheme = s.trim_matches(ows).split(ows).next().unwrap_or_default();
            assert!(!scheme.eq_ignore_ascii_case("bearer"), "{s:?}: a Bearer header taken for another scheme");
        }
        Ok(Credentials::Bearer(t)) => {
            let t = *t;
            assert!(!t.is_empty(), "{s:?}");
            assert!(!t.contains([' ', '\t', ',']), "{s:?} -> {t:?}");
            assert!(t.chars().all(|c| c.is_ascii_alphanumeric() || "-._~+/=".contains(c)), "{s:?} -> {t:?}");
            assert!(!t.trim_end_matches('=').contains('='), "{s:?} -> {t:?}: '=' only as padding");
            assert!(!t.trim_end_matches('=').is_empty(), "{s:?} -> {t:?}: padding only");
            let trimmed = s.trim_matches(ows);
            assert!(trimmed.ends_with(t), "{s:?} -> {t:?}");
            let scheme = trimmed[..trimmed.len() - t.len()].trim_end_matches(ows);
            assert!(scheme.eq_ignore_ascii_case("bearer"), "{s:?} -> {t:?}: scheme {scheme:?}");
            assert!(trimmed.len() - t.len() > scheme.len(), "{s:?}: no separator after the scheme");
            // The token read back from its canonical header is the same token.
            let canonical = format!("Bearer {t}");
            assert_eq!(credentials(Some(&canonical)), Ok(Credentials::Bearer(t)));
            // It finds the binding stored from the token response that issued it.
            // b64token has '=' only at the end: every Bearer token has a key.
            let key = key_for_token(t).expect("a Bearer token has a key");
            assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 43, "{key}");
            assert_eq!(Some(key.clone()), key_for_token(t.trim_end_matches('=')));
            let response = serde_json::json!({ "access_token": t, "token_type": "Bearer", "expires_in": 600 });
            let body = serde_json::to_vec(&response).unwrap();
            if let Ok(b) =
                bindings_for_response(&body, Thumbprint::of_der(b"fuzz"), &BindingPolicy::default(), 1_800_000_000)
            {
                assert_eq!(b[0].key, key, "{t:?}");
            }
        }
    }
    if s.contains(',') {
        assert!(got.is_err(), "{s:?}: folded headers must be refused");
    }
    if s.trim_matches(ows).is_empty() {
        assert!(got.is_err(), "{s:?}: an empty header must be refused");
    }
}

fn check_uri(s: &str) {
    let got = check_query(s, None);
    let Some((_, query)) = s.split_once('?') else {
        assert!(got.is_ok(), "{s:?}: no query");
        return;
    };
    // A fragment is never sent (Envoy strips or refuses it before filters run).
    let query = query.split('#').next().unwrap_or_default();
    if let Err(e) = &got {
        assert_eq!((e.status, e.error, e.reason), (400, Some("invalid_request"), Reason::TokenInUri), "{s:?}");
    }
    if names(query.as_bytes())
        .any(|n| n.eq_ignore_ascii_case(b"access_token") || n.eq_ignore_ascii_case(b"access_token[]"))
    {
        assert!(got.is_err(), "{s:?}: access_token in the query");
    }
    // The query read as a form body: the same verdict on parameter names.
    match check_form_body(None, query.as_bytes()) {
        Err(e) if e.reason == Reason::TokenInUri => assert!(got.is_err(), "{s:?}: the form check finds a token"),
        Ok(()) => assert!(got.is_ok(), "{s:?}: the form check finds none"),
        Err(_) => {}
    }
}

fn check_body(data: &[u8]) {
    let got = check_form_body(None, data);
    if names(data).any(|n| n.eq_ignore_ascii_case(b"access_token")) {
        assert!(got.is_err(), "{data:?}: access_token in the body");
    }
    // Without a charset or a byte-order mark, only a token parameter is refused.
    if let Err(e) = &got {
        assert!(
            e.reason == Reason::TokenInUri
                || data.starts_with(b"\xef\xbb\xbf")
                || data.starts_with(b"\xfe\xff")
                || data.starts_with(b"\xff\xfe")
                || data.starts_with(b"\x00\x00\xfe\xff"),
            "{data:?}: {e:?}"
        );
    }
}

fn check_content_type(s: &str) {
    let got = body_check(Some(s));
    assert_eq!(body_check(Some(&s.to_ascii_uppercase())), got, "{s:?}");
    assert_eq!(body_check(Some(&s.to_ascii_lowercase())), got, "{s:?}");
    let lower = s.to_ascii_lowercase();
    if lower.contains("multipart/") {
        assert_eq!(got, BodyCheck::Multipart, "{s:?}");
    } else if lower.contains("application/x-www-form-urlencoded") {
        assert_eq!(got, BodyCheck::Form, "{s:?}");
    }
    // What the token endpoint parses as a form is read as one on protected routes too.
    if certbound::form::is_form_content_type(s) {
        assert_ne!(got, BodyCheck::None, "{s:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(credentials(None), Ok(Credentials::Absent));
    assert_eq!(body_check(None), BodyCheck::None);
    let text = String::from_utf8_lossy(data);
    check_authorization(&text);
    check_uri(&text);
    check_body(data);
    check_content_type(&text);
});
