//! The one path model (`Endpoints::classify`): deterministic, blind to the
//! query and to ASCII case, and whatever it accepts is the same endpoint
//! under every reading a server could make of the path (checked here
//! against readings computed independently of src/path.rs).
#![no_main]
use certbound::path::{path_only, Endpoint, Endpoints};
use certbound::resource::{MissingTokenPolicy, OtherSchemes, ProtectedRoute, UnboundPolicy};
use libfuzzer_sys::fuzz_target;
use std::rc::Rc;

const TOKEN: &str = "/oauth2/token";
const INTROSPECTION: &str = "/oauth2/introspect";
const DISCOVERY: &str = "/.well-known/openid-configuration";

fn route(prefix: &str, unbound: UnboundPolicy) -> Rc<ProtectedRoute> {
    Rc::new(ProtectedRoute {
        path_prefix: prefix.into(),
        unbound_tokens: unbound,
        missing_token: MissingTokenPolicy::Reject,
        other_schemes: OtherSchemes::Reject,
        thumbprint_header: None,
        enforcement: Default::default(),
    })
}

thread_local! {
    static ENDPOINTS: Endpoints = Endpoints {
        token: TOKEN.into(),
        introspection: INTROSPECTION.into(),
        discovery: vec![DISCOVERY.into()],
        protected: vec![route("/api/", UnboundPolicy::RequireBinding), route("/api/open/", UnboundPolicy::Allow)],
    };
}

/// The endpoint of one reading, written from the configuration's meaning:
/// exact paths in any ASCII case with at most one trailing '/', else the
/// longest protected prefix in any ASCII case (a prefix ending in '/' also
/// covering its segment without it).
fn reference(e: &Endpoints, reading: &str) -> Endpoint {
    let lower = reading.to_ascii_lowercase();
    let is = |p: &str| lower == p || lower.strip_suffix('/') == Some(p);
    if is(TOKEN) {
        return Endpoint::Token;
    }
    if is(INTROSPECTION) {
        return Endpoint::Introspection;
    }
    if is(DISCOVERY) {
        return Endpoint::Discovery;
    }
    let mut best: Option<&Rc<ProtectedRoute>> = None;
    for r in &e.protected {
        // "/api/" covers "/api" itself too (a segment router routes it to the same API).
        let covers = lower.as_bytes().starts_with(r.path_prefix.as_bytes())
            || (r.path_prefix.len() > 1 && format!("{lower}/") == r.path_prefix);
        if covers && best.map_or(true, |b| b.path_prefix.len() < r.path_prefix.len()) {
            best = Some(r);
        }
    }
    best.map_or(Endpoint::Other, |r| Endpoint::Protected(r.clone()))
}

/// One round of %XX decoding; other '%' stay; invalid UTF-8 becomes U+FFFD.
fn decode_once(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
            let h = (b[i + 1] as char).to_digit(16).unwrap() as u8;
            let l = (b[i + 2] as char).to_digit(16).unwrap() as u8;
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `\` read as `/`, runs of `/` merged, then RFC 3986 §5.2.4 remove_dot_segments
/// (the path made absolute first, as a router does).
fn resolve(s: &str) -> String {
    let mut merged = String::from("/");
    for c in s.chars().map(|c| if c == '\\' { '/' } else { c }) {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    // RFC 3986 §5.2.4, on an absolute path.
    let mut input = merged.as_str();
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("/./") {
            input = &input[input.len() - rest.len() - 1..];
        } else if input == "/." {
            input = "/";
        } else if let Some(rest) = input.strip_prefix("/../") {
            input = &input[input.len() - rest.len() - 1..];
            output.truncate(output.rfind('/').unwrap_or(0));
        } else if input == "/.." {
            input = "/";
            output.truncate(output.rfind('/').unwrap_or(0));
        } else {
            // Move "/segment" to the output.
            let end = input[1..].find('/').map_or(input.len(), |i| i + 1);
            output.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    if output.is_empty() {
        output.push('/');
    }
    output
}

/// `;parameters` dropped from every segment.
fn strip_parameters(s: &str) -> String {
    s.split('/').map(|seg| seg.split(';').next().unwrap_or("")).collect::<Vec<_>>().join("/")
}

fn plain(path: &str) -> bool {
    !path.contains(['%', '\\', ';']) && !path.contains("//") && !path.contains("/.")
}

fn same(
    a: &Result<Endpoint, certbound::path::AmbiguousPath>,
    b: &Result<Endpoint, certbound::path::AmbiguousPath>,
) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(_), Err(_)) => true,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let raw = raw.as_ref();
    ENDPOINTS.with(|e| {
        let got = e.classify(raw);
        // Deterministic.
        assert_eq!(e.classify(raw), got, "{raw:?}");

        let path = path_only(raw);
        assert!(!path.contains(['?', '#']));
        assert!(raw.starts_with(path));

        // A path no server reads two ways is classified, as the configuration says.
        if plain(path) {
            let expected = reference(e, path);
            assert!(got.as_ref() == Ok(&expected), "{raw:?}: {got:?}, expected {expected:?}");
            if got == Ok(Endpoint::Token) {
                let lower = path.to_ascii_lowercase();
                assert!(lower == TOKEN || lower == format!("{TOKEN}/"), "{raw:?}");
            }
        }

        // Whatever is accepted is that endpoint under every reading: as sent,
        // dots resolved, decoded once, decoded fully without ;parameters.
        // (Origin-form paths only: Envoy's codecs refuse a :path without a
        // leading '/', and such a path, if plain, is taken as sent.)
        if let (Ok(endpoint), true) = (&got, path.starts_with('/')) {
            let mut fully = path.to_string();
            for _ in 0..8 {
                let d = decode_once(&fully);
                if d == fully {
                    break;
                }
                fully = d;
            }
            assert_eq!(decode_once(&fully), fully, "{raw:?}: accepted though still encoded after 8 rounds");
            for reading in [
                path.to_string(),
                resolve(path),
                resolve(&decode_once(path)),
                resolve(&strip_parameters(&fully)),
                resolve(&fully),
            ] {
                let r = reference(e, &reading);
                assert!(&r == endpoint, "{raw:?} is {endpoint:?} but reads as {reading:?}: {r:?}");
            }
        }

        // The query and fragment play no part.
        if !raw.contains(['?', '#']) {
            for suffix in ["?", "?x=1&p=/../oauth2/%74oken;a#frag"] {
                let with = format!("{raw}{suffix}");
                assert_eq!(e.classify(&with), got, "{with:?}");
            }
        }

        // ASCII case plays no part (escapes decode the same in either case).
        let other = if data.len() % 2 == 0 { raw.to_ascii_uppercase() } else { raw.to_ascii_lowercase() };
        let r = e.classify(&other);
        assert!(same(&r, &got), "{raw:?}: {got:?}, but {other:?}: {r:?}");
    });
});
