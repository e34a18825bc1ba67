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

/// What a protected route does with credentials of another scheme (`DPoP`, `Basic`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherSchemes {
    /// 400 `invalid_request`: they are never mistaken for "no token".
    Reject,
    /// Pass them on: the resource server authenticates them itself.
    Pass,
}

/// Whether a protected route carries out its refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enforcement {
    /// Refusals are answered (the default).
    #[default]
    Enforce,
    /// Report-only, for a rollout: every decision is made, counted (`reported.<reason>`),
    /// logged and written to the metadata, and the request goes on as if allowed.
    Report,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedRoute {
    pub path_prefix: String,
    pub unbound_tokens: UnboundPolicy,
    pub missing_token: MissingTokenPolicy,
    pub other_schemes: OtherSchemes,
    /// Header in which the verified thumbprint is passed upstream (any
    /// client-supplied value is removed first).
    pub thumbprint_header: Option<String>,
    pub enforcement: Enforcement,
}

/// A protected route described by Envoy route metadata
/// (`filter_metadata.certbound`): its policies as strings. An unknown policy
/// falls back to the strict one; a bad header name is dropped.
pub fn route_from_metadata(
    unbound: &str,
    missing: Option<&str>,
    other: Option<&str>,
    header: Option<&str>,
    enforcement: Option<&str>,
) -> ProtectedRoute {
    let header_ok = |h: &&str| crate::header::is_configurable(h);
    ProtectedRoute {
        path_prefix: String::new(),
        unbound_tokens: if unbound == "allow" { UnboundPolicy::Allow } else { UnboundPolicy::RequireBinding },
        missing_token: if missing == Some("pass") { MissingTokenPolicy::Pass } else { MissingTokenPolicy::Reject },
        other_schemes: if other == Some("pass") { OtherSchemes::Pass } else { OtherSchemes::Reject },
        thumbprint_header: header.filter(header_ok).map(str::to_string),
        enforcement: if enforcement == Some("report") { Enforcement::Report } else { Enforcement::Enforce },
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

/// What the `Authorization` header of a protected request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    Absent,
    /// `Bearer <b64token>` (RFC 6750 §2.1), scheme in any case.
    Bearer(&'a str),
    /// Credentials of another scheme (`Basic`, `DPoP`, ...).
    OtherScheme,
}

impl Credentials<'_> {
    pub fn kind(&self) -> CredentialsKind {
        match self {
            Credentials::Absent => CredentialsKind::Absent,
            Credentials::Bearer(_) => CredentialsKind::Bearer,
            Credentials::OtherScheme => CredentialsKind::OtherScheme,
        }
    }
}

/// [`Credentials`] without the token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CredentialsKind {
    #[default]
    Absent,
    Bearer,
    OtherScheme,
}

/// RFC 9110 §11.6.2 whitespace (OWS / the separator after the scheme).
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 9110 `tchar`: what an auth-scheme is made of.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Reads `Authorization` as RFC 9110 §11.4 and RFC 6750 §2.1 say: the scheme
/// case-insensitively, spaces or tabs after it, a `b64token`. Anything a
/// lenient resource server could still read as a Bearer token is either that
/// token or refused, never "no token": an empty header, `Bearer` without a
/// token, a token with spaces or other characters after it, and repeated
/// headers (Envoy folds them into one comma-separated value; no credentials
/// contain a comma).
pub fn credentials(authorization: Option<&str>) -> Result<Credentials<'_>, ResourceError> {
    let Some(value) = authorization else { return Ok(Credentials::Absent) };
    if value.contains(',') {
        return Err(ambiguous_authorization());
    }
    let value = value.trim_matches(is_ows);
    let (scheme, rest) = match value.find(is_ows) {
        Some(i) => (&value[..i], value[i..].trim_start_matches(is_ows)),
        None => (value, ""),
    };
    if scheme.is_empty() || !scheme.chars().all(is_tchar) {
        return Err(ResourceError::invalid_request(Reason::BadRequest, "the Authorization header is malformed"));
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::OtherScheme);
    }
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/".contains(c);
    let body = rest.trim_end_matches('=');
    if body.is_empty() || !body.chars().all(b64token) {
        return Err(ResourceError::invalid_request(Reason::BadRequest, "the Bearer credentials are malformed"));
    }
    Ok(Credentials::Bearer(rest))
}

/// The names a protected request may not carry in its query or form body
/// (RFC 6750 §2.2, §2.3), under any reading of [`crate::params`].
const TOKEN_PARAMETER: &[&str] = &["access_token"];

fn charset_refused(e: crate::params::ParamError) -> ResourceError {
    ResourceError::invalid_request(e.reason(), &e.to_string())
}

/// Refuses a request URI that carries `access_token` in its query (RFC 6750
/// §2.3), under any spelling a server could decode to it: a URI token would
/// slip past the binding check. A query beside a `Content-Type` whose charset
/// is not ASCII-transparent is refused too (Tomcat's `useBodyEncodingForURI`
/// decodes the query with it).
pub fn check_query(path: &str, content_type: Option<&str>) -> Result<(), ResourceError> {
    let Some((_, query)) = path.split_once('?') else { return Ok(()) };
    let query = query.split('#').next().unwrap_or_default();
    if crate::params::first_reading(query.as_bytes(), TOKEN_PARAMETER).is_some() {
        return Err(token_in_uri());
    }
    if !query.is_empty() {
        crate::params::check_charset(content_type).map_err(charset_refused)?;
    }
    Ok(())
}

/// Which request bodies certbound reads on a protected route before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCheck {
    /// Not a body a server reads parameters from.
    None,
    /// `application/x-www-form-urlencoded` (RFC 6750 §2.2), in any case, with parameters, even folded with another type.
    Form,
    /// `multipart/*`: refused, a token could hide in a part.
    Multipart,
}

pub fn body_check(content_type: Option<&str>) -> BodyCheck {
    let Some(ct) = content_type.map(str::to_ascii_lowercase) else { return BodyCheck::None };
    if ct.contains("multipart/") {
        BodyCheck::Multipart
    } else if ct.contains("x-www-form-urlencoded") {
        BodyCheck::Form
    } else {
        BodyCheck::None
    }
}

/// A multipart body on a protected route fails closed.
pub fn multipart_refused() -> ResourceError {
    ResourceError::invalid_request(
        Reason::BadRequest,
        "multipart bodies are not accepted on protected routes: a token in them would slip past the check",
    )
}

/// A form body in a `Content-Encoding` certbound does not read fails closed.
pub fn encoded_form_refused() -> ResourceError {
    ResourceError::invalid_request(Reason::BadRequest, "an encoded form body cannot be checked for tokens")
}

/// RFC 6750 §2.2: a form body on a protected route must not carry
/// `access_token` under any reading, nor be in a charset (or start with a
/// byte-order mark) that a server would decode into names certbound does not read.
pub fn check_form_body(content_type: Option<&str>, body: &[u8]) -> Result<(), ResourceError> {
    crate::params::check_form_encoding(content_type, body).map_err(charset_refused)?;
    if crate::params::first_reading(body, TOKEN_PARAMETER).is_some() {
        return Err(token_in_uri());
    }
    Ok(())
}

/// What a protected request presented.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtectedRequest<'a> {
    /// What the `Authorization` header carried.
    pub credentials: CredentialsKind,
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
    /// Credentials of another scheme: the route passes them on.
    OtherScheme,
}

fn matches(expected: &str, presented: &Thumbprint) -> bool {
    ct_eq_bytes(expected.as_bytes(), presented.x5t_s256().as_bytes())
}

/// RFC 8705 §3: the decision for one request on a protected route.
pub fn decide(route: &ProtectedRoute, p: &ProtectedRequest<'_>) -> Result<Allowed, ResourceError> {
    if p.credentials == CredentialsKind::OtherScheme {
        return match route.other_schemes {
            OtherSchemes::Pass => Ok(Allowed::OtherScheme),
            OtherSchemes::Reject => Err(ResourceError::invalid_request(
                Reason::OtherScheme,
                "this route accepts certificate-bound Bearer tokens only",
            )),
        };
    }
    if p.credentials == CredentialsKind::Absent {
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

/// The dynamic metadata that `jwt_authn` writes with `payload_in_metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtClaims {
    pub metadata_namespace: String,
    pub payload_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(unbound: UnboundPolicy, missing: MissingTokenPolicy) -> ProtectedRoute {
        ProtectedRoute {
            path_prefix: "/api/".into(),
            unbound_tokens: unbound,
            missing_token: missing,
            other_schemes: OtherSchemes::Reject,
            thumbprint_header: None,
            enforcement: Default::default(),
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
        let p = ProtectedRequest {
            credentials: CredentialsKind::Bearer,
            stored: Some(t(b"a")),
            certificate: Some(t(b"a")),
            ..Default::default()
        };
        assert_eq!(decide(&strict(), &p), Ok(Allowed::Bound(t(b"a"))));
    }

    #[test]
    fn refusals_have_an_oauth_body_and_a_bearer_challenge() {
        let e = token_in_uri();
        let body: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(body, json!({"error": "invalid_request", "error_description": e.description}));
        let none = decide(&strict(), &ProtectedRequest::default()).unwrap_err();
        let body: serde_json::Value = serde_json::from_slice(&none.body()).unwrap();
        assert_eq!(body, json!({"error_description": "a Bearer token is required"}));
        assert_eq!(none.headers()[0], ("www-authenticate", "Bearer".to_string()));
    }

    #[test]
    fn bound_token_with_another_certificate_is_invalid_token() {
        let p = ProtectedRequest {
            credentials: CredentialsKind::Bearer,
            stored: Some(t(b"a")),
            certificate: Some(t(b"b")),
            ..Default::default()
        };
        let e = decide(&strict(), &p).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (401, Some("invalid_token"), Reason::TokenCertificateMismatch));
        assert!(e.www_authenticate().starts_with("Bearer error=\"invalid_token\", error_description=\""));
    }

    #[test]
    fn bound_token_without_certificate_is_invalid_token() {
        let p = ProtectedRequest { credentials: CredentialsKind::Bearer, stored: Some(t(b"a")), ..Default::default() };
        assert_eq!(decide(&strict(), &p).unwrap_err().reason, Reason::TokenWithoutCertificate);
    }

    #[test]
    fn unbound_token_follows_the_route_policy() {
        let p =
            ProtectedRequest { credentials: CredentialsKind::Bearer, certificate: Some(t(b"a")), ..Default::default() };
        assert_eq!(decide(&route(UnboundPolicy::Allow, MissingTokenPolicy::Reject), &p), Ok(Allowed::Unbound));
        assert_eq!(decide(&strict(), &p).unwrap_err().reason, Reason::UnboundToken);
    }

    #[test]
    fn missing_token_follows_the_route_policy_without_an_error_code() {
        let p = ProtectedRequest::default();
        assert_eq!(decide(&route(UnboundPolicy::RequireBinding, MissingTokenPolicy::Pass), &p), Ok(Allowed::NoToken));
        let e = decide(&strict(), &p).unwrap_err();
        assert_eq!((e.status, e.error), (401, None));
        assert_eq!(e.www_authenticate(), "Bearer");
    }

    #[test]
    fn verified_jwt_cnf_claim_is_enforced_without_the_store() {
        let claim = t(b"a").x5t_s256();
        let ok = ProtectedRequest {
            credentials: CredentialsKind::Bearer,
            verified_claim: Some(&claim),
            certificate: Some(t(b"a")),
            ..Default::default()
        };
        assert_eq!(decide(&strict(), &ok), Ok(Allowed::Bound(t(b"a"))));
        let bad = ProtectedRequest { certificate: Some(t(b"b")), ..ok };
        assert_eq!(decide(&strict(), &bad).unwrap_err().reason, Reason::TokenCertificateMismatch);
    }

    #[test]
    fn store_and_claim_must_both_name_the_certificate() {
        let claim = t(b"b").x5t_s256();
        let p = ProtectedRequest {
            credentials: CredentialsKind::Bearer,
            stored: Some(t(b"a")),
            verified_claim: Some(&claim),
            certificate: Some(t(b"a")),
        };
        assert_eq!(decide(&strict(), &p).unwrap_err().reason, Reason::TokenCertificateMismatch);
    }

    #[test]
    fn malformed_cnf_claim_is_invalid_token() {
        let p = ProtectedRequest {
            credentials: CredentialsKind::Bearer,
            verified_claim: Some("nope"),
            certificate: Some(t(b"a")),
            ..Default::default()
        };
        assert_eq!(decide(&strict(), &p).unwrap_err().reason, Reason::BadCnfClaim);
    }

    fn bearer(v: &str) -> Result<Credentials<'_>, Reason> {
        credentials(Some(v)).map_err(|e| e.reason)
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_spaces_or_tabs_separate_it() {
        for v in ["Bearer abc", "bearer abc", "BEARER  abc", "Bearer\tabc", " Bearer abc\t"] {
            assert_eq!(bearer(v), Ok(Credentials::Bearer("abc")), "{v:?}");
        }
        assert_eq!(bearer("Bearer abc.def-_~+/=="), Ok(Credentials::Bearer("abc.def-_~+/==")));
        assert_eq!(credentials(None), Ok(Credentials::Absent));
    }

    #[test]
    fn malformed_bearer_credentials_are_refused_never_taken_for_no_token() {
        for v in ["Bearer", "Bearer ", "", "  ", "Bearer a b", "Bearer a\"b", "Bearer ==", "Be@rer abc"] {
            let e = credentials(Some(v)).unwrap_err();
            assert_eq!((e.status, e.error), (400, Some("invalid_request")), "{v:?}");
        }
    }

    #[test]
    fn other_schemes_are_recognised_and_follow_the_route_policy() {
        assert_eq!(bearer("DPoP abc"), Ok(Credentials::OtherScheme));
        assert_eq!(bearer("Basic YTpi"), Ok(Credentials::OtherScheme));
        assert_eq!(bearer("Negotiate"), Ok(Credentials::OtherScheme));
        let p = ProtectedRequest { credentials: CredentialsKind::OtherScheme, ..Default::default() };
        let e = decide(&strict(), &p).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (400, Some("invalid_request"), Reason::OtherScheme));
        let mut pass = route(UnboundPolicy::RequireBinding, MissingTokenPolicy::Reject);
        pass.other_schemes = OtherSchemes::Pass;
        assert_eq!(decide(&pass, &p), Ok(Allowed::OtherScheme));
    }

    #[test]
    fn folded_authorization_headers_are_refused() {
        let e = credentials(Some("Bearer a,Bearer b")).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (400, Some("invalid_request"), Reason::BadRequest));
    }

    #[test]
    fn access_token_in_the_query_is_found_under_every_spelling() {
        for q in [
            "/api/x?access_token=abc",
            "/api/x?a=1&access_token=abc",
            "/api/x?access%5ftoken=abc",
            "/api/x?%61ccess_token=abc",
            "/api/x?x=1;access_token=abc",
            "/api/x?access.token=abc",
            "/api/x?access+token=abc",
            "/api/x?Access_Token=abc",
            "/api/x?access_token[]=abc",
            "/api/x?access_token",
            "/api/x?+access_token=abc",
            "/api/x?access[token=abc",
            "/api/x?access_token%00=abc",
            "/api/x?access_%1B%28Btoken=abc",
        ] {
            assert_eq!(check_query(q, None).unwrap_err().reason, Reason::TokenInUri, "{q}");
        }
        assert!(check_query("/api/x?my_access_token=abc&q=100%", None).is_ok());
        assert!(check_query("/api/x?%zz=1", None).is_ok());
        assert!(check_query("/api/x", None).is_ok());
        let e = token_in_uri();
        assert_eq!((e.status, e.error), (400, Some("invalid_request")));
    }

    #[test]
    fn a_query_beside_a_charset_that_is_not_ascii_transparent_is_refused() {
        let utf16 = Some("application/x-www-form-urlencoded; charset=utf-16");
        let e = check_query("/api/x?a=1", utf16).unwrap_err();
        assert_eq!((e.status, e.reason), (400, Reason::UnsupportedCharset));
        assert!(check_query("/api/x", utf16).is_ok());
        assert!(check_query("/api/x?a=1", Some("text/plain; charset=windows-1252")).is_ok());
    }

    #[test]
    fn form_bodies_on_protected_routes_carry_no_token_under_any_reading() {
        let form = Some("application/x-www-form-urlencoded");
        for body in [&b"a=1&b=two+words%21"[..], b"a=%zz", b"a=%ff", b"%zz", b"%ff=1"] {
            assert!(check_form_body(form, body).is_ok(), "{}", String::from_utf8_lossy(body));
        }
        for body in [&b"access%5ftoken=x"[..], b"a=1;access_token=x", b"ACCESS_TOKEN=x", b"access[token=x"] {
            assert_eq!(check_form_body(form, body).unwrap_err().reason, Reason::TokenInUri);
        }
        for (ct, body) in [
            (Some("application/x-www-form-urlencoded; charset=utf-16le"), &b"a\x00=\x001\x00"[..]),
            (Some("application/x-www-form-urlencoded; charset=IBM037"), b"\x81\x7e\xf1"),
            (form, b"\xef\xbb\xbfa=1"),
        ] {
            let e = check_form_body(ct, body).unwrap_err();
            assert_eq!((e.status, e.reason), (400, Reason::UnsupportedCharset));
        }
    }

    #[test]
    fn which_bodies_are_read_before_deciding() {
        assert_eq!(body_check(Some("application/x-www-form-urlencoded")), BodyCheck::Form);
        assert_eq!(body_check(Some("Application/X-WWW-Form-Urlencoded; charset=utf-8")), BodyCheck::Form);
        assert_eq!(body_check(Some("application/json,application/x-www-form-urlencoded")), BodyCheck::Form);
        assert_eq!(body_check(Some("multipart/form-data; boundary=x")), BodyCheck::Multipart);
        assert_eq!(body_check(Some("application/json")), BodyCheck::None);
        assert_eq!(body_check(None), BodyCheck::None);
    }

    #[test]
    fn route_metadata_policies_fall_back_to_strict() {
        let r = route_from_metadata("allow", Some("pass"), Some("pass"), Some("x-x5t"), Some("report"));
        assert_eq!(r.enforcement, Enforcement::Report);
        assert_eq!((r.unbound_tokens, r.missing_token), (UnboundPolicy::Allow, MissingTokenPolicy::Pass));
        assert_eq!(r.other_schemes, OtherSchemes::Pass);
        assert_eq!(r.thumbprint_header.as_deref(), Some("x-x5t"));
        let r = route_from_metadata("alow", Some("maybe"), Some("yes"), Some("Authorization"), Some("reports"));
        assert_eq!(r.enforcement, Enforcement::Enforce);
        assert_eq!((r.unbound_tokens, r.missing_token), (UnboundPolicy::RequireBinding, MissingTokenPolicy::Reject));
        assert_eq!(r.other_schemes, OtherSchemes::Reject);
        assert_eq!(r.thumbprint_header, None);
    }
}
