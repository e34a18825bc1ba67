//! The resource flow (RFC 8705 §3, RFC 6750): on a protected route, the
//! token (in `Authorization` only) must come with the certificate every
//! known binding names: certbound's store and a verified JWT `cnf` claim.

use super::{Attribute, Body, Host, Step};
use crate::binding::{keys_for_token, Binding, TokenKeys};
use crate::cert::Thumbprint;
use crate::client_auth::Clients;
use crate::counter::Counter;
use crate::error::{OAuthError, Reason};
use crate::resource::JwtClaims;
use crate::resource::{
    self, Allowed, BodyCheck, Credentials, CredentialsKind, Enforcement, ProtectedRoute, ResourceError, UnboundPolicy,
};
use log::Level;
use std::rc::Rc;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// A form body is read before deciding: it could carry a token.
    ReadingBody,
    /// The token's binding is being looked up; the request stays held.
    LookingUp,
    /// Decided: whatever follows passes.
    Done,
}

/// What the flow needs from the configuration and the request's certificate.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    pub max_body_bytes: usize,
    /// A store that cannot answer refuses the request (401) instead of counting the token unbound.
    pub fail_closed: bool,
    /// Where `jwt_authn` leaves verified payloads, when JWT claims are read.
    pub jwt_claims: Option<&'a JwtClaims>,
    /// The certificate this request presented, from its trusted source.
    pub certificate: Option<Thumbprint>,
    /// The registered clients (whose tokens may all be bound).
    pub clients: &'a Clients,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceFlow {
    state: State,
    route: Rc<ProtectedRoute>,
    credentials: CredentialsKind,
    token_key: Option<TokenKeys>,
    claim: Option<String>,
    /// On a route that allows unbound tokens, the payload segment of a JWT
    /// (never the whole token): its client, if that client only ever gets
    /// bound tokens, makes "no binding found" a refusal, not "unbound".
    jwt_payload: Option<String>,
    content_type: Option<String>,
    certificate: Option<Thumbprint>,
    max_body_bytes: usize,
    fail_closed: bool,
}

/// A refusal, carried out or, on a report-only route, reported.
fn refuse(route: &ProtectedRoute, e: ResourceError) -> Step {
    match route.enforcement {
        Enforcement::Enforce => Step::RefuseResource(e),
        Enforcement::Report => Step::Report(e),
    }
}

/// The payload segment of a token in JWS compact form (three segments).
fn jwt_payload_segment(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then(|| payload.to_string())
}

/// `cnf.x5t#S256` of the JWT payload `jwt_authn` verified and left in
/// dynamic metadata: a client cannot write metadata, so it is believed.
fn verified_claim(host: &mut impl Host, jwt: &JwtClaims) -> Option<String> {
    let attribute = Attribute::JwtCnfX5t { namespace: &jwt.metadata_namespace, payload_key: &jwt.payload_key };
    let raw = host.attribute(attribute).ok().flatten()?;
    String::from_utf8(raw).ok().filter(|s| !s.is_empty())
}

impl ResourceFlow {
    /// The request headers of a protected route: a step, and the flow that
    /// goes on with the stream when it is not decided yet.
    pub fn start(
        host: &mut impl Host,
        route: Rc<ProtectedRoute>,
        full_path: &str,
        end_of_stream: bool,
        settings: Settings<'_>,
    ) -> (Step, Option<ResourceFlow>) {
        if let Some(h) = &route.thumbprint_header {
            // Only certbound says which certificate a request proved.
            let _ = host.set_request_header(h, None);
        }
        let has_query = full_path.contains('?');
        let content_type = if has_query || !end_of_stream { host.request_header("content-type") } else { None };
        if let Err(e) = resource::check_query(full_path, content_type.as_deref()) {
            return (refuse(&route, e), None);
        }
        let authorization = host.request_header("authorization");
        let credentials = match resource::credentials(authorization.as_deref()) {
            Ok(c) => c,
            Err(e) => return (refuse(&route, e), None),
        };
        let token = match credentials {
            Credentials::Bearer(t) => Some(t),
            _ => None,
        };
        let token_key = match token.map(keys_for_token).transpose() {
            Ok(k) => k,
            Err(e) => {
                return (
                    refuse(
                        &route,
                        ResourceError {
                            status: 401,
                            error: Some("invalid_token"),
                            description: e.to_string(),
                            reason: Reason::AmbiguousToken,
                        },
                    ),
                    None,
                )
            }
        };
        let claim = match (settings.jwt_claims, token) {
            (Some(jwt), Some(_)) => verified_claim(host, jwt),
            _ => None,
        };
        let jwt_payload = match (route.unbound_tokens, token) {
            (UnboundPolicy::Allow, Some(t)) => jwt_payload_segment(t),
            _ => None,
        };
        // A form body may carry its own access_token (RFC 6750 §2.2): look before it goes on.
        let read_body = !end_of_stream
            && match resource::body_check(content_type.as_deref()) {
                BodyCheck::None => false,
                BodyCheck::Multipart => return (refuse(&route, resource::multipart_refused()), None),
                BodyCheck::Form if crate::form::is_encoded(host.request_header("content-encoding").as_deref()) => {
                    return (refuse(&route, resource::encoded_form_refused()), None)
                }
                BodyCheck::Form => true,
            };
        let mut flow = ResourceFlow {
            state: State::ReadingBody,
            route,
            credentials: credentials.kind(),
            token_key,
            claim,
            jwt_payload,
            content_type,
            certificate: settings.certificate,
            max_body_bytes: settings.max_body_bytes,
            fail_closed: settings.fail_closed,
        };
        if read_body {
            return (Step::Pause, Some(flow));
        }
        let step = flow.look_up(host, settings.clients);
        (step, Some(flow))
    }

    pub fn awaiting_request_end(&self) -> bool {
        self.state == State::ReadingBody
    }

    pub fn request_body(
        &mut self,
        host: &mut impl Host,
        clients: &Clients,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        match self.state {
            State::ReadingBody => {}
            State::LookingUp => return Step::Pause,
            State::Done => return Step::Continue,
        }
        if body_size > self.max_body_bytes {
            self.state = State::Done;
            let e = ResourceError {
                status: 413,
                error: Some("invalid_request"),
                description: format!("form body exceeds {} bytes", self.max_body_bytes),
                reason: Reason::BodyTooLarge,
            };
            return refuse(&self.route, e);
        }
        if !end_of_stream {
            return Step::Pause;
        }
        let body = match host.body(Body::Request, body_size) {
            Ok(b) => b,
            Err(s) => {
                self.state = State::Done;
                return Step::Reply(OAuthError::internal(format!(
                    "cannot read the request body (host status {})",
                    s.0
                )));
            }
        };
        if let Err(e) = resource::check_form_body(self.content_type.as_deref(), &body) {
            self.state = State::Done;
            return refuse(&self.route, e);
        }
        self.look_up(host, clients)
    }

    /// Trailers end the request: the body is judged here.
    pub fn request_trailers(&mut self, host: &mut impl Host, clients: &Clients, body_size: usize) -> Step {
        self.request_body(host, clients, body_size, true)
    }

    fn look_up(&mut self, host: &mut impl Host, clients: &Clients) -> Step {
        match self.token_key.clone() {
            Some(key) => {
                self.state = State::LookingUp;
                Step::Lookup(key)
            }
            None => self.decide(host, clients, None),
        }
    }

    /// The store's answer (`Err`: it could not answer, and why).
    pub fn looked_up(
        &mut self,
        host: &mut impl Host,
        clients: &Clients,
        result: Result<Option<Binding>, String>,
    ) -> Step {
        if self.state != State::LookingUp {
            return Step::Continue;
        }
        match result {
            Ok(stored) => self.decide(host, clients, stored),
            Err(why) => {
                host.log(Level::Warn, &format!("certbound: binding store: {why}"));
                host.count(Counter::StoreErrors);
                if self.fail_closed {
                    self.state = State::Done;
                    return refuse(
                        &self.route,
                        ResourceError {
                            status: 401,
                            error: Some("invalid_token"),
                            description: "the token's binding cannot be checked now".into(),
                            reason: Reason::StoreUnavailable,
                        },
                    );
                }
                self.decide(host, clients, None)
            }
        }
    }

    fn decide(&mut self, host: &mut impl Host, clients: &Clients, stored: Option<Binding>) -> Step {
        self.state = State::Done;
        if stored.is_none() && self.claim.is_none() {
            // "No binding found" is not "unbound" for a client whose tokens are all bound.
            let client = self.jwt_payload.as_deref().and_then(crate::binding::jwt_client_id);
            if let Some(id) = client.filter(|id| clients.get(id).is_some_and(|c| c.tokens_always_bound())) {
                return refuse(
                    &self.route,
                    ResourceError {
                        status: 401,
                        error: Some("invalid_token"),
                        description: format!(
                            "no binding is found for this token of client {:?}, whose tokens are all certificate-bound",
                            crate::client_auth::printable(&id)
                        ),
                        reason: Reason::BindingNotFound,
                    },
                );
            }
        }
        let request = resource::ProtectedRequest {
            credentials: self.credentials,
            stored: stored.map(|b| b.thumbprint),
            verified_claim: self.claim.as_deref(),
            certificate: self.certificate,
        };
        match resource::decide(&self.route, &request) {
            Ok(Allowed::Bound(t)) => {
                if let Some(h) = &self.route.thumbprint_header {
                    if let Err(s) = host.set_request_header(h, Some(&t.x5t_s256())) {
                        return Step::Reply(OAuthError::internal(format!("cannot set {h} (host status {})", s.0)));
                    }
                }
                host.log(Level::Debug, &format!("certbound: bound token used with its certificate x5t#S256={t}"));
                host.count(Counter::ResourceAllowed);
                Step::Continue
            }
            Ok(Allowed::Unbound) | Ok(Allowed::NoToken) | Ok(Allowed::OtherScheme) => {
                host.log(Level::Debug, "certbound: unbound, no or another kind of token, allowed by route policy");
                host.count(Counter::ResourceAllowedUnbound);
                Step::Continue
            }
            Err(e) => refuse(&self.route, e),
        }
    }
}

impl super::Held for ResourceFlow {
    fn awaiting_request_end(&self) -> bool {
        ResourceFlow::awaiting_request_end(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::TokenKind;
    use crate::flow::mock::MockHost;
    use crate::resource::{MissingTokenPolicy, OtherSchemes, UnboundPolicy};

    fn t(s: &[u8]) -> Thumbprint {
        Thumbprint::of_der(s)
    }

    fn route(unbound: UnboundPolicy, missing: MissingTokenPolicy) -> Rc<ProtectedRoute> {
        Rc::new(ProtectedRoute {
            path_prefix: "/api/".into(),
            unbound_tokens: unbound,
            missing_token: missing,
            other_schemes: OtherSchemes::Reject,
            thumbprint_header: Some("x-certbound-x5t".into()),
            enforcement: Default::default(),
        })
    }

    fn strict() -> Rc<ProtectedRoute> {
        route(UnboundPolicy::RequireBinding, MissingTokenPolicy::Reject)
    }

    fn no_clients() -> &'static Clients {
        Box::leak(Box::new(Clients::new()))
    }

    fn settings(certificate: Option<Thumbprint>) -> Settings<'static> {
        Settings { max_body_bytes: 1024, fail_closed: true, jwt_claims: None, certificate, clients: no_clients() }
    }

    fn host(authorization: Option<&str>) -> MockHost {
        let mut h = MockHost::default();
        if let Some(a) = authorization {
            h.request_headers.insert("authorization".into(), a.into());
        }
        h.request_headers.insert("x-certbound-x5t".into(), "forged".into());
        h
    }

    fn bound_to(s: &[u8]) -> Binding {
        Binding { thumbprint: t(s), kind: TokenKind::Access, expires_at: i64::MAX }
    }

    fn reason(step: Step) -> Reason {
        match step {
            Step::RefuseResource(e) => e.reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_bound_token_with_its_certificate_goes_on_with_the_verified_thumbprint() {
        let mut h = host(Some("Bearer tok"));
        let (step, flow) = ResourceFlow::start(&mut h, strict(), "/api/x", true, settings(Some(t(b"a"))));
        assert_eq!(step, Step::Lookup(keys_for_token("tok").unwrap()));
        assert!(!h.request_headers.contains_key("x-certbound-x5t"), "the forged header is removed first");
        let mut f = flow.unwrap();
        assert_eq!(f.looked_up(&mut h, &Clients::new(), Ok(Some(bound_to(b"a")))), Step::Continue);
        assert_eq!(h.request_headers["x-certbound-x5t"], t(b"a").x5t_s256());
        assert_eq!(h.counted(Counter::ResourceAllowed), 1);
    }

    #[test]
    fn a_bound_token_with_another_certificate_or_none_is_refused() {
        for cert in [Some(t(b"b")), None] {
            let mut h = host(Some("Bearer tok"));
            let (_, flow) = ResourceFlow::start(&mut h, strict(), "/api/x", true, settings(cert));
            let step = flow.unwrap().looked_up(&mut h, &Clients::new(), Ok(Some(bound_to(b"a"))));
            assert!(matches!(reason(step), Reason::TokenCertificateMismatch | Reason::TokenWithoutCertificate));
            assert!(!h.request_headers.contains_key("x-certbound-x5t"));
        }
    }

    #[test]
    fn a_form_body_is_read_before_deciding_in_chunks_or_up_to_trailers() {
        let mut h = host(Some("Bearer tok"));
        h.request_headers.insert("content-type".into(), "application/x-www-form-urlencoded".into());
        h.request_body = b"item=1&access_token=tok".to_vec();
        let (step, flow) = ResourceFlow::start(&mut h, strict(), "/api/x", false, settings(Some(t(b"a"))));
        assert_eq!(step, Step::Pause);
        let mut f = flow.unwrap();
        assert!(f.awaiting_request_end());
        assert_eq!(f.request_body(&mut h, &Clients::new(), 5, false), Step::Pause);
        assert_eq!(reason(f.request_trailers(&mut h, &Clients::new(), 23)), Reason::TokenInUri);

        let mut h = host(Some("Bearer tok"));
        h.request_headers.insert("content-type".into(), "application/x-www-form-urlencoded".into());
        h.request_body = b"item=1".to_vec();
        let (_, flow) = ResourceFlow::start(&mut h, strict(), "/api/x", false, settings(Some(t(b"a"))));
        let mut f = flow.unwrap();
        assert_eq!(f.request_body(&mut h, &Clients::new(), 6, true), Step::Lookup(keys_for_token("tok").unwrap()));
        // A body callback while the lookup is out keeps the stream held.
        assert_eq!(f.request_body(&mut h, &Clients::new(), 6, true), Step::Pause);
        assert_eq!(f.looked_up(&mut h, &Clients::new(), Ok(Some(bound_to(b"a")))), Step::Continue);
    }

    #[test]
    fn multipart_encoded_and_hiding_bodies_fail_closed() {
        for (ct, encoding, body) in [
            ("multipart/form-data; boundary=x", None, &b""[..]),
            ("application/x-www-form-urlencoded", Some("gzip"), b""),
            ("application/x-www-form-urlencoded; charset=utf-16", None, b"a\0=\0"),
            ("application/x-www-form-urlencoded", None, b"access%255ftoken=tok"),
        ] {
            let mut h = host(Some("Bearer tok"));
            h.request_headers.insert("content-type".into(), ct.into());
            if let Some(e) = encoding {
                h.request_headers.insert("content-encoding".into(), e.into());
            }
            h.request_body = body.to_vec();
            let (step, flow) = ResourceFlow::start(&mut h, strict(), "/api/x", false, settings(Some(t(b"a"))));
            let step = match flow {
                Some(mut f) if step == Step::Pause => f.request_body(&mut h, &Clients::new(), body.len(), true),
                _ => step,
            };
            assert!(matches!(step, Step::RefuseResource(ResourceError { status: 400, .. })), "{ct} {encoding:?}");
        }
    }

    #[test]
    fn a_store_that_cannot_answer_refuses_when_fail_closed() {
        let mut h = host(Some("Bearer tok"));
        let (_, flow) = ResourceFlow::start(&mut h, strict(), "/api/x", true, settings(Some(t(b"a"))));
        assert_eq!(
            reason(flow.unwrap().looked_up(&mut h, &Clients::new(), Err("etcd: timeout".into()))),
            Reason::StoreUnavailable
        );
        assert_eq!(h.counted(Counter::StoreErrors), 1);
        // Fail open: the token counts as unbound, and the route's policy decides.
        let allow = route(UnboundPolicy::Allow, MissingTokenPolicy::Reject);
        let mut h = host(Some("Bearer tok"));
        let open = Settings { fail_closed: false, ..settings(Some(t(b"a"))) };
        let (_, flow) = ResourceFlow::start(&mut h, allow, "/api/x", true, open);
        assert_eq!(flow.unwrap().looked_up(&mut h, &Clients::new(), Err("etcd: timeout".into())), Step::Continue);
        assert_eq!(h.counted(Counter::ResourceAllowedUnbound), 1);
    }

    #[test]
    fn no_token_and_malformed_credentials_are_decided_at_once() {
        let mut h = host(None);
        let (step, _) = ResourceFlow::start(&mut h, strict(), "/api/x", true, settings(None));
        assert_eq!(reason(step), Reason::MissingToken);
        let mut h = host(Some("Bearer a b"));
        let (step, flow) = ResourceFlow::start(&mut h, strict(), "/api/x", true, settings(None));
        assert_eq!((reason(step), flow), (Reason::BadRequest, None));
        let mut h = host(None);
        let (step, _) = ResourceFlow::start(&mut h, strict(), "/api/x?access%5ftoken=x", true, settings(None));
        assert_eq!(reason(step), Reason::TokenInUri);
    }

    #[test]
    fn a_verified_jwt_claim_is_read_from_the_metadata_jwt_authn_wrote() {
        let jwt =
            JwtClaims { metadata_namespace: "envoy.filters.http.jwt_authn".into(), payload_key: "jwt_payload".into() };
        let mut h = host(Some("Bearer eyJ.x.y"));
        h.attributes.insert(
            "metadata.filter_metadata.envoy.filters.http.jwt_authn.jwt_payload.cnf.x5t#S256".into(),
            t(b"a").x5t_s256().into_bytes(),
        );
        let s = Settings { jwt_claims: Some(&jwt), ..settings(Some(t(b"b"))) };
        let (_, flow) = ResourceFlow::start(&mut h, strict(), "/api/x", true, s);
        // No binding in the store, but the verified claim names another certificate.
        assert_eq!(
            reason(flow.unwrap().looked_up(&mut h, &Clients::new(), Ok(None))),
            Reason::TokenCertificateMismatch
        );
    }

    fn registered() -> &'static Clients {
        let c = serde_json::json!({"clients":[
            {"client_id":"c","token_endpoint_auth_method":"self_signed_tls_client_auth","thumbprints":[t(b"a").x5t_s256()]},
            {"client_id":"spa","token_endpoint_auth_method":"none"}]});
        Box::leak(Box::new(crate::config::parse(c.to_string().as_bytes()).unwrap().clients))
    }

    fn jwt_of(client: &str) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b64(r#"{"alg":"ES256"}"#), b64(&format!(r#"{{"client_id":"{client}"}}"#)))
    }

    #[test]
    fn a_jwt_of_an_always_bound_client_with_no_binding_is_refused_even_where_unbound_tokens_pass() {
        let allow = route(UnboundPolicy::Allow, MissingTokenPolicy::Reject);
        let mut h = host(Some(&format!("Bearer {}", jwt_of("c"))));
        let s = Settings { clients: registered(), ..settings(Some(t(b"b"))) };
        let (_, flow) = ResourceFlow::start(&mut h, allow.clone(), "/api/x", true, s);
        let step = flow.unwrap().looked_up(&mut h, registered(), Ok(None));
        let Step::RefuseResource(e) = step else { panic!("not refused: {step:?}") };
        assert_eq!((e.status, e.error, e.reason), (401, Some("invalid_token"), Reason::BindingNotFound));
        // A public client's JWT may be unbound.
        let mut h = host(Some(&format!("Bearer {}", jwt_of("spa"))));
        let s = Settings { clients: registered(), ..settings(Some(t(b"b"))) };
        let (_, flow) = ResourceFlow::start(&mut h, allow, "/api/x", true, s);
        assert_eq!(flow.unwrap().looked_up(&mut h, registered(), Ok(None)), Step::Continue);
        assert_eq!(h.counted(Counter::ResourceAllowedUnbound), 1);
    }

    #[test]
    fn a_token_padded_inside_a_segment_is_refused_never_looked_up() {
        // b64token allows '=' only at the end: the header is malformed before any key is made.
        let mut h = host(Some("Bearer eyJhbGciOiJub25lIn0.e30.QU=JD"));
        let (step, flow) = ResourceFlow::start(&mut h, strict(), "/api/x", true, settings(Some(t(b"a"))));
        assert_eq!((reason(step), flow), (Reason::BadRequest, None));
    }

    #[test]
    fn a_thumbprint_header_the_host_will_not_set_becomes_an_error_reply() {
        let mut h = host(Some("Bearer tok"));
        let (_, flow) = ResourceFlow::start(&mut h, strict(), "/api/x", true, settings(Some(t(b"a"))));
        h.failing.insert("set_request_header");
        let step = flow.unwrap().looked_up(&mut h, &Clients::new(), Ok(Some(bound_to(b"a"))));
        assert!(matches!(step, Step::Reply(OAuthError { status: 500, .. })), "{step:?}");
    }
}
