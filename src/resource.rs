//! Binding enforced: in front of a resource server, a Bearer token (RFC 6750
//! §2.1) is accepted only with the certificate it is bound to (RFC 8705 §3).

use crate::cert::{ct_eq_bytes, Thumbprint};
use crate::error::Reason;
use serde_json::json;

/// What a protected route does with a token that has no binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnboundPolicy {
    /// Plain bearer semantics: the resource server decides.
    Allow,
    /// 401 `invalid_token`.
    RequireBinding,
}

/// What a protected route does with a request that carries no Bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingTokenPolicy {
    /// Pass it on: the resource server decides (it may be public).
    Pass,
    /// 401 with `WWW-Authenticate: Bearer` and no error code (RFC 6750 §3.1).
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedRoute {
    pub path_prefix: String,
    pub unbound_tokens: UnboundPolicy,
    pub missing_token: MissingTokenPolicy,
    /// Header in which the verified thumbprint is passed upstream (any
    /// client-supplied value is removed first).
    pub thumbprint_header: Option<String>,
}

impl AsRef<ProtectedRoute> for ProtectedRoute {
    fn as_ref(&self) -> &ProtectedRoute {
        self
    }
}

/// The protected route a path falls under: the longest matching prefix.
pub fn route_for<'a, R: AsRef<ProtectedRoute>>(routes: &'a [R], path: &str) -> Option<&'a R> {
    routes.iter().filter(|r| path.starts_with(&r.as_ref().path_prefix)).max_by_key(|r| r.as_ref().path_prefix.len())
}

/// A protected route described by Envoy route metadata
/// (`filter_metadata.certbound`): its policies as strings. An unknown policy
/// falls back to the strict one; a bad header name is dropped.
pub fn route_from_metadata(unbound: &str, missing: Option<&str>, header: Option<&str>) -> ProtectedRoute {
    let header_ok = |h: &&str| crate::config::is_header_name(h) && *h != "authorization" && *h != "host";
    ProtectedRoute {
        path_prefix: String::new(),
        unbound_tokens: if unbound == "allow" { UnboundPolicy::Allow } else { UnboundPolicy::RequireBinding },
        missing_token: if missing == Some("pass") { MissingTokenPolicy::Pass } else { MissingTokenPolicy::Reject },
        thumbprint_header: header.filter(header_ok).map(str::to_string),
    }
}

/// A refusal on a protected route (RFC 6750 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceError {
    pub status: u32,
    /// `None` for a request that carried no token (RFC 6750 §3.1: no error code).
    pub error: Option<&'static str>,
    pub description: String,
    pub reason: Reason,
}

impl ResourceError {
    fn invalid_token(reason: Reason, description: &str) -> Self {
        ResourceError { status: 401, error: Some("invalid_token"), description: description.into(), reason }
    }

    fn invalid_request(reason: Reason, description: &str) -> Self {
        ResourceError { status: 400, error: Some("invalid_request"), description: description.into(), reason }
    }

    /// The `WWW-Authenticate` challenge.
    pub fn www_authenticate(&self) -> String {
        match self.error {
            None => "Bearer".to_string(),
            Some(e) => format!("Bearer error=\"{e}\", error_description=\"{}\"", self.description.replace('"', "'")),
        }
    }

    pub fn body(&self) -> Vec<u8> {
        match self.error {
            None => json!({ "error_description": self.description }),
            Some(e) => json!({ "error": e, "error_description": self.description }),
        }
        .to_string()
        .into_bytes()
    }

    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("www-authenticate", self.www_authenticate()),
            ("content-type", "application/json".to_string()),
            ("cache-control", "no-store".to_string()),
        ]
    }
}

/// The token of `Authorization: Bearer <b64token>` (RFC 6750 §2.1), or `None`
/// when the header is absent or of another scheme.
pub fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/".contains(c);
    let body = token.trim_end_matches('=');
    (!body.is_empty() && body.chars().all(b64token)).then_some(token)
}

/// The Bearer token of a protected request. Envoy folds repeated
/// `Authorization` headers into one comma-separated value, and no
/// credentials contain a comma: such a request is ambiguous and refused.
pub fn bearer(authorization: Option<&str>) -> Result<Option<&str>, ResourceError> {
    if authorization.is_some_and(|a| a.contains(',')) {
        return Err(ambiguous_authorization());
    }
    Ok(bearer_token(authorization))
}

/// True when the query string carries `access_token` (RFC 6750 §2.3), which
/// certbound does not accept: a URI token would slip past the binding check.
pub fn query_has_access_token(path: &str) -> bool {
    let Some((_, query)) = path.split_once('?') else { return false };
    let query = query.split('#').next().unwrap_or_default();
    query.split('&').any(|p| p.split('=').next().map(|k| k == "access_token" || k == "access%5Ftoken").unwrap_or(false))
}

/// What a protected request presented.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// The Bearer token is present.
    pub token: bool,
    /// The binding certbound stored for the token, if any.
    pub stored: Option<Thumbprint>,
    /// `cnf.x5t#S256` of a JWT whose signature Envoy verified, if any.
    pub verified_claim: Option<&'a str>,
    /// The client certificate of this request.
    pub certificate: Option<Thumbprint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// The token is bound, and to this certificate.
    Bound(Thumbprint),
    /// No binding: the route allows plain bearer tokens.
    Unbound,
    /// No token: the route passes such requests on.
    NoToken,
}

fn matches(expected: &str, presented: &Thumbprint) -> bool {
    ct_eq_bytes(expected.as_bytes(), presented.x5t_s256().as_bytes())
}

/// RFC 8705 §3: the decision for one request on a protected route.
pub fn decide(route: &ProtectedRoute, p: &Presented<'_>) -> Result<Allowed, ResourceError> {
    if !p.token {
        return match route.missing_token {
            MissingTokenPolicy::Pass => Ok(Allowed::NoToken),
            MissingTokenPolicy::Reject => Err(ResourceError {
                status: 401,
                error: None,
                description: "a Bearer token is required".into(),
                reason: Reason::MissingToken,
            }),
        };
    }
    let claim = match p.verified_claim {
        Some(c) if Thumbprint::from_x5t_s256(c).is_err() => {
            return Err(ResourceError::invalid_token(Reason::BadCnfClaim, "the token's cnf claim is malformed"))
        }
        other => other,
    };
    if p.stored.is_none() && claim.is_none() {
        return match route.unbound_tokens {
            UnboundPolicy::Allow => Ok(Allowed::Unbound),
            UnboundPolicy::RequireBinding => {
                Err(ResourceError::invalid_token(Reason::UnboundToken, "the token is not certificate-bound"))
            }
        };
    }
    let Some(presented) = p.certificate else {
        return Err(ResourceError::invalid_token(
            Reason::TokenWithoutCertificate,
            "the token is certificate-bound and no client certificate was presented",
        ));
    };
    // Every binding known for the token must name the presented certificate.
    let store_ok = p.stored.map(|s| s.ct_eq(&presented)).unwrap_or(true);
    let claim_ok = claim.map(|c| matches(c, &presented)).unwrap_or(true);
    if store_ok && claim_ok {
        Ok(Allowed::Bound(presented))
    } else {
        Err(ResourceError::invalid_token(Reason::TokenCertificateMismatch, "the token is bound to another certificate"))
    }
}

/// The refusal for a request with more than one `Authorization` header.
pub fn ambiguous_authorization() -> ResourceError {
    ResourceError::invalid_request(Reason::BadRequest, "more than one Authorization header")
}

/// The refusal for a token in the URI.
pub fn token_in_uri() -> ResourceError {
    ResourceError::invalid_request(Reason::TokenInUri, "access tokens are accepted only in the Authorization header")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(unbound: UnboundPolicy, missing: MissingTokenPolicy) -> ProtectedRoute {
        ProtectedRoute {
            path_prefix: "/api/".into(),
            unbound_tokens: unbound,
            missing_token: missing,
            thumbprint_header: None,
        }
    }

    fn strict() -> ProtectedRoute {
        route(UnboundPolicy::RequireBinding, MissingTokenPolicy::Reject)
    }

    fn t(s: &[u8]) -> Thumbprint {
        Thumbprint::of_der(s)
    }

    #[test]
    fn bound_token_with_its_certificate_is_allowed() {
        let p = Presented { token: true, stored: Some(t(b"a")), certificate: Some(t(b"a")), ..Default::default() };
        assert_eq!(decide(&strict(), &p), Ok(Allowed::Bound(t(b"a"))));
    }

    #[test]
    fn bound_token_with_another_certificate_is_invalid_token() {
        let p = Presented { token: true, stored: Some(t(b"a")), certificate: Some(t(b"b")), ..Default::default() };
        let e = decide(&strict(), &p).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (401, Some("invalid_token"), Reason::TokenCertificateMismatch));
        assert!(e.www_authenticate().starts_with("Bearer error=\"invalid_token\", error_description=\""));
    }

    #[test]
    fn bound_token_without_certificate_is_invalid_token() {
        let p = Presented { token: true, stored: Some(t(b"a")), ..Default::default() };
        assert_eq!(decide(&strict(), &p).unwrap_err().reason, Reason::TokenWithoutCertificate);
    }

    #[test]
    fn unbound_token_follows_the_route_policy() {
        let p = Presented { token: true, certificate: Some(t(b"a")), ..Default::default() };
        assert_eq!(decide(&route(UnboundPolicy::Allow, MissingTokenPolicy::Reject), &p), Ok(Allowed::Unbound));
        assert_eq!(decide(&strict(), &p).unwrap_err().reason, Reason::UnboundToken);
    }

    #[test]
    fn missing_token_follows_the_route_policy_without_an_error_code() {
        let p = Presented::default();
        assert_eq!(decide(&route(UnboundPolicy::RequireBinding, MissingTokenPolicy::Pass), &p), Ok(Allowed::NoToken));
        let e = decide(&strict(), &p).unwrap_err();
        assert_eq!((e.status, e.error), (401, None));
        assert_eq!(e.www_authenticate(), "Bearer");
    }

    #[test]
    fn verified_jwt_cnf_claim_is_enforced_without_the_store() {
        let claim = t(b"a").x5t_s256();
        let ok =
            Presented { token: true, verified_claim: Some(&claim), certificate: Some(t(b"a")), ..Default::default() };
        assert_eq!(decide(&strict(), &ok), Ok(Allowed::Bound(t(b"a"))));
        let bad = Presented { certificate: Some(t(b"b")), ..ok };
        assert_eq!(decide(&strict(), &bad).unwrap_err().reason, Reason::TokenCertificateMismatch);
    }

    #[test]
    fn store_and_claim_must_both_name_the_certificate() {
        let claim = t(b"b").x5t_s256();
        let p =
            Presented { token: true, stored: Some(t(b"a")), verified_claim: Some(&claim), certificate: Some(t(b"a")) };
        assert_eq!(decide(&strict(), &p).unwrap_err().reason, Reason::TokenCertificateMismatch);
    }

    #[test]
    fn malformed_cnf_claim_is_invalid_token() {
        let p =
            Presented { token: true, verified_claim: Some("nope"), certificate: Some(t(b"a")), ..Default::default() };
        assert_eq!(decide(&strict(), &p).unwrap_err().reason, Reason::BadCnfClaim);
    }

    #[test]
    fn bearer_token_is_read_from_the_authorization_header_only() {
        assert_eq!(bearer_token(Some("Bearer abc.def-_~+/=")), Some("abc.def-_~+/="));
        assert_eq!(bearer_token(Some("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(Some("Bearer a b")), None);
        assert_eq!(bearer_token(None), None);
    }

    #[test]
    fn folded_authorization_headers_are_refused() {
        let e = bearer(Some("Bearer a,Bearer b")).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (400, Some("invalid_request"), Reason::BadRequest));
        assert_eq!(bearer(Some("Bearer a")), Ok(Some("a")));
        assert_eq!(bearer(None), Ok(None));
    }

    #[test]
    fn access_token_in_the_query_is_detected() {
        assert!(query_has_access_token("/api/x?access_token=abc"));
        assert!(query_has_access_token("/api/x?a=1&access_token=abc"));
        assert!(!query_has_access_token("/api/x?my_access_token=abc"));
        assert!(!query_has_access_token("/api/x"));
        let e = token_in_uri();
        assert_eq!((e.status, e.error), (400, Some("invalid_request")));
    }

    #[test]
    fn route_metadata_policies_fall_back_to_strict() {
        let r = route_from_metadata("allow", Some("pass"), Some("x-x5t"));
        assert_eq!((r.unbound_tokens, r.missing_token), (UnboundPolicy::Allow, MissingTokenPolicy::Pass));
        assert_eq!(r.thumbprint_header.as_deref(), Some("x-x5t"));
        let r = route_from_metadata("alow", Some("maybe"), Some("Authorization"));
        assert_eq!((r.unbound_tokens, r.missing_token), (UnboundPolicy::RequireBinding, MissingTokenPolicy::Reject));
        assert_eq!(r.thumbprint_header, None);
    }

    #[test]
    fn longest_protected_prefix_wins() {
        let mut a = strict();
        a.path_prefix = "/api/".into();
        let mut b = route(UnboundPolicy::Allow, MissingTokenPolicy::Pass);
        b.path_prefix = "/api/public/".into();
        let routes = vec![a, b];
        assert_eq!(route_for(&routes, "/api/public/x").unwrap().unbound_tokens, UnboundPolicy::Allow);
        assert_eq!(route_for(&routes, "/api/x").unwrap().unbound_tokens, UnboundPolicy::RequireBinding);
        assert!(route_for(&routes, "/other").is_none());
    }
}
