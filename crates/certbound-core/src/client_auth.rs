//! Client authenticated: the token request's client, found from the form body
//! or HTTP Basic, is authenticated by the certificate it presented (RFC 8705 §2).

use crate::binding::{keys_for_token, TokenKeys};
use crate::cert::Names;
use crate::cert::Thumbprint;
use crate::cert::Validity;
use crate::cert_source::Presented;
use crate::dn::Dn;
use crate::error::{OAuthError, Reason};
use crate::form::{self, AuthorizationError};
use crate::params::{self, ParamError};
use std::collections::HashMap;

/// What the filter saw of a token request.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    pub content_type: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
    /// The certificate presented on this request, from its trusted source.
    pub certificate: Option<&'a Presented>,
    /// Unix seconds.
    pub now: i64,
}

/// A token request that may go upstream: its client, and the certificate its
/// tokens are to be bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub client_id: String,
    /// The certificate the tokens get bound to; `None` only for a public
    /// client that presented none and may have unbound tokens.
    pub thumbprint: Option<Thumbprint>,
    /// The `Authorization` value to present upstream, or none.
    pub upstream_authorization: Option<String>,
    /// When the request carries a `refresh_token` (any grant type): its store
    /// keys, whose binding must be checked before the request goes upstream.
    pub refresh_key: Option<TokenKeys>,
    /// Every refresh token of this client is bound (a public client registered
    /// with `tls_client_certificate_bound_access_tokens`): one without a binding is refused.
    pub refresh_must_be_bound: bool,
}

/// Parameters by which a client would authenticate another way (RFC 6749 §2.3,
/// RFC 7523). A request may use one method only.
const OTHER_CLIENT_AUTH_PARAMS: [&str; 3] = ["client_secret", "client_assertion", "client_assertion_type"];

/// The token request's parameters certbound reads: each must be spelled so
/// that every server reads it as certbound does (see [`crate::params`]).
pub const TOKEN_PARAMETERS: &[&str] =
    &["client_id", "grant_type", "refresh_token", "client_secret", "client_assertion", "client_assertion_type"];

/// Client ids are echoed in error descriptions; keep them short and printable.
pub fn printable(id: &str) -> String {
    id.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Registered clients by `client_id`.
pub type Clients = HashMap<String, Client>;

/// The parameters of a token request body certbound reads, read as every
/// server behind it would ([`crate::params`]): its charset, then each of [`TOKEN_PARAMETERS`].
pub fn token_parameters(content_type: Option<&str>, body: &[u8]) -> Result<params::Judged, ParamError> {
    params::check_form_encoding(content_type, body)?;
    params::judge(body, TOKEN_PARAMETERS)
}

pub fn authenticate(clients: &Clients, req: &TokenRequest<'_>) -> Result<Authenticated, OAuthError> {
    if !req.content_type.map(form::is_form_content_type).unwrap_or(false) {
        return Err(OAuthError::invalid_request(
            Reason::BadRequest,
            "token request must be application/x-www-form-urlencoded",
        ));
    }
    // Envoy folds repeated Authorization headers into one comma-separated value.
    if req.authorization.is_some_and(|a| a.contains(',')) {
        return Err(OAuthError::invalid_request(Reason::BadRequest, "more than one Authorization header"));
    }
    let body = token_parameters(req.content_type, req.body)
        .map_err(|e| OAuthError::invalid_request(e.reason(), e.to_string()))?;
    let body_client_id = body.get("client_id");

    if let Some(p) = OTHER_CLIENT_AUTH_PARAMS.iter().find(|p| body.contains(p)) {
        return Err(OAuthError::invalid_request(
            Reason::MixedClientAuthentication,
            format!("{p} must not be sent: the client authenticates with its certificate"),
        ));
    }

    let basic_client_id = match req.authorization {
        None => None,
        Some(h) => match form::parse_basic(h) {
            Ok(c) if c.secret.is_empty() => Some(c.client_id),
            Ok(_) => {
                return Err(OAuthError::invalid_request(
                    Reason::MixedClientAuthentication,
                    "a client secret must not be sent: the client authenticates with its certificate",
                ))
            }
            Err(AuthorizationError::NotBasic) => {
                return Err(OAuthError::invalid_request(
                    Reason::BadRequest,
                    "only HTTP Basic may carry the client_id at the token endpoint",
                ))
            }
            Err(AuthorizationError::Malformed) => {
                return Err(OAuthError::invalid_request(Reason::BadRequest, "malformed HTTP Basic credentials"))
            }
        },
    };

    let client_id =
        match (body_client_id, basic_client_id.as_deref()) {
            (Some(b), Some(h)) if b != h => {
                return Err(OAuthError::invalid_request(
                    Reason::ClientIdMismatch,
                    "client_id in the body and in HTTP Basic differ",
                ))
            }
            (Some(id), _) => id,
            // RFC 8705 §2: the client MUST include client_id in the body (oidc-provider answers the same).
            (None, Some(_)) => return Err(OAuthError::invalid_request(
                Reason::MissingClientId,
                "client_id is required in the request body (RFC 8705 §2); HTTP Basic alone does not name the client",
            )),
            (None, None) => return Err(OAuthError::invalid_request(Reason::MissingClientId, "client_id is required")),
        };

    let client = clients.get(client_id).ok_or_else(|| {
        OAuthError::invalid_client(
            Reason::UnknownClient,
            format!("client {:?} is not registered", printable(client_id)),
        )
    })?;

    let thumbprint = match &client.method {
        ClientAuthMethod::SelfSignedTlsClientAuth { pins } => {
            Some(match_pins(pins, req.certificate.map(|p| p.thumbprint), req.now)?)
        }
        ClientAuthMethod::TlsClientAuth { rule } => Some(match_tls_client_auth(rule, req.certificate, req.now)?),
        ClientAuthMethod::None { require_certificate } => match req.certificate.map(|p| p.thumbprint) {
            Some(presented) => Some(presented),
            // RFC 6749 §5.2: a public client is not authenticated, so the failure is the grant's
            // (invalid_grant), as an AS with RFC 8705 of its own answers it.
            None if *require_certificate => {
                return Err(OAuthError::invalid_grant(
                    Reason::NoCertificate,
                    "this client is registered for certificate-bound tokens and presented no certificate",
                ))
            }
            None => None,
        },
    };

    // Checked whatever grant_type says: an AS that reads the grant type
    // leniently (case, a URN alias) must not refresh a token certbound skipped.
    let refresh_key = match body.get("refresh_token").filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => {
            Some(keys_for_token(t).map_err(|e| OAuthError::invalid_request(Reason::AmbiguousToken, e.to_string()))?)
        }
    };

    Ok(Authenticated {
        client_id: client.client_id.clone(),
        thumbprint,
        upstream_authorization: client
            .upstream
            .as_ref()
            .map(|u| form::basic_header(&client.client_id, u.client_secret.expose())),
        refresh_key,
        refresh_must_be_bound: matches!(client.method, ClientAuthMethod::None { require_certificate: true }),
    })
}

/// RFC 8705 §2.1: a certificate whose chain the terminator verified, with
/// the registered subject DN or SAN.
fn match_tls_client_auth(
    rule: &TlsClientAuthRule,
    presented: Option<&Presented>,
    now: i64,
) -> Result<Thumbprint, OAuthError> {
    let presented = presented.ok_or_else(|| {
        OAuthError::invalid_client(Reason::NoCertificate, "a client certificate is required for this client")
    })?;
    if !presented.chain_verified {
        return Err(OAuthError::invalid_client(
            Reason::ChainNotVerified,
            "tls_client_auth needs a certificate whose chain was verified by the TLS terminator",
        ));
    }
    let Some(cert) = &presented.cert else {
        return Err(OAuthError::invalid_client(
            Reason::ChainNotVerified,
            "the certificate's subject is not available from this source; forward the certificate in a header",
        ));
    };
    if !cert.validity.contains(now) {
        return Err(OAuthError::invalid_client(
            Reason::CertificateExpired,
            "the client certificate is outside its validity period",
        ));
    }
    let names = cert.names().map_err(|e| {
        OAuthError::invalid_client(
            Reason::CertificateDoesNotMatch,
            format!("the client certificate's subject cannot be read: {e}"),
        )
    })?;
    if tls_client_auth_matches(rule, &names) {
        Ok(cert.thumbprint)
    } else {
        Err(OAuthError::invalid_client(
            Reason::CertificateDoesNotMatch,
            "the client certificate does not have the registered subject",
        ))
    }
}

/// RFC 8705 §2.1.2: DN compared by structure, DNS names case-insensitively,
/// IP addresses as bytes, URIs and e-mail addresses exactly.
pub fn tls_client_auth_matches(rule: &TlsClientAuthRule, cert: &Names) -> bool {
    match rule {
        TlsClientAuthRule::SubjectDn(dn) => &cert.subject == dn,
        TlsClientAuthRule::SanDns(d) => cert.sans.dns.iter().any(|x| x.eq_ignore_ascii_case(d)),
        TlsClientAuthRule::SanUri(u) => cert.sans.uri.iter().any(|x| x == u),
        TlsClientAuthRule::SanIp(ip) => cert.sans.ip.iter().any(|x| x == ip),
        TlsClientAuthRule::SanEmail(e) => cert.sans.email.iter().any(|x| x == e),
    }
}

/// RFC 8705 §2.2: the presented certificate must be one of the client's pins.
fn match_pins(pins: &[Pin], presented: Option<Thumbprint>, now: i64) -> Result<Thumbprint, OAuthError> {
    let presented = presented.ok_or_else(|| {
        OAuthError::invalid_client(Reason::NoCertificate, "a client certificate is required for this client")
    })?;
    // Compare against every pin, without stopping at the first match, so the
    // time taken does not say which pin (if any) matched.
    let mut matched = None;
    for pin in pins {
        if pin.thumbprint.ct_eq(&presented) {
            matched = Some(pin);
        }
    }
    let pin = matched.ok_or_else(|| {
        OAuthError::invalid_client(
            Reason::CertificateNotRegistered,
            "the client certificate is not registered for this client",
        )
    })?;
    if let Some(validity) = pin.validity {
        if !validity.contains(now) {
            return Err(OAuthError::invalid_client(
                Reason::CertificateExpired,
                "the client certificate is outside its validity period",
            ));
        }
    }
    Ok(presented)
}

/// A secret from the config: never shown by `Debug` or in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One registered certificate: its thumbprint, and its validity when the
/// config gave the whole certificate (a bare thumbprint has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub thumbprint: Thumbprint,
    pub validity: Option<Validity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// RFC 8705 §2.2: the client's self-signed certificate(s), pinned.
    SelfSignedTlsClientAuth { pins: Vec<Pin> },
    /// RFC 8705 §2.1: a certificate from a verified chain, with this subject or SAN.
    TlsClientAuth { rule: TlsClientAuthRule },
    /// A public client (`none`, RFC 8705 §4): no client authentication; its
    /// tokens are bound when it presents a certificate.
    None {
        /// RFC 8705 §3.4 `tls_client_certificate_bound_access_tokens`: when
        /// true, a call without a certificate is refused instead of getting
        /// unbound tokens.
        require_certificate: bool,
    },
}

/// The one certificate field a `tls_client_auth` client is registered by (RFC 8705 §2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsClientAuthRule {
    SubjectDn(Dn),
    SanDns(String),
    SanUri(String),
    /// 4 or 16 bytes.
    SanIp(Vec<u8>),
    SanEmail(String),
}

impl Client {
    /// Every token this client gets is certificate-bound (it authenticates by
    /// certificate, or is a public client registered for bound tokens), so a
    /// token of it with no binding found is refused, never taken as unbound.
    pub fn tokens_always_bound(&self) -> bool {
        !matches!(self.method, ClientAuthMethod::None { require_certificate: false })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCredentials {
    pub client_secret: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub method: ClientAuthMethod,
    /// What certbound presents to the AS once the certificate has authenticated the client.
    pub upstream: Option<UpstreamCredentials>,
    /// Where the client publishes its JWK Set; its certificates are added to the pins when fetched.
    pub jwks_uri: Option<crate::jwks::JwksUri>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::{parse_pem, ClientCert};
    use crate::cert_source::Origin;
    use crate::config::{self, Config};
    use serde_json::json;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
    const NOW: i64 = 1_800_000_000;

    struct Fixture {
        config: Config,
        registered: Thumbprint,
    }

    fn cert_pem(not_after_year: i32) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        params.self_signed(&key).unwrap().pem()
    }

    fn fixture_with(pem: &str) -> Fixture {
        let config = config::parse(
            json!({"clients":[
                {"client_id":"c1","token_endpoint_auth_method":"self_signed_tls_client_auth",
                 "certificates":[pem],"upstream":{"client_secret":"up-secret"}},
                {"client_id":"c2","token_endpoint_auth_method":"self_signed_tls_client_auth",
                 "thumbprints":[Thumbprint::of_der(b"rotated").x5t_s256(), Thumbprint::of_der(b"next").x5t_s256()]},
                {"client_id":"public","token_endpoint_auth_method":"none"},
                {"client_id":"public-bound","token_endpoint_auth_method":"none","tls_client_certificate_bound_access_tokens":true}
            ]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        Fixture { config, registered: parse_pem(pem).unwrap().thumbprint }
    }

    fn fixture() -> Fixture {
        fixture_with(&cert_pem(2099))
    }

    fn presented(t: Thumbprint) -> &'static Presented {
        Box::leak(Box::new(Presented { thumbprint: t, cert: None, chain_verified: false, origin: Origin::Connection }))
    }

    fn req<'a>(body: &'a [u8], cert: Option<Thumbprint>) -> TokenRequest<'a> {
        TokenRequest { content_type: FORM, authorization: None, body, certificate: cert.map(presented), now: NOW }
    }

    #[test]
    fn registered_certificate_authenticates_and_upstream_secret_is_presented() {
        let f = fixture();
        let a =
            authenticate(&f.config.clients, &req(b"grant_type=client_credentials&client_id=c1", Some(f.registered)))
                .unwrap();
        assert_eq!(a.client_id, "c1");
        assert_eq!(a.thumbprint, Some(f.registered));
        assert_eq!(a.refresh_key, None);
        // Python: "Basic " + base64.b64encode(b"c1:up-secret")
        assert_eq!(a.upstream_authorization.as_deref(), Some("Basic YzE6dXAtc2VjcmV0"));
    }

    #[test]
    fn upstream_credentials_with_reserved_characters_are_form_encoded_before_base64() {
        // RFC 6749 §2.3.1. Expected value from Python, outside certbound:
        // "Basic " + base64.b64encode((quote_plus(id, safe="") + ":" + quote_plus(secret, safe="")).encode())
        let pem = cert_pem(2099);
        let config = config::parse(
            json!({"clients":[{"client_id":"app:1 x%+","token_endpoint_auth_method":"self_signed_tls_client_auth",
                               "certificates":[pem],"upstream":{"client_secret":"p%ss+w:rd /\u{e9}"}}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let t = parse_pem(&pem).unwrap().thumbprint;
        let a = authenticate(&config.clients, &req(b"client_id=app%3A1+x%25%2B", Some(t))).unwrap();
        assert_eq!(a.client_id, "app:1 x%+");
        assert_eq!(
            a.upstream_authorization.as_deref(),
            Some("Basic YXBwJTNBMSt4JTI1JTJCOnAlMjVzcyUyQnclM0FyZCslMkYlQzMlQTk=")
        );
    }

    #[test]
    fn any_of_several_pinned_thumbprints_authenticates_for_rotation() {
        let f = fixture();
        for der in [&b"rotated"[..], b"next"] {
            let a = authenticate(&f.config.clients, &req(b"client_id=c2", Some(Thumbprint::of_der(der)))).unwrap();
            assert_eq!(a.upstream_authorization, None);
        }
    }

    #[test]
    fn unregistered_certificate_is_invalid_client() {
        let f = fixture();
        let e =
            authenticate(&f.config.clients, &req(b"client_id=c1", Some(Thumbprint::of_der(b"stranger")))).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (401, "invalid_client", Reason::CertificateNotRegistered));
    }

    #[test]
    fn another_clients_certificate_is_invalid_client() {
        let f = fixture();
        let e = authenticate(&f.config.clients, &req(b"client_id=c2", Some(f.registered))).unwrap_err();
        assert_eq!(e.reason, Reason::CertificateNotRegistered);
    }

    #[test]
    fn no_certificate_is_invalid_client() {
        let f = fixture();
        let e = authenticate(&f.config.clients, &req(b"client_id=c1", None)).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (401, "invalid_client", Reason::NoCertificate));
    }

    #[test]
    fn unknown_client_is_invalid_client() {
        let f = fixture();
        let e = authenticate(&f.config.clients, &req(b"client_id=nobody", Some(f.registered))).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (401, "invalid_client", Reason::UnknownClient));
    }

    #[test]
    fn certificate_outside_validity_is_invalid_client() {
        let f = fixture_with(&cert_pem(2021));
        let e = authenticate(&f.config.clients, &req(b"client_id=c1", Some(f.registered))).unwrap_err();
        assert_eq!((e.status, e.reason), (401, Reason::CertificateExpired));
    }

    #[test]
    fn missing_client_id_is_invalid_request() {
        let f = fixture();
        let e =
            authenticate(&f.config.clients, &req(b"grant_type=client_credentials", Some(f.registered))).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (400, "invalid_request", Reason::MissingClientId));
    }

    #[test]
    fn client_id_only_in_basic_is_invalid_request_as_rfc_8705_section_2_requires_the_parameter() {
        let f = fixture();
        let h = form::basic_header("c1", "");
        let r = TokenRequest { authorization: Some(&h), ..req(b"grant_type=client_credentials", Some(f.registered)) };
        let e = authenticate(&f.config.clients, &r).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (400, "invalid_request", Reason::MissingClientId));
        // Both, agreeing, is fine.
        let r = TokenRequest { authorization: Some(&h), ..req(b"client_id=c1", Some(f.registered)) };
        assert_eq!(authenticate(&f.config.clients, &r).unwrap().client_id, "c1");
    }

    #[test]
    fn client_id_in_basic_and_body_disagreeing_is_refused() {
        let f = fixture();
        let h = form::basic_header("c2", "");
        let r = TokenRequest { authorization: Some(&h), ..req(b"client_id=c1", Some(f.registered)) };
        assert_eq!(authenticate(&f.config.clients, &r).unwrap_err().reason, Reason::ClientIdMismatch);
    }

    #[test]
    fn client_id_twice_is_invalid_request() {
        let f = fixture();
        let e = authenticate(&f.config.clients, &req(b"client_id=c1&client_id=c1", Some(f.registered))).unwrap_err();
        assert_eq!((e.status, e.error), (400, "invalid_request"));
    }

    #[test]
    fn a_client_secret_beside_the_certificate_is_refused() {
        let f = fixture();
        let e = authenticate(&f.config.clients, &req(b"client_id=c1&client_secret=x", Some(f.registered))).unwrap_err();
        assert_eq!(e.reason, Reason::MixedClientAuthentication);
        let h = form::basic_header("c1", "x");
        let r = TokenRequest { authorization: Some(&h), ..req(b"client_id=c1", Some(f.registered)) };
        assert_eq!(authenticate(&f.config.clients, &r).unwrap_err().reason, Reason::MixedClientAuthentication);
    }

    #[test]
    fn repeated_authorization_headers_are_refused() {
        let f = fixture();
        let h = format!("{},{}", form::basic_header("c1", ""), form::basic_header("c2", ""));
        let r = TokenRequest { authorization: Some(&h), ..req(b"client_id=c1", Some(f.registered)) };
        let e = authenticate(&f.config.clients, &r).unwrap_err();
        assert_eq!(
            (e.status, e.error, e.description.as_str()),
            (400, "invalid_request", "more than one Authorization header")
        );
    }

    #[test]
    fn non_basic_authorization_is_refused() {
        let f = fixture();
        let r = TokenRequest { authorization: Some("Bearer x"), ..req(b"client_id=c1", Some(f.registered)) };
        assert_eq!(authenticate(&f.config.clients, &r).unwrap_err().error, "invalid_request");
    }

    #[test]
    fn non_form_body_is_invalid_request() {
        let f = fixture();
        let r = TokenRequest { content_type: Some("application/json"), ..req(b"{}", Some(f.registered)) };
        assert_eq!(authenticate(&f.config.clients, &r).unwrap_err().error, "invalid_request");
        let r = TokenRequest { content_type: None, ..req(b"client_id=c1", Some(f.registered)) };
        assert_eq!(authenticate(&f.config.clients, &r).unwrap_err().error, "invalid_request");
    }

    #[test]
    fn unreadable_body_is_invalid_request() {
        let f = fixture();
        let e = authenticate(&f.config.clients, &req(b"client_id=%zz", Some(f.registered))).unwrap_err();
        assert_eq!((e.status, e.error), (400, "invalid_request"));
    }

    #[test]
    fn an_unknown_client_is_named_printably_and_briefly() {
        let f = fixture();
        let e = authenticate(&f.config.clients, &req(b"client_id=nobody", Some(f.registered))).unwrap_err();
        assert_eq!(e.description, "client \"nobody\" is not registered");
        let long = format!("client_id={}", "a".repeat(100));
        let e = authenticate(&f.config.clients, &req(long.as_bytes(), Some(f.registered))).unwrap_err();
        assert!(e.description.contains(&format!("\"{}\"", "a".repeat(64))), "{}", e.description);
        assert_eq!(printable("a\u{7}b\nc\td"), "abcd");
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "Secret(<redacted>)");
    }

    #[test]
    fn error_description_does_not_echo_long_or_control_input() {
        let f = fixture();
        let body = format!("client_id={}%0A", "a".repeat(500));
        let e = authenticate(&f.config.clients, &req(body.as_bytes(), Some(f.registered))).unwrap_err();
        assert!(e.description.len() < 120, "{}", e.description);
        assert!(!e.description.contains('\n'));
    }

    #[test]
    fn public_client_with_a_certificate_gets_bound_tokens() {
        let f = fixture();
        let t = Thumbprint::of_der(b"any self-chosen certificate");
        let a = authenticate(&f.config.clients, &req(b"client_id=public", Some(t))).unwrap();
        assert_eq!((a.thumbprint, a.upstream_authorization), (Some(t), None));
    }

    #[test]
    fn public_client_without_a_certificate_gets_unbound_tokens_by_default() {
        let f = fixture();
        assert_eq!(authenticate(&f.config.clients, &req(b"client_id=public", None)).unwrap().thumbprint, None);
    }

    #[test]
    fn public_client_registered_for_bound_tokens_needs_a_certificate() {
        let f = fixture();
        let e = authenticate(&f.config.clients, &req(b"client_id=public-bound", None)).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (400, "invalid_grant", Reason::NoCertificate));
    }

    #[test]
    fn refresh_grant_names_the_refresh_token_by_its_hash() {
        let f = fixture();
        let body = b"grant_type=refresh_token&refresh_token=rt-1&client_id=c1";
        let a = authenticate(&f.config.clients, &req(body, Some(f.registered))).unwrap();
        assert_eq!(a.refresh_key, keys_for_token("rt-1").ok());
    }

    #[test]
    fn a_refresh_token_is_checked_whatever_the_grant_type_says() {
        let f = fixture();
        for body in
            [&b"grant_type=Refresh_Token&refresh_token=rt-1&client_id=c1"[..], b"refresh_token=rt-1&client_id=c1"]
        {
            let a = authenticate(&f.config.clients, &req(body, Some(f.registered))).unwrap();
            assert_eq!(a.refresh_key, keys_for_token("rt-1").ok());
        }
    }

    #[test]
    fn a_refresh_token_spelled_so_some_server_reads_it_otherwise_is_refused() {
        let f = fixture();
        for (body, reason) in [
            (&b"grant_type=refresh_token&refresh_token[]=rt&client_id=c1"[..], Reason::AmbiguousParameter),
            (b"grant_type=refresh_token&Refresh_Token=rt&client_id=c1", Reason::AmbiguousParameter),
            (b"grant_type=refresh_token&+refresh_token=rt&client_id=c1", Reason::AmbiguousParameter),
            (b"grant_type=refresh_token;refresh_token=rt&client_id=c1", Reason::AmbiguousParameter),
            (b"refresh_token=r%C3%A9&client_id=c1", Reason::MalformedParameter),
            (b"client_id=c1&client.secret=x", Reason::AmbiguousParameter),
            (b"\xef\xbb\xbfclient_id=c1", Reason::UnsupportedCharset),
        ] {
            let e = authenticate(&f.config.clients, &req(body, Some(f.registered))).unwrap_err();
            assert_eq!(
                (e.status, e.error, e.reason),
                (400, "invalid_request", reason),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_body_in_a_charset_that_is_not_ascii_transparent_is_refused() {
        let f = fixture();
        let r = TokenRequest {
            content_type: Some("application/x-www-form-urlencoded; charset=UTF-16"),
            ..req(b"client_id=c1", Some(f.registered))
        };
        let e = authenticate(&f.config.clients, &r).unwrap_err();
        assert_eq!((e.status, e.reason), (400, Reason::UnsupportedCharset));
        let r = TokenRequest {
            content_type: Some("application/x-www-form-urlencoded; charset=ISO-8859-1"),
            ..req(b"client_id=c1&scope=caf%E9", Some(f.registered))
        };
        assert_eq!(authenticate(&f.config.clients, &r).unwrap().client_id, "c1");
    }

    #[test]
    fn a_refresh_token_padded_inside_a_segment_is_refused() {
        let f = fixture();
        let body = b"refresh_token=eyJhbGciOiJub25lIn0.e30.QU%3DJD&client_id=c1";
        let e = authenticate(&f.config.clients, &req(body, Some(f.registered))).unwrap_err();
        assert_eq!((e.status, e.reason), (400, Reason::AmbiguousToken));
    }

    #[test]
    fn refresh_token_twice_is_invalid_request() {
        let f = fixture();
        let body = b"grant_type=refresh_token&refresh_token=a&refresh_token=b&client_id=c1";
        let e = authenticate(&f.config.clients, &req(body, Some(f.registered))).unwrap_err();
        assert_eq!((e.status, e.error), (400, "invalid_request"));
    }

    fn tls_cert(customize: impl FnOnce(&mut rcgen::CertificateParams)) -> ClientCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client.example".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CountryName, "US");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Example Org");
        params.distinguished_name.push(rcgen::DnType::CommonName, "client");
        params.subject_alt_names.push(rcgen::SanType::URI("spiffe://example/client".try_into().unwrap()));
        params.subject_alt_names.push(rcgen::SanType::IpAddress("2001:db8::1".parse().unwrap()));
        params.subject_alt_names.push(rcgen::SanType::IpAddress("10.1.2.3".parse().unwrap()));
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name("client@example.com".try_into().unwrap()));
        customize(&mut params);
        parse_pem(&params.self_signed(&key).unwrap().pem()).unwrap()
    }

    fn tls_config(field: &str, value: &str) -> Config {
        config::parse(
            json!({"clients":[{"client_id":"t","token_endpoint_auth_method":"tls_client_auth", field: value}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    fn tls_auth(field: &str, value: &str, cert: &ClientCert, verified: bool) -> Result<Authenticated, OAuthError> {
        let p = Presented {
            thumbprint: cert.thumbprint,
            cert: Some(cert.clone()),
            chain_verified: verified,
            origin: Origin::Header(0),
        };
        authenticate(
            &tls_config(field, value).clients,
            &TokenRequest { certificate: Some(&p), ..req(b"client_id=t", None) },
        )
    }

    #[test]
    fn tls_client_auth_matches_and_mismatches_each_field() {
        let c = tls_cert(|_| {});
        for (field, good, bad) in [
            ("tls_client_auth_subject_dn", "CN=client,O=Example Org,C=US", "CN=other,O=Example Org,C=US"),
            ("tls_client_auth_san_dns", "CLIENT.example", "other.example"),
            ("tls_client_auth_san_uri", "spiffe://example/client", "spiffe://example/other"),
            ("tls_client_auth_san_ip", "10.1.2.3", "10.1.2.4"),
            ("tls_client_auth_san_ip", "2001:db8:0::1", "2001:db8::2"),
            ("tls_client_auth_san_email", "client@example.com", "other@example.com"),
        ] {
            assert_eq!(tls_auth(field, good, &c, true).unwrap().thumbprint, Some(c.thumbprint), "{field}={good}");
            let e = tls_auth(field, bad, &c, true).unwrap_err();
            assert_eq!((e.status, e.reason), (401, Reason::CertificateDoesNotMatch), "{field}={bad}");
        }
    }

    #[test]
    fn tls_client_auth_dns_differing_only_in_spacing_or_type_case_match_but_not_in_order() {
        let c = tls_cert(|_| {});
        assert!(tls_auth("tls_client_auth_subject_dn", "cn=client , o=Example Org, c=US", &c, true).is_ok());
        assert!(tls_auth("tls_client_auth_subject_dn", "C=US,O=Example Org,CN=client", &c, true).is_err());
    }

    #[test]
    fn tls_client_auth_needs_a_verified_chain() {
        let c = tls_cert(|_| {});
        let e = tls_auth("tls_client_auth_san_dns", "client.example", &c, false).unwrap_err();
        assert_eq!((e.status, e.reason), (401, Reason::ChainNotVerified));
    }

    #[test]
    fn tls_client_auth_needs_the_certificate_not_only_its_digest() {
        let f = tls_config("tls_client_auth_san_dns", "client.example");
        let p = Presented {
            thumbprint: Thumbprint::of_der(b"x"),
            cert: None,
            chain_verified: true,
            origin: Origin::Connection,
        };
        let e =
            authenticate(&f.clients, &TokenRequest { certificate: Some(&p), ..req(b"client_id=t", None) }).unwrap_err();
        assert_eq!(e.reason, Reason::ChainNotVerified);
    }

    #[test]
    fn tls_client_auth_refuses_a_certificate_outside_its_validity() {
        let c = tls_cert(|p| p.not_after = rcgen::date_time_ymd(2021, 1, 1));
        let e = tls_auth("tls_client_auth_san_dns", "client.example", &c, true).unwrap_err();
        assert_eq!(e.reason, Reason::CertificateExpired);
    }
}
