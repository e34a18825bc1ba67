//! One HTTP stream: routes the token and introspection endpoints through the
//! pure core and applies its decisions.

use super::host::{self, SharedDataStore};
use super::metrics::Metrics;
use crate::binding::{self, Binding, PutDecision};
use crate::cert_header;
use crate::cert_source::{self, Event, Facts};
use crate::client_auth::{self, Authenticated, TokenRequest};
use crate::config::Config;
use crate::error::{OAuthError, Reason};
use crate::form;
use crate::introspection::{self, Patch};
use crate::resource::{self, Allowed, Presented, ProtectedRoute, ResourceError};
use log::{debug, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType};
use std::rc::Rc;

enum Route {
    /// Not an endpoint certbound acts on.
    Other,
    /// A local reply was sent; nothing more to do.
    Answered,
    Token(TokenState),
    Introspect {
        key: Option<String>,
        binding: Option<Binding>,
    },
    /// A protected request whose form body is checked for a token.
    ResourceForm,
}

struct TokenState {
    content_type: Option<String>,
    authorization: Option<String>,
    authenticated: Option<Authenticated>,
    /// Set when the response carries tokens to bind and is held for it.
    binding_response: bool,
}

pub struct Http {
    id: u32,
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    request_id: String,
    route: Route,
    /// The certificate this request presented, from its trusted source.
    presented: Option<cert_source::Presented>,
}

fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

impl Http {
    pub fn new(id: u32, config: Option<Rc<Config>>, metrics: Rc<Metrics>) -> Self {
        Http { id, config, metrics, request_id: "-".into(), route: Route::Other, presented: None }
    }

    /// Answers with an OAuth error, logs why and counts it.
    fn refuse(&mut self, e: OAuthError) -> Action {
        self.reply(e.status, e.headers(), e.body(), e.reason, e.error, &e.description)
    }

    /// Answers a protected-resource request with an RFC 6750 error.
    fn refuse_resource(&mut self, e: ResourceError) -> Action {
        self.reply(e.status, e.headers(), e.body(), e.reason, e.error.unwrap_or("no_token"), &e.description)
    }

    fn reply(
        &mut self,
        status: u32,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        reason: Reason,
        error: &str,
        description: &str,
    ) -> Action {
        warn!("[{} {}] certbound refused: {error} ({}): {description}", self.id, self.request_id, reason.as_str());
        self.metrics.refused(reason);
        self.route = Route::Answered;
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Err(status) = hostcalls::send_http_response(status, headers, Some(&body)) {
            warn!("[{} {}] certbound could not send its reply: {status:?}", self.id, self.request_id);
            // Without a reply the request must still not pass: reset it.
            let _ = hostcalls::reset_http_request();
        }
        Action::Pause
    }

    fn resource_request(
        &mut self,
        config: &Config,
        route: &ProtectedRoute,
        full_path: &str,
        end_of_stream: bool,
    ) -> Action {
        if let Some(h) = &route.thumbprint_header {
            // Only certbound says which certificate a request proved.
            let _ = host::set_request_header(h, None);
        }
        if resource::query_has_access_token(full_path) {
            return self.refuse_resource(resource::token_in_uri());
        }
        let authorization = host::request_header("authorization");
        let token = resource::bearer_token(authorization.as_deref());
        let now = match host::now() {
            Some(n) => n,
            None => return self.refuse(OAuthError::internal("the proxy clock is unavailable")),
        };
        let stored = match token.map(|t| SharedDataStore::get(&binding::key_for_token(t), now)) {
            None => None,
            Some(Ok(b)) => b.map(|b| b.thumbprint),
            Some(Err(e)) => {
                warn!("[{} {}] certbound: binding lookup failed: {e}", self.id, self.request_id);
                return self.refuse_resource(ResourceError {
                    status: 401,
                    error: Some("invalid_token"),
                    description: "the token's binding cannot be checked now".into(),
                    reason: Reason::BindingStoreFailed,
                });
            }
        };
        let claim = match (&config.jwt_claims, token) {
            (Some(jwt), Some(_)) => host::verified_jwt_cnf(&jwt.metadata_namespace, &jwt.payload_key),
            _ => None,
        };
        let certificate = self.presented.as_ref().map(|p| p.thumbprint);
        let presented = Presented { token: token.is_some(), stored, verified_claim: claim.as_deref(), certificate };
        match resource::decide(route, &presented) {
            Ok(Allowed::Bound(t)) => {
                if let Some(h) = &route.thumbprint_header {
                    if let Err(s) = host::set_request_header(h, Some(&t.x5t_s256())) {
                        return self.refuse(OAuthError::internal(format!("cannot set {h}: {s:?}")));
                    }
                }
                debug!(
                    "[{} {}] certbound: bound token used with its certificate x5t#S256={t}",
                    self.id, self.request_id
                );
                self.metrics.resource_allowed();
            }
            Ok(Allowed::Unbound) | Ok(Allowed::NoToken) => {
                debug!("[{} {}] certbound: unbound or no token, allowed by route policy", self.id, self.request_id);
                self.metrics.resource_allowed_unbound();
            }
            Err(e) => return self.refuse_resource(e),
        }
        // A form body may carry its own access_token (RFC 6750 §2.2): look before it goes on.
        let form = host::request_header("content-type").is_some_and(|c| form::is_form_content_type(&c));
        if form && !end_of_stream {
            self.route = Route::ResourceForm;
            return Action::Pause;
        }
        Action::Continue
    }

    fn resource_form_body(&mut self, config: &Config, body_size: usize, end_of_stream: bool) -> Action {
        if body_size > config.max_body_bytes {
            return self.refuse(OAuthError::too_large(format!("form body exceeds {} bytes", config.max_body_bytes)));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let has_token = host::body(BufferType::HttpRequestBody, body_size)
            .map(|b| crate::form::Form::parse(&b).map(|f| f.contains("access_token")).unwrap_or(false))
            .unwrap_or(false);
        if has_token {
            return self.refuse_resource(resource::token_in_uri());
        }
        self.route = Route::Other;
        Action::Continue
    }

    /// Finds the certificate this request presented, removes certificate
    /// headers whose sender is not trusted (and the loser of a conflict), and
    /// forwards the verified certificate upstream when configured.
    fn resolve_certificate(&mut self, config: &Config) -> Result<(), cert_source::CertProblem> {
        let sources = &config.sources;
        let connection = if sources.connection {
            host::connection_certificate().unwrap_or_else(|e| {
                warn!(
                    "[{} {}] certbound: {e}; the connection counts as having no certificate",
                    self.id, self.request_id
                );
                None
            })
        } else {
            None
        };
        let all_headers = if sources.headers.is_empty() { Vec::new() } else { host::request_headers() };
        let values: Vec<Vec<&str>> = sources
            .headers
            .iter()
            .map(|h| {
                all_headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(&h.name)).map(|(_, v)| v.as_str()).collect()
            })
            .collect();
        let any_header = values.iter().any(|v| !v.is_empty());
        let (peer_subject, peer_san) =
            if any_header { (host::peer_subject(), host::peer_dns_san()) } else { (None, None) };
        let facts = Facts {
            connection,
            source_ip: if any_header { host::source_ip() } else { None },
            peer_subject: peer_subject.as_deref(),
            peer_dns_san: peer_san.as_deref(),
            headers: values,
            now: host::now().unwrap_or_default(),
        };
        let resolution = cert_source::resolve(sources, &facts)?;
        for name in &resolution.remove {
            let _ = host::set_request_header(name, None);
        }
        for event in &resolution.events {
            match event {
                Event::UntrustedHeaderRemoved(name) => {
                    warn!(
                        "[{} {}] certbound removed {name}: its sender is not trusted by the config",
                        self.id, self.request_id
                    );
                    self.metrics.untrusted_header_removed();
                }
                Event::Conflict { kept } => {
                    warn!(
                        "[{} {}] certbound: the connection and a trusted header name different certificates; kept {kept:?}",
                        self.id, self.request_id
                    );
                    self.metrics.certificate_conflict();
                }
            }
        }
        if let Some(fwd) = &sources.forward {
            let _ = host::set_request_header(&fwd.name, None);
            if let Some(der) = resolution.presented.as_ref().and_then(|p| p.cert.as_ref()).map(|c| &c.der) {
                let _ = host::set_request_header(&fwd.name, Some(&cert_header::encode(der, fwd.format)));
            }
        }
        self.presented = resolution.presented;
        Ok(())
    }

    fn now(&mut self) -> Result<i64, OAuthError> {
        host::now().ok_or_else(|| OAuthError::internal("the proxy clock is unavailable"))
    }

    fn token_request_headers(&mut self, config: &Config, end_of_stream: bool) -> Action {
        match host::request_header(":method").as_deref() {
            Some("POST") => {}
            // CORS preflight carries no credentials and gets no token.
            Some("OPTIONS") => return Action::Continue,
            _ => return self.refuse(OAuthError::method_not_allowed("the token endpoint accepts POST only")),
        }
        if end_of_stream {
            return self
                .refuse(OAuthError::invalid_request(crate::error::Reason::BadRequest, "token request has no body"));
        }
        if let Some(len) = host::request_header("content-length").and_then(|l| l.trim().parse::<usize>().ok()) {
            if len > config.max_body_bytes {
                return self.refuse(OAuthError::too_large(format!(
                    "token request body exceeds {} bytes",
                    config.max_body_bytes
                )));
            }
        }
        // The response must be readable to bind its tokens.
        let _ = host::set_request_header("accept-encoding", None);
        self.route = Route::Token(TokenState {
            content_type: host::request_header("content-type"),
            authorization: host::request_header("authorization"),
            authenticated: None,
            binding_response: false,
        });
        Action::Pause
    }

    fn token_request_body(&mut self, config: &Config, body_size: usize, end_of_stream: bool) -> Action {
        if body_size > config.max_body_bytes {
            return self
                .refuse(OAuthError::too_large(format!("token request body exceeds {} bytes", config.max_body_bytes)));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = match host::body(BufferType::HttpRequestBody, body_size) {
            Ok(b) => b,
            Err(s) => return self.refuse(OAuthError::internal(format!("cannot read the request body: {s:?}"))),
        };
        let now = match self.now() {
            Ok(n) => n,
            Err(e) => return self.refuse(e),
        };
        let Route::Token(state) = &self.route else { return Action::Continue };
        let req = TokenRequest {
            content_type: state.content_type.as_deref(),
            authorization: state.authorization.as_deref(),
            body: &body,
            certificate: self.presented.as_ref(),
            now,
        };
        let auth = match client_auth::authenticate(config, &req) {
            Ok(auth) => auth,
            Err(e) => return self.refuse(e),
        };
        if let Some(key) = &auth.refresh_key {
            // The refresh token's binding is checked before the AS sees the request.
            let bound = match SharedDataStore::get(key, now) {
                Ok(b) => b,
                Err(e) => {
                    return self.refuse(OAuthError::store_unavailable(format!("cannot look up the refresh token: {e}")))
                }
            };
            if let Err(e) = binding::check_refresh(bound.as_ref(), auth.thumbprint.as_ref()) {
                return self.refuse(e);
            }
        }
        if let Err(s) = host::set_request_header("authorization", auth.upstream_authorization.as_deref()) {
            return self.refuse(OAuthError::internal(format!("cannot set upstream credentials: {s:?}")));
        }
        let client_id = client_auth::shown(&auth.client_id);
        match auth.thumbprint {
            Some(t) => info!(
                "[{} {}] certbound: client {client_id:?} with certificate x5t#S256={t} may request tokens",
                self.id, self.request_id
            ),
            None => info!(
                "[{} {}] certbound: public client {client_id:?} without certificate: its tokens will be unbound",
                self.id, self.request_id
            ),
        }
        self.metrics.client_authenticated();
        if let Route::Token(state) = &mut self.route {
            state.authenticated = Some(auth);
        }
        Action::Continue
    }

    fn token_response_headers(&mut self, end_of_stream: bool) -> Action {
        let success = host::response_header(":status").map(|s| s.starts_with('2')).unwrap_or(false);
        if !success {
            return Action::Continue; // An error response carries no token to bind.
        }
        if let Route::Token(TokenState { authenticated: Some(Authenticated { thumbprint: None, .. }), .. }) =
            &self.route
        {
            // A public client that presented no certificate and may have unbound tokens.
            self.metrics.unbound_token_response();
            return Action::Continue;
        }
        if end_of_stream {
            return self.refuse(OAuthError::unbindable("the authorization server answered without a body"));
        }
        if host::response_header("content-encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
            return self.refuse(OAuthError::unbindable("the token response is encoded and cannot be bound"));
        }
        if let Route::Token(state) = &mut self.route {
            state.binding_response = true;
        }
        Action::Pause
    }

    fn token_response_body(&mut self, config: &Config, body_size: usize, end_of_stream: bool) -> Action {
        if body_size > config.max_body_bytes {
            return self.refuse(OAuthError::unbindable("the token response is too large to bind"));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let Route::Token(TokenState { authenticated: Some(auth), .. }) = &self.route else {
            return Action::Continue;
        };
        let client_id = client_auth::shown(&auth.client_id);
        let Some(thumbprint) = auth.thumbprint else { return Action::Continue };
        let body = match host::body(BufferType::HttpResponseBody, body_size) {
            Ok(b) => b,
            Err(s) => return self.refuse(OAuthError::unbindable(format!("cannot read the token response: {s:?}"))),
        };
        let now = match self.now() {
            Ok(n) => n,
            Err(e) => return self.refuse(e),
        };
        let to_bind = match binding::bindings_for_response(&body, thumbprint, &config.binding, now) {
            Ok(b) => b,
            Err(e) => return self.refuse(OAuthError::unbindable(e.to_string())),
        };
        for b in &to_bind {
            let why = match SharedDataStore::put(&b.key, &b.binding, now) {
                Ok(PutDecision::Write) | Ok(PutDecision::AlreadyBound) => continue,
                Ok(PutDecision::Conflict) => "store did not accept the binding".to_string(),
                Err(e) => e.to_string(),
            };
            return self.refuse(OAuthError::store_unavailable(format!(
                "the token could not be bound ({why}); it was not released"
            )));
        }
        info!(
            "[{} {}] certbound bound {} token(s) of client {:?} to x5t#S256={}",
            self.id,
            self.request_id,
            to_bind.len(),
            client_id,
            thumbprint
        );
        self.metrics.tokens_bound(to_bind.len());
        Action::Continue
    }

    fn introspection_request_body(&mut self, config: &Config, body_size: usize, end_of_stream: bool) -> Action {
        if body_size > config.max_body_bytes {
            return self.refuse(OAuthError::too_large(format!(
                "introspection request body exceeds {} bytes",
                config.max_body_bytes
            )));
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let key = host::body(BufferType::HttpRequestBody, body_size)
            .ok()
            .and_then(|b| introspection::token_param(&b))
            .map(|t| binding::key_for_token(&t));
        self.route = Route::Introspect { key, binding: None };
        Action::Continue
    }

    fn introspection_response_headers(&mut self) -> Action {
        let Route::Introspect { key: Some(key), .. } = &self.route else { return Action::Continue };
        if host::response_header(":status").as_deref() != Some("200") {
            return Action::Continue;
        }
        let found = match host::now().map(|now| SharedDataStore::get(key, now)) {
            Some(Ok(found)) => found,
            Some(Err(e)) => {
                warn!("[{} {}] certbound: binding lookup failed: {e}", self.id, self.request_id);
                None
            }
            None => {
                warn!("[{} {}] certbound: binding lookup skipped: no clock", self.id, self.request_id);
                None
            }
        };
        let Some(b) = found else {
            debug!("[{} {}] certbound: introspected token is not bound", self.id, self.request_id);
            self.metrics.introspection_unpatched();
            return Action::Continue;
        };
        if host::response_header("content-encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
            warn!("[{} {}] certbound: encoded introspection response left unpatched", self.id, self.request_id);
            self.metrics.introspection_unpatched();
            return Action::Continue;
        }
        if let Route::Introspect { binding, .. } = &mut self.route {
            *binding = Some(b);
        }
        Action::Pause
    }

    fn introspection_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Route::Introspect { binding: Some(b), .. } = &self.route else { return Action::Continue };
        if !end_of_stream {
            return Action::Pause;
        }
        let thumbprint = b.thumbprint;
        let body = match host::body(BufferType::HttpResponseBody, body_size) {
            Ok(b) => b,
            Err(s) => {
                warn!("[{} {}] certbound: cannot read the introspection response: {s:?}", self.id, self.request_id);
                self.metrics.introspection_unpatched();
                return Action::Continue;
            }
        };
        match introspection::add_cnf(&body, &thumbprint) {
            Patch::Patched(patched) => {
                let applied = host::replace_body(BufferType::HttpResponseBody, body_size, &patched)
                    .and_then(|_| host::set_response_header("content-length", Some(&patched.len().to_string())));
                match applied {
                    Ok(()) => {
                        info!(
                            "[{} {}] certbound added cnf x5t#S256={} to introspection",
                            self.id, self.request_id, thumbprint
                        );
                        self.metrics.introspection_patched();
                    }
                    Err(s) => {
                        // A half-applied patch must not leave a wrong Content-Length: answer an error instead.
                        warn!(
                            "[{} {}] certbound: cannot patch the introspection response: {s:?}",
                            self.id, self.request_id
                        );
                        return self.refuse(OAuthError::internal("the introspection response could not be completed"));
                    }
                }
            }
            Patch::Unchanged(why) => {
                debug!("[{} {}] certbound: introspection response unchanged: {why:?}", self.id, self.request_id);
                self.metrics.introspection_unpatched();
            }
        }
        Action::Continue
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if let Some(id) = host::request_header("x-request-id") {
            self.request_id = id.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
        }
        let Some(config) = self.config.clone() else {
            return self.refuse(OAuthError::not_configured());
        };
        let full_path = host::request_header(":path").unwrap_or_default();
        let path = path_only(&full_path);
        let is_token = path == config.token_path;
        let route = resource::route_for(&config.protected_routes, path).cloned();
        if let Err(problem) = self.resolve_certificate(&config) {
            if is_token {
                return self.refuse(if problem.bad_request {
                    OAuthError::invalid_request(problem.reason, problem.description)
                } else {
                    OAuthError::invalid_client(problem.reason, problem.description)
                });
            }
            if route.is_some() {
                return self.refuse_resource(ResourceError {
                    status: if problem.bad_request { 400 } else { 401 },
                    error: Some(if problem.bad_request { "invalid_request" } else { "invalid_token" }),
                    description: problem.description,
                    reason: problem.reason,
                });
            }
            // Elsewhere the unusable certificate headers are dropped; the request is not about them.
            warn!("[{} {}] certbound: {}; certificate headers removed", self.id, self.request_id, problem.description);
            self.metrics.refused(problem.reason);
            for h in &config.sources.headers {
                let _ = host::set_request_header(&h.name, None);
            }
        }
        if is_token {
            return self.token_request_headers(&config, end_of_stream);
        }
        if path == config.introspection_path
            && host::request_header(":method").as_deref() == Some("POST")
            && !end_of_stream
        {
            let _ = host::set_request_header("accept-encoding", None);
            self.route = Route::Introspect { key: None, binding: None };
            return Action::Pause;
        }
        if let Some(route) = route {
            return self.resource_request(&config, &route, &full_path, end_of_stream);
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else { return Action::Continue };
        match self.route {
            Route::Token(_) => self.token_request_body(&config, body_size, end_of_stream),
            Route::Introspect { .. } => self.introspection_request_body(&config, body_size, end_of_stream),
            Route::ResourceForm => self.resource_form_body(&config, body_size, end_of_stream),
            Route::Other | Route::Answered => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        match self.route {
            Route::Token(TokenState { authenticated: Some(_), .. }) => self.token_response_headers(end_of_stream),
            Route::Introspect { .. } => self.introspection_response_headers(),
            _ => Action::Continue,
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else { return Action::Continue };
        match self.route {
            Route::Token(TokenState { binding_response: true, .. }) => {
                self.token_response_body(&config, body_size, end_of_stream)
            }
            Route::Introspect { .. } => self.introspection_response_body(body_size, end_of_stream),
            _ => Action::Continue,
        }
    }
}
