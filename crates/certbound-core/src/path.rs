//! One path model: which endpoint a request's `:path` falls on, read the
//! ways the AS and the APIs behind Envoy may read it. Servers differ: some
//! match paths case-insensitively and ignore a trailing slash (oidc-provider's
//! router), some percent-decode before routing, some resolve `..` segments,
//! some drop `;parameters` (Tomcat, Spring), some read `\` as `/`. certbound
//! classifies every such reading of the path; when they disagree about the
//! endpoint, the request is ambiguous and refused rather than judged under
//! the wrong policy.

use crate::resource::ProtectedRoute;
use std::borrow::Cow;
use std::rc::Rc;

/// Where a request goes, as far as certbound is concerned.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Token,
    Introspection,
    Discovery,
    Protected(Rc<ProtectedRoute>),
    Other,
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Endpoint::Protected(a), Endpoint::Protected(b)) => Rc::ptr_eq(a, b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

/// The paths certbound acts on, compiled from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub token: String,
    pub introspection: String,
    pub discovery: Vec<String>,
    pub protected: Vec<Rc<ProtectedRoute>>,
}

/// Two readings of the path name different endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmbiguousPath {
    pub description: String,
}

/// The path without its query or fragment.
pub fn path_only(raw: &str) -> &str {
    raw.split(['?', '#']).next().unwrap_or(raw)
}

/// `path` is `endpoint`, ASCII case aside, with or without one trailing slash.
fn same_endpoint(path: &str, endpoint: &str) -> bool {
    let p = path.as_bytes();
    let e = endpoint.as_bytes();
    p.eq_ignore_ascii_case(e) || (p.len() == e.len() + 1 && p.ends_with(b"/") && p[..e.len()].eq_ignore_ascii_case(e))
}

/// `path` starts with `prefix`, ASCII case aside; a prefix ending in `/`
/// also covers the path without that slash (`/api/` covers `/api`), which a
/// router matching whole segments (Gateway API's `PathPrefix`, Envoy's
/// `path_separated_prefix`) sends to the same API.
fn has_prefix(path: &str, prefix: &str) -> bool {
    let starts = path.as_bytes().get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()));
    starts || prefix.strip_suffix('/').is_some_and(|segment| !segment.is_empty() && path.eq_ignore_ascii_case(segment))
}

impl Endpoints {
    /// The endpoint of one reading of the path.
    fn of(&self, path: &str) -> Endpoint {
        if same_endpoint(path, &self.token) {
            return Endpoint::Token;
        }
        if same_endpoint(path, &self.introspection) {
            return Endpoint::Introspection;
        }
        if self.discovery.iter().any(|d| same_endpoint(path, d)) {
            return Endpoint::Discovery;
        }
        self.protected
            .iter()
            .filter(|r| has_prefix(path, &r.path_prefix))
            .max_by_key(|r| r.path_prefix.len())
            .map_or(Endpoint::Other, |r| Endpoint::Protected(r.clone()))
    }

    /// The endpoint of a request's `:path`, the same under every reading, or why not.
    pub fn classify(&self, raw: &str) -> Result<Endpoint, AmbiguousPath> {
        let path = path_only(raw);
        if is_plain(path) {
            return Ok(self.of(path));
        }
        let readings = readings(path)?;
        let mut first: Option<(Endpoint, &str)> = None;
        for reading in &readings {
            let endpoint = self.of(reading);
            match &first {
                None => first = Some((endpoint, reading)),
                Some((e, r)) if *e != endpoint => {
                    return Err(AmbiguousPath {
                        description: format!(
                            "the path can be read as {r:?} or as {reading:?}, which certbound treats differently"
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(first.map_or(Endpoint::Other, |(e, _)| e))
    }
}

/// A path no server reads in more than one way: no escapes, dot segments,
/// empty segments, backslashes or segment parameters.
fn is_plain(path: &str) -> bool {
    !path.bytes().any(|b| matches!(b, b'%' | b'\\' | b';')) && !path.contains("//") && !path.contains("/.")
}

/// How many rounds of percent-decoding a reading applies before it calls the path ambiguous.
const MAX_DECODE_ROUNDS: usize = 4;

/// The readings of a path: as sent; with dot segments resolved; decoded once
/// and resolved; decoded until stable and resolved, with and without
/// `;parameters` (a `..;` segment is `..` to Tomcat, a name to others).
fn readings(path: &str) -> Result<Vec<String>, AmbiguousPath> {
    let once = decode(path).into_owned();
    let mut fully = once.clone();
    // Decodings that changed the path: at most MAX_DECODE_ROUNDS - 1 before it is stable.
    let mut changed = usize::from(once != path);
    loop {
        let next = decode(&fully);
        if next == fully {
            break;
        }
        changed += 1;
        if changed >= MAX_DECODE_ROUNDS {
            return Err(AmbiguousPath { description: "the path is percent-encoded too many times over".into() });
        }
        fully = next.into_owned();
    }
    Ok(vec![path.to_string(), resolve(path), resolve(&once), resolve(&fully), resolve(&strip_parameters(&fully))])
}

/// One round of percent-decoding (`%XX`; a `%` not followed by two hex digits stays).
fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let raw = s.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let hex = |j: usize| raw.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Drops `;parameters` from every segment, as Tomcat and Spring do before routing.
fn strip_parameters(path: &str) -> String {
    path.split('/').map(|seg| seg.split(';').next().unwrap_or_default()).collect::<Vec<_>>().join("/")
}

/// RFC 3986 §5.2.4 dot-segment removal, after reading `\` as `/` and merging
/// empty segments (as Envoy's `normalize_path` and `merge_slashes` do).
fn resolve(path: &str) -> String {
    let unified = path.replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = unified.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        trailing_slash = false;
        match *seg {
            "" => trailing_slash = i == last,
            "." => trailing_slash = true,
            ".." => {
                out.pop();
                trailing_slash = true;
            }
            s => out.push(s),
        }
    }
    let mut resolved = String::with_capacity(unified.len());
    for seg in &out {
        resolved.push('/');
        resolved.push_str(seg);
    }
    if trailing_slash || resolved.is_empty() {
        resolved.push('/');
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{MissingTokenPolicy, OtherSchemes, UnboundPolicy};

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

    fn endpoints() -> Endpoints {
        Endpoints {
            token: "/oauth2/token".into(),
            introspection: "/oauth2/introspect".into(),
            discovery: vec!["/.well-known/openid-configuration".into()],
            protected: vec![route("/api/", UnboundPolicy::RequireBinding), route("/api/open/", UnboundPolicy::Allow)],
        }
    }

    fn prefix_of(e: &Endpoint) -> Option<&str> {
        match e {
            Endpoint::Protected(r) => Some(&r.path_prefix),
            _ => None,
        }
    }

    #[test]
    fn endpoints_match_as_a_case_insensitive_router_with_an_optional_trailing_slash_does() {
        let e = endpoints();
        for p in ["/oauth2/token", "/oauth2/Token", "/OAUTH2/TOKEN", "/oauth2/token/", "/oauth2/token?x=1"] {
            assert_eq!(e.classify(p), Ok(Endpoint::Token), "{p}");
        }
        assert_eq!(e.classify("/oauth2/Introspect/"), Ok(Endpoint::Introspection));
        assert_eq!(e.classify("/.well-known/openid-configuration"), Ok(Endpoint::Discovery));
        assert_eq!(e.classify("/oauth2/tokens"), Ok(Endpoint::Other));
        assert_eq!(e.classify("/oauth2/token/x"), Ok(Endpoint::Other));
    }

    #[test]
    fn the_longest_protected_prefix_wins_whatever_the_case() {
        let e = endpoints();
        assert_eq!(prefix_of(&e.classify("/api/orders").unwrap()), Some("/api/"));
        assert_eq!(prefix_of(&e.classify("/API/Open/x").unwrap()), Some("/api/open/"));
        assert_eq!(e.classify("/apix"), Ok(Endpoint::Other));
    }

    #[test]
    fn a_path_encoded_three_times_over_is_read_and_four_times_is_refused() {
        let e = endpoints();
        // "%25252561" is "a" after four decodings, "%252561" after three.
        assert_eq!(prefix_of(&e.classify("/api/x%252561").unwrap()), Some("/api/"));
        assert!(e.classify("/api/x%25252561").is_err());
        assert_eq!(readings("/api/%2561").unwrap()[2], "/api/%61", "the once-decoded reading is its own");
    }

    #[test]
    fn only_paths_no_reading_changes_take_the_short_way() {
        assert!(is_plain("/api/orders/1"));
        for p in ["/a%20b", "/a\\b", "/a;b", "/a//b", "/a/./b", "/a/../b"] {
            assert!(!is_plain(p), "{p}");
        }
    }

    #[test]
    fn a_prefix_ending_in_a_slash_covers_its_segment_without_the_slash() {
        // Gateway API's PathPrefix "/api" and Envoy's path_separated_prefix route "/api" to the API too.
        let e = endpoints();
        for p in ["/api", "/API", "/api?x=1", "/api#f"] {
            assert_eq!(prefix_of(&e.classify(p).unwrap()), Some("/api/"), "{p}");
        }
        assert_eq!(prefix_of(&e.classify("/api/open").unwrap()), Some("/api/open/"));
        assert_eq!(prefix_of(&e.classify("/api/openx").unwrap()), Some("/api/"));
        assert_eq!(e.classify("/ap"), Ok(Endpoint::Other));
        let root = Endpoints { protected: vec![route("/", UnboundPolicy::RequireBinding)], ..endpoints() };
        assert_eq!(prefix_of(&root.classify("/anything").unwrap()), Some("/"));
    }

    #[test]
    fn a_path_read_as_one_endpoint_in_every_reading_is_that_endpoint() {
        let e = endpoints();
        // Encoded, but every reading lands on the same route.
        assert_eq!(prefix_of(&e.classify("/api/orders/john%20doe").unwrap()), Some("/api/"));
        assert_eq!(prefix_of(&e.classify("/api/open/a/../b").unwrap()), Some("/api/open/"));
        // Decoded it is the token endpoint, as sent it is not: a server could read either.
        assert!(e.classify("/oauth2/%74oken").is_err());
    }

    #[test]
    fn dot_segments_that_cross_route_policies_are_ambiguous() {
        let e = endpoints();
        for p in [
            "/api/open/../orders",
            "/api/open/%2e%2e/orders",
            "/api/open/%2E%2E/orders",
            "/api/open/..%2Forders",
            "/api/open/..%5Corders",
            "/api/open/..\\orders",
            "/api/open/..;/orders",
            "/api/open/%252e%252e/orders",
            "/static/..;/api/orders",
            "/oauth2/./token",
            "/oauth2/x/../token",
            "/oauth2/token//",
            "/oauth2/token;x=1",
            // Found by the `path` fuzz target: decoded twice and resolved with
            // `;parameters` kept, this is /api/..; (under /api/); without them, /.
            "/n/%252e%2e/api/..;",
        ] {
            assert!(e.classify(p).is_err(), "{p} should be ambiguous");
        }
    }

    #[test]
    fn a_path_encoded_over_and_over_is_ambiguous() {
        assert!(endpoints().classify("/a/%2525252e").is_err());
    }

    #[test]
    fn dot_segments_are_removed_as_rfc_3986_says() {
        assert_eq!(resolve("/a/b/../c"), "/a/c");
        assert_eq!(resolve("/a/./b/"), "/a/b/");
        assert_eq!(resolve("/a/.."), "/");
        assert_eq!(resolve("/../../a"), "/a");
        assert_eq!(resolve("//a///b"), "/a/b");
        assert_eq!(resolve("/a\\b"), "/a/b");
        assert_eq!(resolve(""), "/");
    }

    #[test]
    fn bad_escapes_stay_as_they_are() {
        assert_eq!(decode("/a%zz%4"), "/a%zz%4");
        assert_eq!(decode("/%41%2f"), "/A/");
    }
}
