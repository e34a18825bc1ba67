//! The token flow (RFC 8705 §2, §3, §4): the request is held until its body
//! names the client, which authenticates by its certificate; a refresh token
//! certbound bound is checked against the certificate before the AS sees it;
//! the AS's answer is held until every token in it is bound, and released
//! only then.

use super::{body_endpoint_check, BindError, Body, Host, Step};
use crate::binding::{bindings_for_response, check_refresh, Binding, BindingPolicy};
use crate::cert_source::Presented;
use crate::client_auth::{authenticate, printable, Authenticated, Clients, TokenRequest};
use crate::counter::Counter;
use crate::error::{OAuthError, Reason};
use log::Level;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// The request is held until its body has ended.
    Reading,
    /// The refresh token's binding is being looked up; the request stays held.
    CheckingRefresh(Authenticated),
    /// The client authenticated; the request went on to the AS.
    Forwarded(Authenticated),
    /// The AS's answer is held until its end, to be bound.
    Held(Authenticated),
    /// Its bindings are being stored; the answer stays held.
    Binding { client_id: String, n: usize, thumbprint: crate::cert::Thumbprint },
    /// Decided: whatever follows passes.
    Done,
}

/// What the flow needs from the configuration and the request's certificate.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_body_bytes: usize,
    pub binding: BindingPolicy,
    /// The certificate this request presented, from its trusted source.
    pub certificate: Option<Presented>,
}

#[derive(Debug, Clone)]
pub struct TokenFlow {
    state: State,
    content_type: Option<String>,
    authorization: Option<String>,
    settings: Settings,
}

impl TokenFlow {
    /// A request to the token endpoint: `Ok(None)` lets a CORS preflight go
    /// on, `Ok(Some)` holds the request until its body ends, `Err` refuses it.
    pub fn start(
        host: &mut impl Host,
        end_of_stream: bool,
        settings: Settings,
    ) -> Result<Option<TokenFlow>, OAuthError> {
        match host.request_header(":method").as_deref() {
            Some("POST") => {}
            // CORS preflight carries no credentials and gets no token.
            Some("OPTIONS") => return Ok(None),
            _ => return Err(OAuthError::method_not_allowed("the token endpoint accepts POST only")),
        }
        if end_of_stream {
            return Err(OAuthError::invalid_request(Reason::BadRequest, "token request has no body"));
        }
        body_endpoint_check(host)?;
        let declared = host.request_header("content-length").and_then(|l| l.trim().parse::<usize>().ok());
        if declared.is_some_and(|len| len > settings.max_body_bytes) {
            return Err(OAuthError::too_large(format!("token request body exceeds {} bytes", settings.max_body_bytes)));
        }
        // The response must be readable to bind its tokens.
        let _ = host.set_request_header("accept-encoding", None);
        Ok(Some(TokenFlow {
            state: State::Reading,
            content_type: host.request_header("content-type"),
            authorization: host.request_header("authorization"),
            settings,
        }))
    }

    pub fn awaiting_request_end(&self) -> bool {
        self.state == State::Reading
    }

    pub fn awaiting_response_end(&self) -> bool {
        matches!(self.state, State::Held(_))
    }

    fn refuse(&mut self, e: OAuthError) -> Step {
        self.state = State::Done;
        Step::Reply(e)
    }

    pub fn request_body(
        &mut self,
        host: &mut impl Host,
        clients: &Clients,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        match self.state {
            State::Reading => {}
            State::CheckingRefresh(_) => return Step::Pause,
            _ => return Step::Continue,
        }
        if body_size > self.settings.max_body_bytes {
            let max = self.settings.max_body_bytes;
            return self.refuse(OAuthError::too_large(format!("token request body exceeds {max} bytes")));
        }
        if !end_of_stream {
            return Step::Pause;
        }
        let body = match host.body(Body::Request, body_size) {
            Ok(b) => b,
            Err(s) => {
                return self.refuse(OAuthError::internal(format!("cannot read the request body (host status {})", s.0)))
            }
        };
        let Ok(now) = host.now() else { return self.refuse(OAuthError::internal("the proxy clock is unavailable")) };
        let req = TokenRequest {
            content_type: self.content_type.as_deref(),
            authorization: self.authorization.as_deref(),
            body: &body,
            certificate: self.settings.certificate.as_ref(),
            now,
        };
        let auth = match authenticate(clients, &req) {
            Ok(a) => a,
            Err(e) => return self.refuse(e),
        };
        match auth.refresh_key.clone() {
            // The refresh token's binding is checked before the AS sees the request.
            Some(key) => {
                self.state = State::CheckingRefresh(auth);
                Step::Lookup(key)
            }
            None => self.forward(host, auth),
        }
    }

    /// Trailers end the request: the body is judged here.
    pub fn request_trailers(&mut self, host: &mut impl Host, clients: &Clients, body_size: usize) -> Step {
        self.request_body(host, clients, body_size, true)
    }

    /// The store's answer about the refresh token (`Err`: it could not answer).
    pub fn looked_up(&mut self, host: &mut impl Host, result: Result<Option<Binding>, String>) -> Step {
        let State::CheckingRefresh(auth) = &self.state else { return Step::Continue };
        let auth = auth.clone();
        let bound = match result {
            Ok(b) => b,
            Err(why) => {
                host.log(Level::Warn, &format!("certbound: binding store: {why}"));
                host.count(Counter::StoreErrors);
                // A refresh is never let through unchecked.
                let mut e = OAuthError::store_unavailable(format!("cannot look up the refresh token: {why}"));
                // A lookup that failed, counted as introspection and protected routes count theirs.
                e.reason = Reason::StoreUnavailable;
                return self.refuse(e);
            }
        };
        if let Err(e) = check_refresh(bound.as_ref(), auth.thumbprint.as_ref(), auth.refresh_must_be_bound) {
            return self.refuse(e);
        }
        self.forward(host, auth)
    }

    /// The client is authenticated: present the upstream credentials and let the request go on.
    fn forward(&mut self, host: &mut impl Host, auth: Authenticated) -> Step {
        if let Err(s) = host.set_request_header("authorization", auth.upstream_authorization.as_deref()) {
            return self.refuse(OAuthError::internal(format!("cannot set upstream credentials (host status {})", s.0)));
        }
        let client_id = printable(&auth.client_id);
        match auth.thumbprint {
            Some(t) => host.log(
                Level::Info,
                &format!("certbound: client {client_id:?} with certificate x5t#S256={t} may request tokens"),
            ),
            None => host.log(
                Level::Info,
                &format!("certbound: public client {client_id:?} without certificate: its tokens will be unbound"),
            ),
        }
        host.client(&auth.client_id);
        host.count(Counter::ClientAuthenticated);
        self.state = State::Forwarded(auth);
        Step::Continue
    }

    pub fn response_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Step {
        let State::Forwarded(auth) = &self.state else { return Step::Continue };
        let auth = auth.clone();
        if !host.response_header(":status").is_some_and(|s| s.starts_with('2')) {
            // An error response carries no token to bind.
            self.state = State::Done;
            return Step::Continue;
        }
        if auth.thumbprint.is_none() {
            // A public client that presented no certificate and may have unbound tokens.
            host.count(Counter::UnboundTokenResponses);
            self.state = State::Done;
            return Step::Continue;
        }
        if end_of_stream {
            return self.refuse(OAuthError::unbindable("the authorization server answered without a body"));
        }
        if host.response_header("content-encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
            return self.refuse(OAuthError::unbindable("the token response is encoded and cannot be bound"));
        }
        self.state = State::Held(auth);
        Step::Pause
    }

    pub fn response_body(&mut self, host: &mut impl Host, body_size: usize, end_of_stream: bool) -> Step {
        let State::Held(auth) = &self.state else {
            return if matches!(self.state, State::Binding { .. }) { Step::Pause } else { Step::Continue };
        };
        let auth = auth.clone();
        if body_size > self.settings.max_body_bytes {
            return self.refuse(OAuthError::unbindable("the token response is too large to bind"));
        }
        if !end_of_stream {
            return Step::Pause;
        }
        let Some(thumbprint) = auth.thumbprint else {
            self.state = State::Done;
            return Step::Continue;
        };
        let body = match host.body(Body::Response, body_size) {
            Ok(b) => b,
            Err(s) => {
                return self
                    .refuse(OAuthError::unbindable(format!("cannot read the token response (host status {})", s.0)))
            }
        };
        let Ok(now) = host.now() else { return self.refuse(OAuthError::internal("the proxy clock is unavailable")) };
        match bindings_for_response(&body, thumbprint, &self.settings.binding, now) {
            Ok(entries) => {
                let client_id = printable(&auth.client_id);
                self.state = State::Binding { client_id, n: entries.len(), thumbprint };
                Step::Bind(entries)
            }
            Err(e) => self.refuse(OAuthError::unbindable(e.to_string())),
        }
    }

    /// Trailers end the response: a held answer is bound here.
    pub fn response_trailers(&mut self, host: &mut impl Host, body_size: usize) -> Step {
        self.response_body(host, body_size, true)
    }

    /// The store's outcome for the bindings: the answer is released only when they are stored.
    pub fn stored(&mut self, host: &mut impl Host, result: Result<(), BindError>) -> Step {
        let State::Binding { client_id, n, thumbprint } = &self.state else { return Step::Continue };
        let (client_id, n, thumbprint) = (client_id.clone(), *n, *thumbprint);
        match result {
            Ok(()) => {
                host.log(
                    Level::Info,
                    &format!("certbound bound {n} token(s) of client {client_id:?} to x5t#S256={thumbprint}"),
                );
                for _ in 0..n {
                    host.count(Counter::TokensBound);
                }
                self.state = State::Done;
                Step::Continue
            }
            Err(e) => {
                let why = match &e {
                    BindError::Full => "the binding store is full".to_string(),
                    BindError::Failed(why) => why.clone(),
                };
                host.log(Level::Warn, &format!("certbound: binding store: {why}"));
                host.count(Counter::StoreErrors);
                let mut err =
                    OAuthError::store_unavailable(format!("the token could not be bound ({why}); it was not released"));
                if e == BindError::Full {
                    err.reason = Reason::StoreFull;
                }
                self.refuse(err)
            }
        }
    }
}

impl super::Held for TokenFlow {
    fn awaiting_request_end(&self) -> bool {
        TokenFlow::awaiting_request_end(self)
    }
    fn awaiting_response_end(&self) -> bool {
        TokenFlow::awaiting_response_end(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::{key_for_token, keys_for_token, TokenKind};
    use crate::cert::Thumbprint;
    use crate::cert_source::Origin;
    use crate::config;
    use crate::flow::mock::MockHost;

    const NOW: i64 = 1_800_000_000;
    const ISSUED: &[u8] = br#"{"access_token":"at","refresh_token":"rt","token_type":"Bearer","expires_in":600}"#;

    fn thumb(s: &[u8]) -> Thumbprint {
        Thumbprint::of_der(s)
    }

    fn clients() -> Clients {
        let c = serde_json::json!({"clients":[
            {"client_id":"c1","token_endpoint_auth_method":"self_signed_tls_client_auth",
             "thumbprints":[thumb(b"c1").x5t_s256()],"upstream":{"client_secret":"s1"}},
            {"client_id":"spa","token_endpoint_auth_method":"none"}]});
        config::parse(c.to_string().as_bytes()).unwrap().clients
    }

    fn presented(s: &[u8]) -> Presented {
        Presented { thumbprint: thumb(s), cert: None, chain_verified: false, origin: Origin::Connection }
    }

    fn settings(cert: Option<&[u8]>) -> Settings {
        Settings { max_body_bytes: 1024, binding: BindingPolicy::default(), certificate: cert.map(presented) }
    }

    fn host(body: &[u8]) -> MockHost {
        let mut h = MockHost { now: NOW, ..MockHost::default() };
        h.request_headers.insert(":method".into(), "POST".into());
        h.request_headers.insert(":path".into(), "/oauth2/token".into());
        h.request_headers.insert("content-type".into(), "application/x-www-form-urlencoded".into());
        h.request_headers.insert("accept-encoding".into(), "gzip".into());
        h.request_body = body.to_vec();
        h.response_headers.insert(":status".into(), "200".into());
        h.response_body = ISSUED.to_vec();
        h
    }

    fn started(h: &mut MockHost, cert: Option<&[u8]>) -> TokenFlow {
        TokenFlow::start(h, false, settings(cert)).unwrap().unwrap()
    }

    fn refused(step: Step) -> OAuthError {
        match step {
            Step::Reply(e) => e,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_client_with_its_certificate_gets_its_tokens_once_they_are_bound() {
        let mut h = host(b"grant_type=client_credentials&client_id=c1");
        let mut f = started(&mut h, Some(b"c1"));
        assert!(!h.request_headers.contains_key("accept-encoding"));
        assert_eq!(f.request_body(&mut h, &clients(), 43, true), Step::Continue);
        assert!(h.request_headers["authorization"].starts_with("Basic "), "the upstream secret is presented");
        assert_eq!(f.response_headers(&mut h, false), Step::Pause);
        let Step::Bind(entries) = f.response_body(&mut h, ISSUED.len(), true) else { panic!("no bind") };
        assert_eq!(
            entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>(),
            vec![key_for_token("at").unwrap(), key_for_token("rt").unwrap()]
        );
        assert!(entries.iter().all(|e| e.binding.thumbprint == thumb(b"c1")));
        // Held until the store says they are stored.
        assert_eq!(f.response_body(&mut h, ISSUED.len(), true), Step::Pause);
        assert_eq!(f.stored(&mut h, Ok(())), Step::Continue);
        assert_eq!(h.counted(Counter::TokensBound), 2);
        assert_eq!(h.counted(Counter::ClientAuthenticated), 1);
    }

    #[test]
    fn a_token_whose_binding_cannot_be_stored_is_never_released() {
        for (e, reason) in [
            (BindError::Full, Reason::StoreFull),
            (BindError::Failed("etcd: timeout".into()), Reason::BindingStoreFailed),
        ] {
            let mut h = host(b"grant_type=client_credentials&client_id=c1");
            let mut f = started(&mut h, Some(b"c1"));
            f.request_body(&mut h, &clients(), 43, true);
            f.response_headers(&mut h, false);
            f.response_body(&mut h, ISSUED.len(), true);
            let err = refused(f.stored(&mut h, Err(e)));
            assert_eq!((err.status, err.reason), (503, reason));
        }
    }

    #[test]
    fn a_body_in_chunks_or_ended_by_trailers_is_judged_at_its_end() {
        let body = b"grant_type=client_credentials&client_id=c1";
        let mut h = host(body);
        let mut f = started(&mut h, Some(b"c1"));
        assert_eq!(f.request_body(&mut h, &clients(), 10, false), Step::Pause);
        assert!(f.awaiting_request_end());
        assert_eq!(f.request_trailers(&mut h, &clients(), body.len()), Step::Continue);
        f.response_headers(&mut h, false);
        assert_eq!(f.response_body(&mut h, 5, false), Step::Pause);
        assert!(f.awaiting_response_end());
        assert!(matches!(f.response_trailers(&mut h, ISSUED.len()), Step::Bind(_)));
    }

    #[test]
    fn a_bound_refresh_token_is_checked_before_the_as_sees_it() {
        let body = b"grant_type=refresh_token&refresh_token=rt&client_id=spa";
        let bound = Binding { thumbprint: thumb(b"owner"), kind: TokenKind::Refresh, expires_at: NOW + 60 };
        for (cert, reason) in
            [(Some(&b"stranger"[..]), Reason::RefreshCertificateMismatch), (None, Reason::RefreshWithoutCertificate)]
        {
            let mut h = host(body);
            let mut f = started(&mut h, cert);
            assert_eq!(
                f.request_body(&mut h, &clients(), body.len(), true),
                Step::Lookup(keys_for_token("rt").unwrap())
            );
            assert_eq!(f.request_body(&mut h, &clients(), body.len(), true), Step::Pause);
            let e = refused(f.looked_up(&mut h, Ok(Some(bound))));
            assert_eq!((e.error, e.reason), ("invalid_grant", reason));
        }
        let mut h = host(body);
        let mut f = started(&mut h, Some(b"owner"));
        f.request_body(&mut h, &clients(), body.len(), true);
        assert_eq!(f.looked_up(&mut h, Ok(Some(bound))), Step::Continue);
        // A store that cannot answer never lets a refresh through unchecked.
        let mut h = host(body);
        let mut f = started(&mut h, Some(b"owner"));
        f.request_body(&mut h, &clients(), body.len(), true);
        assert_eq!(refused(f.looked_up(&mut h, Err("etcd: timeout".into()))).status, 503);
    }

    #[test]
    fn unbindable_answers_are_replaced_and_error_answers_pass() {
        for (status, encoding, eos, body, code) in [
            ("200", None, true, &b""[..], Some(502)),
            ("200", Some("gzip"), false, ISSUED, Some(502)),
            ("200", None, false, b"not json", Some(502)),
            ("200", None, false, br#"{"access_token":"at","expires_in":99999999999}"#, Some(502)),
            ("400", None, false, br#"{"error":"invalid_grant"}"#, None),
        ] {
            let mut h = host(b"grant_type=client_credentials&client_id=c1");
            h.response_headers.insert(":status".into(), status.into());
            if let Some(e) = encoding {
                h.response_headers.insert("content-encoding".into(), e.into());
            }
            h.response_body = body.to_vec();
            let mut f = started(&mut h, Some(b"c1"));
            f.request_body(&mut h, &clients(), 43, true);
            let step = match f.response_headers(&mut h, eos) {
                Step::Pause => f.response_body(&mut h, body.len(), true),
                other => other,
            };
            match code {
                Some(c) => {
                    assert_eq!(refused(step).status, c, "{status} {encoding:?} {:?}", String::from_utf8_lossy(body))
                }
                None => assert_eq!(step, Step::Continue),
            }
        }
    }

    #[test]
    fn a_body_of_exactly_max_body_bytes_is_read_and_one_byte_more_is_refused() {
        // max_body_bytes is 1024 in these settings; the body is padded with a parameter certbound does not read.
        let body = |len: usize| {
            let head = "grant_type=client_credentials&client_id=c1&pad=";
            format!("{head}{}", "x".repeat(len - head.len())).into_bytes()
        };
        // By Content-Length, at the start.
        for (len, refused) in [(1024, false), (1025, true)] {
            let mut h = host(&body(len));
            h.request_headers.insert("content-length".into(), len.to_string());
            assert_eq!(TokenFlow::start(&mut h, false, settings(Some(b"c1"))).is_err(), refused, "{len}");
        }
        // By what arrived, without a Content-Length (chunked, HTTP/2), in chunks or at the end.
        for (len, eos) in [(1024, true), (1024, false)] {
            let mut h = host(&body(len));
            let mut f = started(&mut h, Some(b"c1"));
            let step = f.request_body(&mut h, &clients(), len, eos);
            assert!(!matches!(step, Step::Reply(_)), "{len} {eos}: {step:?}");
        }
        let mut h = host(&body(1025));
        let mut f = started(&mut h, Some(b"c1"));
        let e = refused(f.request_body(&mut h, &clients(), 1025, false));
        assert_eq!((e.status, e.reason), (413, Reason::BodyTooLarge));
    }

    #[test]
    fn a_token_response_of_exactly_max_body_bytes_is_bound_and_one_byte_more_is_not() {
        for (len, bound) in [(1024, true), (1025, false)] {
            let mut h = host(b"grant_type=client_credentials&client_id=c1");
            let pad = len - br#"{"access_token":"at","expires_in":600,"pad":""}"#.len();
            h.response_body =
                format!(r#"{{"access_token":"at","expires_in":600,"pad":"{}"}}"#, "x".repeat(pad)).into_bytes();
            assert_eq!(h.response_body.len(), len);
            let mut f = started(&mut h, Some(b"c1"));
            f.request_body(&mut h, &clients(), 43, true);
            f.response_headers(&mut h, false);
            match f.response_body(&mut h, len, true) {
                Step::Bind(_) => assert!(bound, "{len}"),
                Step::Reply(e) => assert!(!bound && e.status == 502, "{len}: {e:?}"),
                other => panic!("{len}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_flow_holds_the_stream_only_until_it_decides() {
        use crate::flow::Held;
        let mut h = host(b"grant_type=client_credentials&client_id=c1");
        let mut f = started(&mut h, Some(b"c1"));
        assert!(Held::awaiting_request_end(&f) && !Held::awaiting_response_end(&f));
        f.request_body(&mut h, &clients(), 43, true);
        assert!(!Held::awaiting_request_end(&f) && !Held::awaiting_response_end(&f), "forwarded");
        f.response_headers(&mut h, false);
        assert!(!Held::awaiting_request_end(&f) && Held::awaiting_response_end(&f), "held");
        f.response_body(&mut h, ISSUED.len(), true);
        assert!(!f.awaiting_request_end() && !f.awaiting_response_end(), "binding");
        f.stored(&mut h, Ok(()));
        assert!(!f.awaiting_request_end() && !f.awaiting_response_end(), "done");
    }

    #[test]
    fn a_public_client_without_a_certificate_gets_unbound_tokens_counted() {
        let mut h = host(b"grant_type=client_credentials&client_id=spa");
        let mut f = started(&mut h, None);
        assert_eq!(f.request_body(&mut h, &clients(), 44, true), Step::Continue);
        assert!(!h.request_headers.contains_key("authorization"));
        assert_eq!(f.response_headers(&mut h, false), Step::Continue);
        assert_eq!(h.counted(Counter::UnboundTokenResponses), 1);
    }

    #[test]
    fn requests_certbound_cannot_judge_are_refused_and_preflights_pass() {
        let mut h = host(b"");
        h.request_headers.insert(":method".into(), "GET".into());
        assert_eq!(TokenFlow::start(&mut h, true, settings(None)).unwrap_err().status, 405);
        let mut h = host(b"");
        h.request_headers.insert(":method".into(), "OPTIONS".into());
        assert!(TokenFlow::start(&mut h, true, settings(None)).unwrap().is_none());
        let mut h = host(b"");
        assert_eq!(TokenFlow::start(&mut h, true, settings(None)).unwrap_err().status, 400);
        let mut h = host(b"x");
        h.request_headers.insert(":path".into(), "/oauth2/token?refresh_token=rt".into());
        assert_eq!(TokenFlow::start(&mut h, false, settings(None)).unwrap_err().status, 400);
        let mut h = host(b"x");
        h.request_headers.insert("content-length".into(), "5000".into());
        assert_eq!(TokenFlow::start(&mut h, false, settings(None)).unwrap_err().status, 413);
        let mut h = host(b"grant_type=client_credentials&client_id=c1");
        let mut f = started(&mut h, Some(b"stranger"));
        assert_eq!(refused(f.request_body(&mut h, &clients(), 43, true)).error, "invalid_client");
        let mut h = host(b"grant_type=client_credentials&client_id=c1");
        h.failing.insert("set_request_header");
        let mut f = TokenFlow {
            state: State::Reading,
            content_type: Some("application/x-www-form-urlencoded".into()),
            authorization: None,
            settings: settings(Some(b"c1")),
        };
        assert_eq!(refused(f.request_body(&mut h, &clients(), 43, true)).status, 500);
    }
}
