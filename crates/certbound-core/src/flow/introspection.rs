//! The introspection flow (RFC 7662, RFC 8705 §3.2): the request is held
//! until its body names the token, the token's binding is looked up before
//! the AS answers (so the response never waits on the store), and an active
//! JSON answer about a bound token gains `cnf`.

use super::{body_endpoint_check, replace_response_body, Body, Host, Step};
use crate::binding::{keys_for_token, Binding};
use crate::cert::Thumbprint;
use crate::client_auth::{printable, Clients};
use crate::counter::Counter;
use crate::error::{OAuthError, Reason};
use crate::introspection::{add_cnf_members, token_param, unbound_answer, Patch, UnboundAnswer, INACTIVE};
use log::Level;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// The request is held until its body has ended.
    Reading,
    /// The binding is being looked up; the request stays held.
    LookingUp,
    /// The request went on; this is what the store said about the token.
    Forwarded(Option<Binding>),
    /// The AS's answer about a bound token is held until its end.
    Held(Thumbprint),
    /// The AS's answer about a token with no binding is held until its end:
    /// active for a client whose tokens are all bound, it is a lost binding.
    HeldUnbound,
    /// Decided: whatever follows passes.
    Done,
}

/// What the flow needs from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub max_body_bytes: usize,
    /// Also write WSO2 IS's `cnf.x5t#SHA256`.
    pub wso2_member: bool,
    /// A store that cannot answer refuses the introspection (503) instead of
    /// letting it through unpatched.
    pub fail_closed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionFlow {
    state: State,
    settings: Settings,
    content_type: Option<String>,
}

impl IntrospectionFlow {
    /// A request to the introspection endpoint: `Ok(None)` lets it go on
    /// unjudged (a CORS preflight, a POST without a body: the AS answers the
    /// error), `Ok(Some)` holds it until its body ends, `Err` refuses it.
    pub fn start(
        host: &mut impl Host,
        end_of_stream: bool,
        settings: Settings,
    ) -> Result<Option<IntrospectionFlow>, OAuthError> {
        match host.request_header(":method").as_deref() {
            Some("POST") => {}
            Some("OPTIONS") => return Ok(None),
            _ => return Err(OAuthError::method_not_allowed("the introspection endpoint accepts POST only")),
        }
        body_endpoint_check(host)?;
        if end_of_stream {
            return Ok(None);
        }
        // The response must be readable to patch it.
        let _ = host.set_request_header("accept-encoding", None);
        Ok(Some(IntrospectionFlow {
            state: State::Reading,
            settings,
            content_type: host.request_header("content-type"),
        }))
    }

    pub fn awaiting_request_end(&self) -> bool {
        self.state == State::Reading
    }

    pub fn awaiting_response_end(&self) -> bool {
        matches!(self.state, State::Held(_) | State::HeldUnbound)
    }

    pub fn request_body(&mut self, host: &mut impl Host, body_size: usize, end_of_stream: bool) -> Step {
        match self.state {
            State::Reading => {}
            State::LookingUp => return Step::Pause,
            _ => return Step::Continue,
        }
        if body_size > self.settings.max_body_bytes {
            self.state = State::Done;
            return Step::Reply(OAuthError::too_large(format!(
                "introspection request body exceeds {} bytes",
                self.settings.max_body_bytes
            )));
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
        if !self.content_type.as_deref().is_some_and(crate::form::is_form_content_type) {
            self.state = State::Done;
            return Step::Reply(OAuthError::invalid_request(
                Reason::BadRequest,
                "introspection request must be application/x-www-form-urlencoded",
            ));
        }
        let token = match token_param(self.content_type.as_deref(), &body) {
            Err(e) => {
                self.state = State::Done;
                return Step::Reply(OAuthError::invalid_request(e.reason(), e.to_string()));
            }
            Ok(t) => t,
        };
        match token.as_deref().map(keys_for_token) {
            None => {
                self.state = State::Forwarded(None);
                Step::Continue
            }
            Some(Err(e)) => {
                self.state = State::Done;
                Step::Reply(OAuthError::invalid_request(Reason::AmbiguousToken, e.to_string()))
            }
            Some(Ok(keys)) => {
                self.state = State::LookingUp;
                Step::Lookup(keys)
            }
        }
    }

    /// Trailers end the request: the body is judged here.
    pub fn request_trailers(&mut self, host: &mut impl Host, body_size: usize) -> Step {
        self.request_body(host, body_size, true)
    }

    /// The store's answer (`Err`: it could not answer, and why).
    pub fn looked_up(&mut self, host: &mut impl Host, result: Result<Option<Binding>, String>) -> Step {
        if self.state != State::LookingUp {
            return Step::Continue;
        }
        let found = match result {
            Ok(b) => b,
            Err(why) => {
                host.log(Level::Warn, &format!("certbound: binding store: {why}"));
                host.count(Counter::StoreErrors);
                if self.settings.fail_closed {
                    self.state = State::Done;
                    return Step::Reply(OAuthError {
                        status: 503,
                        error: "temporarily_unavailable",
                        description: "the token's binding cannot be looked up now".into(),
                        reason: Reason::StoreUnavailable,
                    });
                }
                None
            }
        };
        self.state = State::Forwarded(found);
        Step::Continue
    }

    fn unpatched(&mut self, host: &mut impl Host, level: Level, why: &str) -> Step {
        host.log(level, &format!("certbound: introspection response left unpatched: {why}"));
        host.count(Counter::IntrospectionUnpatched);
        self.state = State::Done;
        Step::Continue
    }

    pub fn response_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Step {
        let State::Forwarded(found) = &self.state else { return Step::Continue };
        let found = found.map(|b| b.thumbprint);
        if host.response_header(":status").as_deref() != Some("200") {
            self.state = State::Done;
            return Step::Continue;
        }
        let Some(thumbprint) = found else {
            if end_of_stream
                || host.response_header("content-encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity"))
            {
                return self.unpatched(host, Level::Debug, "the token is not bound");
            }
            // Read before it goes on: a lost binding must not pass as "unbound".
            self.state = State::HeldUnbound;
            return Step::Pause;
        };
        if end_of_stream {
            return self.unpatched(host, Level::Warn, "no body");
        }
        if host.response_header("content-encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
            return self.unpatched(host, Level::Warn, "encoded");
        }
        self.state = State::Held(thumbprint);
        Step::Pause
    }

    pub fn response_body(
        &mut self,
        host: &mut impl Host,
        clients: &Clients,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        let thumbprint = match self.state {
            State::Held(t) => Some(t),
            State::HeldUnbound => None,
            _ => return Step::Continue,
        };
        if body_size > self.settings.max_body_bytes {
            return self.unpatched(host, Level::Warn, "over max_body_bytes");
        }
        if !end_of_stream {
            return Step::Pause;
        }
        let body = match host.body(Body::Response, body_size) {
            Ok(b) => b,
            Err(s) => return self.unpatched(host, Level::Warn, &format!("cannot read it (host status {})", s.0)),
        };
        let Some(thumbprint) = thumbprint else { return self.answer_without_binding(host, clients, body_size, &body) };
        self.state = State::Done;
        match add_cnf_members(&body, &thumbprint, self.settings.wso2_member) {
            Patch::Patched(patched) => {
                if let Err(e) = replace_response_body(host, body_size, &patched) {
                    return Step::Reply(e);
                }
                host.log(Level::Info, &format!("certbound added cnf x5t#S256={thumbprint} to introspection"));
                host.count(Counter::IntrospectionPatched);
                Step::Continue
            }
            Patch::Unchanged(why) => self.unpatched(host, Level::Debug, &format!("{why:?}")),
        }
    }

    /// The AS says a token with no binding is active: if its client only ever
    /// gets bound tokens, the binding was lost (a restart of the embedded
    /// store), and the answer becomes `{"active":false}`, never active without `cnf`.
    fn answer_without_binding(&mut self, host: &mut impl Host, clients: &Clients, size: usize, body: &[u8]) -> Step {
        let client = match unbound_answer(body) {
            UnboundAnswer::Active(Some(id)) if clients.get(&id).is_some_and(|c| c.tokens_always_bound()) => id,
            _ => return self.unpatched(host, Level::Debug, "the token is not bound"),
        };
        self.state = State::Done;
        if let Err(e) = replace_response_body(host, size, INACTIVE) {
            return Step::Reply(e);
        }
        host.log(
            Level::Warn,
            &format!(
                "certbound: {}: no binding is found for an active token of client {:?}, whose tokens are all bound; answered inactive",
                Reason::BindingNotFound.as_str(),
                printable(&client)
            ),
        );
        host.client(&client);
        host.count(Counter::IntrospectionDeactivated);
        Step::Continue
    }

    /// Trailers end the response: a held answer is patched here.
    pub fn response_trailers(&mut self, host: &mut impl Host, clients: &Clients, body_size: usize) -> Step {
        self.response_body(host, clients, body_size, true)
    }
}

impl super::Held for IntrospectionFlow {
    fn awaiting_request_end(&self) -> bool {
        IntrospectionFlow::awaiting_request_end(self)
    }
    fn awaiting_response_end(&self) -> bool {
        IntrospectionFlow::awaiting_response_end(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::TokenKind;
    use crate::flow::mock::MockHost;

    const SETTINGS: Settings = Settings { max_body_bytes: 1024, wso2_member: false, fail_closed: true };
    const ACTIVE: &[u8] = br#"{"active":true,"client_id":"c"}"#;

    fn thumb() -> Thumbprint {
        Thumbprint::of_der(b"client")
    }

    fn bound() -> Binding {
        Binding { thumbprint: thumb(), kind: TokenKind::Access, expires_at: i64::MAX }
    }

    fn host(method: &str, path: &str, body: &[u8]) -> MockHost {
        let mut h = MockHost::default();
        h.request_headers.insert(":method".into(), method.into());
        h.request_headers.insert(":path".into(), path.into());
        h.request_headers.insert("accept-encoding".into(), "gzip".into());
        h.request_headers.insert("content-type".into(), "application/x-www-form-urlencoded".into());
        h.request_body = body.to_vec();
        h.response_headers.insert(":status".into(), "200".into());
        h.response_body = ACTIVE.to_vec();
        h
    }

    fn started(h: &mut MockHost) -> IntrospectionFlow {
        IntrospectionFlow::start(h, false, SETTINGS).unwrap().unwrap()
    }

    /// Runs a request whose body ends in one chunk, through a lookup answered with `found`.
    fn through_lookup(h: &mut MockHost, found: Result<Option<Binding>, String>) -> (IntrospectionFlow, Step) {
        let mut f = started(h);
        let size = h.request_body.len();
        let step = f.request_body(h, size, true);
        assert_eq!(step, Step::Lookup(keys_for_token("tok").unwrap()));
        let step = f.looked_up(h, found);
        (f, step)
    }

    fn cnf(h: &MockHost) -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&h.response_body).unwrap()["cnf"].clone()
    }

    #[test]
    fn a_bound_token_is_looked_up_before_the_as_answers_and_its_answer_gains_cnf() {
        let mut h = host("POST", "/oauth2/introspect", b"token=tok");
        let (mut f, step) = through_lookup(&mut h, Ok(Some(bound())));
        assert_eq!(step, Step::Continue);
        assert!(!h.request_headers.contains_key("accept-encoding"));
        assert_eq!(f.response_headers(&mut h, false), Step::Pause);
        assert_eq!(f.response_body(&mut h, &Clients::new(), ACTIVE.len(), true), Step::Continue);
        assert_eq!(cnf(&h), serde_json::json!({ "x5t#S256": thumb().x5t_s256() }));
        assert_eq!(h.response_headers["content-length"], h.response_body.len().to_string());
        assert_eq!(h.counted(Counter::IntrospectionPatched), 1);
    }

    #[test]
    fn a_body_in_chunks_or_ended_by_trailers_is_judged_at_its_end() {
        let mut h = host("POST", "/oauth2/introspect", b"token=tok");
        let mut f = started(&mut h);
        assert_eq!(f.request_body(&mut h, 3, false), Step::Pause);
        assert!(f.awaiting_request_end());
        assert_eq!(f.request_trailers(&mut h, 9), Step::Lookup(keys_for_token("tok").unwrap()));
        // More callbacks while the lookup is out keep the stream held.
        assert_eq!(f.request_body(&mut h, 9, true), Step::Pause);
        assert_eq!(f.looked_up(&mut h, Ok(Some(bound()))), Step::Continue);
        f.response_headers(&mut h, false);
        assert_eq!(f.response_body(&mut h, &Clients::new(), 4, false), Step::Pause);
        assert!(f.awaiting_response_end());
        assert_eq!(f.response_trailers(&mut h, &Clients::new(), ACTIVE.len()), Step::Continue);
        assert_eq!(h.counted(Counter::IntrospectionPatched), 1);
    }

    #[test]
    fn an_unbound_token_passes_unpatched_and_is_counted() {
        let mut h = host("POST", "/oauth2/introspect", b"token=tok");
        let (mut f, _) = through_lookup(&mut h, Ok(None));
        // Held to its end: a lost binding of an always-bound client would be read there.
        assert_eq!(f.response_headers(&mut h, false), Step::Pause);
        assert_eq!(f.response_body(&mut h, &Clients::new(), ACTIVE.len(), true), Step::Continue);
        assert_eq!(h.response_body, ACTIVE);
        assert_eq!(h.counted(Counter::IntrospectionUnpatched), 1);
    }

    #[test]
    fn a_store_that_cannot_answer_refuses_when_fail_closed_and_passes_unpatched_otherwise() {
        let mut h = host("POST", "/oauth2/introspect", b"token=tok");
        let (_, step) = through_lookup(&mut h, Err("etcd: timeout".into()));
        let Step::Reply(e) = step else { panic!("no reply") };
        assert_eq!((e.status, e.error, e.reason), (503, "temporarily_unavailable", Reason::StoreUnavailable));
        assert_eq!(h.counted(Counter::StoreErrors), 1);

        let mut h = host("POST", "/oauth2/introspect", b"token=tok");
        let mut f =
            IntrospectionFlow::start(&mut h, false, Settings { fail_closed: false, ..SETTINGS }).unwrap().unwrap();
        assert_eq!(f.request_body(&mut h, 9, true), Step::Lookup(keys_for_token("tok").unwrap()));
        assert_eq!(f.looked_up(&mut h, Err("shared data".into())), Step::Continue);
        assert_eq!(f.response_headers(&mut h, false), Step::Pause);
        assert_eq!(f.response_body(&mut h, &Clients::new(), ACTIVE.len(), true), Step::Continue);
        assert_eq!(h.counted(Counter::IntrospectionUnpatched), 1);
    }

    #[test]
    fn a_request_certbound_cannot_judge_is_refused() {
        for (method, path, body, status) in [
            ("GET", "/oauth2/introspect?token=tok", &b""[..], 405),
            ("POST", "/oauth2/introspect?%74oken=tok", b"x=1", 400),
            ("POST", "/oauth2/introspect", b"token=a&token=b", 400),
            ("POST", "/oauth2/introspect", b"token[]=tok", 400),
            ("POST", "/oauth2/introspect", b"x=1&Token=tok", 400),
            ("POST", "/oauth2/introspect", b"token=eyJhbGciOiJub25lIn0.e30.QU%3DJD", 400),
        ] {
            let mut h = host(method, path, body);
            let step = match IntrospectionFlow::start(&mut h, false, SETTINGS) {
                Err(e) => Step::Reply(e),
                Ok(Some(mut f)) => f.request_body(&mut h, body.len(), true),
                Ok(None) => Step::Continue,
            };
            let Step::Reply(e) = step else { panic!("{method} {path}: not refused") };
            assert_eq!(e.status, status, "{method} {path}");
        }
        let mut h = host("POST", "/oauth2/introspect", b"token=tok");
        h.request_headers.insert("content-encoding".into(), "gzip".into());
        assert_eq!(IntrospectionFlow::start(&mut h, false, SETTINGS).unwrap_err().status, 400);
        let mut h = host("POST", "/oauth2/introspect", &[b'x'; 2000]);
        let mut f = started(&mut h);
        let Step::Reply(e) = f.request_body(&mut h, 2000, false) else { panic!("not refused") };
        assert_eq!(e.status, 413);
    }

    #[test]
    fn a_query_beside_a_charset_that_is_not_ascii_transparent_is_refused_even_without_a_body() {
        // Django decodes the query with the request's charset: "%a3%96%92%85%95" is "token" in EBCDIC.
        let mut h = host("POST", "/oauth2/introspect?%a3%96%92%85%95=tok", b"");
        h.request_headers.insert("content-type".into(), "application/x-www-form-urlencoded; charset=ibm037".into());
        let e = IntrospectionFlow::start(&mut h, true, SETTINGS).unwrap_err();
        assert_eq!((e.status, e.reason), (400, Reason::UnsupportedCharset));
        let mut h = host("POST", "/oauth2/introspect?tenant=a", b"");
        h.request_headers.insert("content-type".into(), "application/x-www-form-urlencoded; charset=utf-8".into());
        assert_eq!(IntrospectionFlow::start(&mut h, true, SETTINGS), Ok(None));
    }

    #[test]
    fn a_preflight_and_a_bodiless_post_go_on_unjudged() {
        let mut h = host("OPTIONS", "/oauth2/introspect", b"");
        assert_eq!(IntrospectionFlow::start(&mut h, true, SETTINGS), Ok(None));
        let mut h = host("POST", "/oauth2/introspect", b"");
        assert_eq!(IntrospectionFlow::start(&mut h, true, SETTINGS), Ok(None));
        let mut h = host("POST", "/oauth2/introspect", b"token_type_hint=access_token");
        let mut f = started(&mut h);
        assert_eq!(f.request_body(&mut h, 28, true), Step::Continue);
    }

    #[test]
    fn error_encoded_and_empty_answers_pass_unpatched() {
        for (status, encoding, eos) in [("401", None, false), ("200", Some("gzip"), false), ("200", None, true)] {
            let mut h = host("POST", "/oauth2/introspect", b"token=tok");
            h.response_headers.insert(":status".into(), status.into());
            if let Some(e) = encoding {
                h.response_headers.insert("content-encoding".into(), e.into());
            }
            let (mut f, _) = through_lookup(&mut h, Ok(Some(bound())));
            assert_eq!(f.response_headers(&mut h, eos), Step::Continue, "{status} {encoding:?} {eos}");
            assert_eq!(f.response_body(&mut h, &Clients::new(), ACTIVE.len(), true), Step::Continue);
            assert_eq!(h.response_body, ACTIVE);
        }
    }

    #[test]
    fn a_patch_the_host_cannot_apply_whole_becomes_an_error_reply() {
        let mut h = host("POST", "/oauth2/introspect", b"token=tok");
        h.failing.insert("set_response_header");
        let (mut f, _) = through_lookup(&mut h, Ok(Some(bound())));
        f.response_headers(&mut h, false);
        let Step::Reply(e) = f.response_body(&mut h, &Clients::new(), ACTIVE.len(), true) else { panic!("no reply") };
        assert_eq!(e.status, 500);
    }

    fn registered() -> Clients {
        let c = serde_json::json!({"clients":[
            {"client_id":"c","token_endpoint_auth_method":"self_signed_tls_client_auth","thumbprints":[thumb().x5t_s256()]},
            {"client_id":"spa","token_endpoint_auth_method":"none"},
            {"client_id":"spa-bound","token_endpoint_auth_method":"none","tls_client_certificate_bound_access_tokens":true}]});
        crate::config::parse(c.to_string().as_bytes()).unwrap().clients
    }

    #[test]
    fn an_active_token_of_an_always_bound_client_without_a_binding_is_answered_inactive() {
        for client in ["c", "spa-bound"] {
            let active = format!(r#"{{"active":true,"client_id":"{client}","scope":"api"}}"#);
            let mut h = host("POST", "/oauth2/introspect", b"token=tok");
            h.response_body = active.clone().into_bytes();
            let (mut f, _) = through_lookup(&mut h, Ok(None));
            assert_eq!(f.response_headers(&mut h, false), Step::Pause);
            assert_eq!(f.response_body(&mut h, &registered(), active.len(), true), Step::Continue);
            assert_eq!(h.response_body, INACTIVE, "{client}");
            assert_eq!(h.response_headers["content-length"], INACTIVE.len().to_string());
            assert_eq!(h.counted(Counter::IntrospectionDeactivated), 1);
            assert!(h.logged.iter().any(|(_, l)| l.contains("binding_not_found")));
        }
    }

    #[test]
    fn an_unbound_token_of_a_client_that_may_have_them_passes_as_the_as_said() {
        for active in [
            &br#"{"active":true,"client_id":"spa"}"#[..],
            br#"{"active":true,"client_id":"unregistered"}"#,
            br#"{"active":true}"#,
            br#"{"active":false,"client_id":"c"}"#,
        ] {
            let mut h = host("POST", "/oauth2/introspect", b"token=tok");
            h.response_body = active.to_vec();
            let (mut f, _) = through_lookup(&mut h, Ok(None));
            assert_eq!(f.response_headers(&mut h, false), Step::Pause);
            assert_eq!(f.response_body(&mut h, &registered(), active.len(), true), Step::Continue);
            assert_eq!(h.response_body, active);
            assert_eq!(h.counted(Counter::IntrospectionDeactivated), 0);
        }
        // An error, an encoded or an empty answer is not held.
        let mut h = host("POST", "/oauth2/introspect", b"token=tok");
        h.response_headers.insert(":status".into(), "400".into());
        let (mut f, _) = through_lookup(&mut h, Ok(None));
        assert_eq!(f.response_headers(&mut h, false), Step::Continue);
    }

    #[test]
    fn a_request_body_that_is_not_a_form_is_refused() {
        let mut h = host("POST", "/oauth2/introspect", br#"{"token":"tok"}"#);
        h.request_headers.insert("content-type".into(), "application/json".into());
        let mut f = started(&mut h);
        let Step::Reply(e) = f.request_body(&mut h, 15, true) else { panic!("not refused") };
        assert_eq!((e.status, e.error), (400, "invalid_request"));
    }

    #[test]
    fn wso2s_member_is_written_when_configured() {
        let mut h = host("POST", "/oauth2/introspect", b"token=tok");
        let mut f =
            IntrospectionFlow::start(&mut h, false, Settings { wso2_member: true, ..SETTINGS }).unwrap().unwrap();
        f.request_body(&mut h, 9, true);
        f.looked_up(&mut h, Ok(Some(bound())));
        f.response_headers(&mut h, false);
        f.response_body(&mut h, &Clients::new(), ACTIVE.len(), true);
        let x5t = thumb().x5t_s256();
        assert_eq!(cnf(&h), serde_json::json!({ "x5t#S256": x5t, "x5t#SHA256": x5t }));
    }
}
