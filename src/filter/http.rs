//! One HTTP stream: routes the token endpoint, the introspection endpoint and
//! protected resource routes through the pure core, and applies its
//! decisions. Store reads and writes are synchronous (shared data) or wait
//! for an etcd callout; either way the decision code is the same.

use super::abi;
use super::host;
use super::metrics::Metrics;
use super::store_calls::{self, StoreError};
use crate::binding::{Binding, ToBind};
use crate::cert_header;
use crate::cert_source::{self, Event, Facts};
use crate::config::{Config, EtcdConfig, StoreConfig};
use crate::counter::Counter;
use crate::error::{OAuthError, Reason};
use crate::etcd_write::{EtcdWrite, Outcome};
use crate::flow::discovery::DiscoveryFlow;
use crate::flow::introspection::{self as introspection_flow, IntrospectionFlow};
use crate::flow::resource::{self as resource_flow, ResourceFlow};
use crate::flow::token::{self as token_flow, TokenFlow};
use crate::flow::Step;
use crate::flow::{BindError, Held};
use crate::path::Endpoint;
use crate::resource::{self, ResourceError};
use crate::store::{self, SlotTable};
use crate::vm_cache::VmCache;
use log::warn;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;

enum StreamFlow {
    /// Not an endpoint certbound acts on.
    Other,
    /// A local reply was sent; nothing more to do.
    Answered,
    /// The token endpoint (the core's flow).
    Token(Box<TokenFlow>),
    /// The introspection endpoint (the core's flow).
    Introspect(IntrospectionFlow),
    /// A protected resource route (the core's flow).
    Resource(ResourceFlow),
    /// An AS metadata document to patch (the core's flow).
    Discovery(DiscoveryFlow),
}

/// What a pending etcd call will continue with.
enum Waiting {
    /// A binding lookup asked for by the stream's flow.
    Lookup { key: String },
    /// A step of storing bindings in etcd (a lease grant, or the transaction).
    EtcdWrite(Box<EtcdWrite>),
}

struct Pending {
    token: u32,
    path: &'static str,
    body: Vec<u8>,
    retried: bool,
    waiting: Waiting,
}

pub struct Http {
    id: u32,
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    table: SlotTable,
    /// This VM's cache of store hits (in front of shared data and etcd).
    vm_cache: Rc<RefCell<VmCache>>,
    /// `x-request-id`, read when a log line first needs it.
    request_id: Option<String>,

    flow: StreamFlow,
    /// The certificate this request presented, from its trusted source.
    presented: Option<cert_source::Presented>,
    pending: Option<Pending>,
    /// The request is held until its end (body end or trailers) to be judged.
    awaiting_request_end: bool,
    /// The response is held until its end to be bound or patched.
    awaiting_response_end: bool,
    /// Bytes of the request / response body buffered so far (trailers end a body without saying its size).
    request_body_size: usize,
    response_body_size: usize,
}

use crate::keys::ETCD_RANGE as RANGE;

impl Http {
    pub fn new(
        id: u32,
        config: Option<Rc<Config>>,
        metrics: Rc<Metrics>,
        table: SlotTable,
        vm_cache: Rc<RefCell<VmCache>>,
    ) -> Self {
        Http {
            id,
            config,
            metrics,
            table,
            vm_cache,
            request_id: None,
            flow: StreamFlow::Other,
            presented: None,
            pending: None,
            awaiting_request_end: false,
            awaiting_response_end: false,
            request_body_size: 0,
            response_body_size: 0,
        }
    }

    /// The request's `x-request-id` for log lines (read once, on demand: most
    /// requests log nothing at the default level).
    fn request_id_or_dash(&mut self) -> String {
        self.request_id.clone().unwrap_or_else(|| "-".into())
    }

    /// Reads `x-request-id` in `on_http_request_headers`, on the routes
    /// certbound acts on: request headers are not asked for later (after a
    /// pause or in the response phase the host may answer BadArgument, on
    /// which the SDK panics).
    fn read_request_id(&mut self) {
        self.request_id = Some(
            host::request_header("x-request-id")
                .map(|id| id.chars().filter(|c| c.is_ascii_graphic()).take(64).collect())
                .unwrap_or_else(|| "-".into()),
        );
    }

    /// `[context-id request-id]`, the prefix of every log line of this stream.
    fn log_prefix(&mut self) -> String {
        let rid = self.request_id_or_dash();
        format!("[{} {rid}]", self.id)
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
        warn!("{} certbound refused: {error} ({}): {description}", self.log_prefix(), reason.as_str());
        self.metrics.refused(reason);
        self.flow = StreamFlow::Answered;
        self.pending = None;
        self.awaiting_request_end = false;
        self.awaiting_response_end = false;
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Err(status) = abi::send_local_response(status, &headers, &body) {
            warn!("{} certbound could not send its reply: {status:?}", self.log_prefix());
            // Without a reply the request must still not pass: reset it.
            let _ = abi::reset_request();
        }
        Action::Pause
    }

    fn now(&mut self) -> Result<i64, OAuthError> {
        host::now().ok_or_else(|| OAuthError::internal("the proxy clock is unavailable"))
    }

    /// The etcd read cache, unless configured off.
    fn cache(&self) -> Option<SlotTable> {
        match self.config.as_ref().map(|c| &c.store) {
            Some(StoreConfig::Etcd(cfg)) if cfg.cache_capacity > 0 => Some(self.table),
            _ => None,
        }
    }

    /// Sends an etcd call and parks the stream's continuation.
    /// The etcd store's configuration, when that is the backend.
    fn etcd(&self) -> Option<Rc<EtcdConfig>> {
        match self.config.as_ref().map(|c| &c.store) {
            Some(StoreConfig::Etcd(cfg)) => Some(cfg.clone()),
            _ => None,
        }
    }

    fn send(&mut self, path: &'static str, body: Vec<u8>, waiting: Waiting) -> Result<(), StoreError> {
        let Some(cfg) = self.etcd() else {
            return Err(StoreError::Etcd("not configured".into()));
        };
        let token = store_calls::etcd_call(&cfg, path, &body)?;
        self.pending = Some(Pending { token, path, body, retried: false, waiting });
        Ok(())
    }

    /// A lookup answered without a callout: this VM's cache, shared data, or
    /// a hit in the etcd read cache. `None`: etcd must be asked.
    fn read_local(&mut self, key: &str, now: i64) -> Option<Result<Option<Binding>, StoreError>> {
        if let Some(hit) = self.vm_cache.try_borrow_mut().ok().and_then(|mut c| c.get(key, now)) {
            return Some(Ok(Some(hit)));
        }
        let found = match &self.config.as_ref()?.store {
            StoreConfig::SharedData { .. } => Some(store_calls::shared_get(self.table, key, now)),
            StoreConfig::Etcd(cfg) if cfg.cache_capacity == 0 => None,
            StoreConfig::Etcd(_) => store_calls::cache_get(self.table, key, now).map(|b| Ok(Some(b))),
        };
        if let Some(Ok(Some(b))) = &found {
            self.remember_hit(key, b, now);
        }
        found
    }

    /// A binding the store answered with stays true until its expiry: kept in this VM (misses never are).
    fn remember_hit(&self, key: &str, binding: &Binding, now: i64) {
        if let Ok(mut c) = self.vm_cache.try_borrow_mut() {
            c.put(key, binding, now);
        }
    }

    /// Asks etcd for a binding; the stream continues with `waiting` when it answers.
    fn read_remote(&mut self, key: &str, waiting: Waiting) -> Result<(), StoreError> {
        let Some(cfg) = self.etcd() else {
            return Err(StoreError::Etcd("not configured".into()));
        };
        self.send(RANGE, store::etcd_range(&store_calls::etcd_key(&cfg, key)), waiting)
    }

    /// Finds the certificate this request presented, removes certificate
    /// headers whose sender is not trusted (and the loser of a conflict), and
    /// forwards the verified certificate upstream when configured.
    fn resolve_certificate(&mut self, config: &Config) -> Result<(), cert_source::CertProblem> {
        let sources = &config.sources;
        let connection = if sources.connection {
            host::connection_certificate().unwrap_or_else(|e| {
                warn!("{} certbound: {e}; the connection counts as having no certificate", self.log_prefix());
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
            // Only a certificate read from a header has dates to check.
            now: if any_header { host::now().unwrap_or_default() } else { 0 },
        };
        let resolution = cert_source::resolve(sources, &facts)?;
        for name in &resolution.remove {
            let _ = host::set_request_header(name, None);
        }
        for event in &resolution.events {
            match event {
                Event::UntrustedHeaderRemoved(name) => {
                    warn!("{} certbound removed {name}: its sender is not trusted by the config", self.log_prefix());
                    self.metrics.count(Counter::UntrustedHeaderRemoved);
                }
                Event::Conflict { kept } => {
                    warn!(
                        "{} certbound: the connection and a trusted header name different certificates; kept {kept:?}",
                        self.log_prefix()
                    );
                    self.metrics.count(Counter::CertificateConflicts);
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

    // ------------------------------------------------------------ resources

    fn resource(&mut self, event: impl FnOnce(&mut ResourceFlow, &mut host::WasmHost<'_>) -> Step) -> Action {
        fn pick(flow: &mut StreamFlow) -> Option<&mut ResourceFlow> {
            match flow {
                StreamFlow::Resource(f) => Some(f),
                _ => None,
            }
        }
        self.run(pick, event)
    }

    /// The flow asked for a binding: answered from shared data or the etcd
    /// read cache at once, or by etcd later (the stream stays held).
    fn lookup(&mut self, key: String) -> Action {
        let now = match self.now() {
            Ok(n) => n,
            Err(e) => return self.refuse(e),
        };
        let result = match self.read_local(&key, now) {
            Some(r) => r,
            None => match self.read_remote(&key, Waiting::Lookup { key: key.clone() }) {
                Ok(()) => return Action::Pause,
                Err(e) => Err(e),
            },
        };
        self.deliver_lookup(result.map_err(|e| e.to_string()))
    }

    /// Gives the store's answer to the flow that asked.
    fn deliver_lookup(&mut self, result: Result<Option<Binding>, String>) -> Action {
        match self.flow {
            StreamFlow::Introspect(_) => self.introspection(|f, h| f.looked_up(h, result)),
            StreamFlow::Resource(_) => self.resource(|f, h| f.looked_up(h, result)),
            StreamFlow::Token(_) => self.token(|f, h| f.looked_up(h, result)),
            _ => Action::Continue,
        }
    }

    // ------------------------------------------------------------ token endpoint

    fn token(&mut self, event: impl FnOnce(&mut TokenFlow, &mut host::WasmHost<'_>) -> Step) -> Action {
        fn pick(flow: &mut StreamFlow) -> Option<&mut TokenFlow> {
            match flow {
                StreamFlow::Token(f) => Some(&mut **f),
                _ => None,
            }
        }
        self.run(pick, event)
    }

    /// The token flow asked for its bindings to be stored: in shared data at
    /// once, or in etcd (leases, then one put-if-absent transaction) while the
    /// AS's answer stays held.
    fn store_bindings(&mut self, entries: Vec<ToBind>) -> Action {
        let Some(config) = self.config.clone() else { return Action::Continue };
        let now = match self.now() {
            Ok(n) => n,
            Err(e) => return self.refuse(e),
        };
        match &config.store {
            StoreConfig::SharedData { .. } => {
                let (filled, stored) = store_calls::shared_put_all(self.table, &entries, now);
                if filled > 0 {
                    if let Some(used) = store_calls::adjust_slots_used(filled as i64) {
                        self.metrics.slots_used(used);
                    }
                }
                match stored {
                    Ok(()) => self.deliver_stored(Ok(())),
                    Err(e) => self.bind_failed(&e),
                }
            }
            StoreConfig::Etcd(cfg) => {
                let write =
                    EtcdWrite::new(entries, cfg.lease_bucket_seconds, &cfg.key_prefix, store_calls::cached_lease);
                self.bind_next(write)
            }
        }
    }

    /// Sends the next call of an etcd write (a lease grant, or the put-if-absent transaction).
    fn bind_next(&mut self, write: EtcdWrite) -> Action {
        let now = host::now().unwrap_or_default();
        let call = write.next(now);
        match self.send(call.path, call.body, Waiting::EtcdWrite(Box::new(write))) {
            Ok(()) => Action::Pause,
            Err(e) => self.bind_failed(&e),
        }
    }

    fn bind_failed(&mut self, e: &StoreError) -> Action {
        let e = match e {
            StoreError::Full => BindError::Full,
            other => BindError::Failed(other.to_string()),
        };
        self.deliver_stored(Err(e))
    }

    /// Gives the store's outcome for the bindings to the token flow.
    fn deliver_stored(&mut self, result: Result<(), BindError>) -> Action {
        self.token(|f, h| f.stored(h, result))
    }

    // ------------------------------------------------------------ introspection

    fn introspection(&mut self, event: impl FnOnce(&mut IntrospectionFlow, &mut host::WasmHost<'_>) -> Step) -> Action {
        fn pick(flow: &mut StreamFlow) -> Option<&mut IntrospectionFlow> {
            match flow {
                StreamFlow::Introspect(f) => Some(f),
                _ => None,
            }
        }
        self.run(pick, event)
    }

    fn discovery(&mut self, event: impl FnOnce(&mut DiscoveryFlow, &mut host::WasmHost<'_>) -> Step) -> Action {
        fn pick(flow: &mut StreamFlow) -> Option<&mut DiscoveryFlow> {
            match flow {
                StreamFlow::Discovery(f) => Some(f),
                _ => None,
            }
        }
        self.run(pick, event)
    }

    /// Runs one event of the stream's flow (found by `pick`) over this
    /// stream's host, notes whether it holds the stream until its end, and
    /// carries out the step it returns.
    fn run<F: Held>(
        &mut self,
        pick: fn(&mut StreamFlow) -> Option<&mut F>,
        event: impl FnOnce(&mut F, &mut host::WasmHost<'_>) -> Step,
    ) -> Action {
        let tag = self.log_prefix();
        let Some(flow) = pick(&mut self.flow) else { return Action::Continue };
        let step = event(flow, &mut host::WasmHost { metrics: &self.metrics, tag: &tag });
        self.awaiting_request_end = flow.awaiting_request_end();
        self.awaiting_response_end = flow.awaiting_response_end();
        self.carry_out(step)
    }

    fn carry_out(&mut self, step: Step) -> Action {
        match step {
            Step::Continue => Action::Continue,
            Step::Pause => Action::Pause,
            Step::Reply(e) => self.refuse(e),
            Step::RefuseResource(e) => self.refuse_resource(e),
            Step::Lookup(key) => self.lookup(key),
            Step::Bind(entries) => self.store_bindings(entries),
        }
    }

    // ------------------------------------------------------------ etcd answers

    fn on_etcd_answer(&mut self, pending: Pending, answer: Result<Vec<u8>, StoreError>) -> Action {
        let now = host::now().unwrap_or_default();
        // A lost connection or a timeout is tried once more (Envoy may pick another member).
        if answer.is_err() && !pending.retried {
            if let Some(cfg) = self.etcd() {
                if let Ok(token) = store_calls::etcd_call(&cfg, pending.path, &pending.body) {
                    self.metrics.count(Counter::StoreRetries);
                    self.pending = Some(Pending { token, retried: true, ..pending });
                    return Action::Pause;
                }
            }
        }
        match pending.waiting {
            Waiting::Lookup { key } => {
                let result = answer.and_then(|b| store_calls::etcd_read(&b, &key, self.cache(), now));
                if let Ok(Some(b)) = &result {
                    self.remember_hit(&key, b, now);
                }
                self.deliver_lookup(result.map_err(|e| e.to_string()))
            }
            Waiting::EtcdWrite(mut write) => match write.next(now).lease_for {
                Some(bucket_end) => {
                    match answer.and_then(|b| write.lease_granted(bucket_end, &b).map_err(StoreError::Etcd)) {
                        Ok(id) => {
                            store_calls::remember_lease(bucket_end, Some(id));
                            self.bind_next(*write)
                        }
                        Err(e) => self.bind_failed(&e),
                    }
                }
                None => match write.written(answer.as_deref().map_err(|e| e.to_string()), now) {
                    Outcome::Stored => {
                        if let Some(cache) = self.cache() {
                            for e in &write.entries {
                                store_calls::cache_put(cache, &e.key, &e.binding);
                            }
                        }
                        self.deliver_stored(Ok(()))
                    }
                    // The remembered leases expired or were revoked in etcd: grant new ones.
                    Outcome::RetryWithNewLeases(forget) => {
                        for end in forget {
                            store_calls::remember_lease(end, None);
                        }
                        self.bind_next(*write)
                    }
                    Outcome::Conflict => self.bind_failed(&StoreError::Conflict),
                    Outcome::Failed(why) => self.bind_failed(&StoreError::Etcd(why)),
                },
            },
        }
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(pending) = self.pending.take() else {
            warn!("{} certbound: answer to unknown call {token_id}", self.log_prefix());
            return;
        };
        if pending.token != token_id {
            warn!("{} certbound: answer to call {token_id}, waiting for {}", self.log_prefix(), pending.token);
            self.pending = Some(pending);
            return;
        }
        let response_phase = matches!(pending.waiting, Waiting::EtcdWrite(_));
        let answer = store_calls::callout_answer(num_headers, body_size);
        let action = self.on_etcd_answer(pending, answer);
        if matches!(action, Action::Continue) && self.pending.is_none() {
            let resumed = abi::resume(response_phase);
            if let Err(s) = resumed {
                warn!("{} certbound: cannot resume the stream: {s:?}", self.log_prefix());
            }
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return self.refuse(OAuthError::not_configured());
        };
        // Only certbound says which certificate a request proved, on every route.
        for h in &config.thumbprint_headers {
            let _ = host::set_request_header(h, None);
        }
        let full_path = host::request_header(":path").unwrap_or_default();
        let endpoint = match config.endpoints.classify(&full_path) {
            Ok(e) => e,
            Err(ambiguous) => {
                self.read_request_id();
                return self.refuse(OAuthError::invalid_request(Reason::AmbiguousPath, ambiguous.description));
            }
        };
        let route = match endpoint {
            Endpoint::Protected(ref r) => Some(r.clone()),
            // Per-route protection in Envoy's own route configuration.
            Endpoint::Other if config.route_metadata => host::route_metadata("unbound_tokens").map(|unbound| {
                let missing = host::route_metadata("missing_token");
                let other = host::route_metadata("other_schemes");
                let header = host::route_metadata("thumbprint_header");
                Rc::new(resource::route_from_metadata(
                    &unbound,
                    missing.as_deref(),
                    other.as_deref(),
                    header.as_deref(),
                ))
            }),
            _ => None,
        };
        let is_token = endpoint == Endpoint::Token;
        // The certificate is needed on the token endpoint and protected routes;
        // elsewhere only to strip untrusted headers and forward the verified one.
        let sources = &config.sources;
        let needs_certificate = is_token || route.is_some() || !sources.headers.is_empty() || sources.forward.is_some();
        if needs_certificate || endpoint != Endpoint::Other {
            self.read_request_id();
        }
        let resolved = if needs_certificate { self.resolve_certificate(&config) } else { Ok(()) };
        if let Err(problem) = resolved {
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
            warn!("{} certbound: {}; certificate headers removed", self.log_prefix(), problem.description);
            self.metrics.refused(problem.reason);
            for h in &config.sources.headers {
                let _ = host::set_request_header(&h.name, None);
            }
        }
        if let Some(route) = route {
            if let Some(h) = &route.thumbprint_header {
                let _ = host::set_request_header(h, None);
            }
            let tag = self.log_prefix();
            let settings = resource_flow::Settings {
                max_body_bytes: config.max_body_bytes,
                fail_closed: match &config.store {
                    StoreConfig::Etcd(cfg) => cfg.fail_closed,
                    StoreConfig::SharedData { .. } => true,
                },
                jwt_claims: config.jwt_claims.as_ref(),
                certificate: self.presented.as_ref().map(|p| p.thumbprint),
            };
            let (step, flow) = ResourceFlow::start(
                &mut host::WasmHost { metrics: &self.metrics, tag: &tag },
                route,
                &full_path,
                end_of_stream,
                settings,
            );
            if let Some(flow) = flow {
                self.awaiting_request_end = flow.awaiting_request_end();
                self.flow = StreamFlow::Resource(flow);
            }
            return self.carry_out(step);
        }
        match endpoint {
            Endpoint::Token => {
                let tag = self.log_prefix();
                let settings = token_flow::Settings {
                    max_body_bytes: config.max_body_bytes,
                    binding: config.binding.clone(),
                    certificate: self.presented.clone(),
                };
                match TokenFlow::start(
                    &mut host::WasmHost { metrics: &self.metrics, tag: &tag },
                    end_of_stream,
                    settings,
                ) {
                    Err(e) => self.refuse(e),
                    Ok(None) => Action::Continue,
                    Ok(Some(flow)) => {
                        self.awaiting_request_end = flow.awaiting_request_end();
                        self.flow = StreamFlow::Token(Box::new(flow));
                        Action::Pause
                    }
                }
            }
            Endpoint::Introspection => {
                let tag = self.log_prefix();
                let mut h = host::WasmHost { metrics: &self.metrics, tag: &tag };
                let settings = introspection_flow::Settings {
                    max_body_bytes: config.max_body_bytes,
                    wso2_member: config.introspection_wso2_member,
                    // Shared data that cannot be read is refused too: an answer without cnf would pass a bound token as unbound.
                    fail_closed: match &config.store {
                        StoreConfig::Etcd(cfg) => cfg.fail_closed,
                        StoreConfig::SharedData { .. } => true,
                    },
                };
                match IntrospectionFlow::start(&mut h, end_of_stream, settings) {
                    Err(e) => self.refuse(e),
                    Ok(None) => Action::Continue,
                    Ok(Some(flow)) => {
                        self.awaiting_request_end = flow.awaiting_request_end();
                        self.flow = StreamFlow::Introspect(flow);
                        Action::Pause
                    }
                }
            }
            Endpoint::Discovery => {
                let tag = self.log_prefix();
                let mut h = host::WasmHost { metrics: &self.metrics, tag: &tag };
                let method = host::request_header(":method");
                let (max, mtls_host) = (config.max_body_bytes, config.discovery.mtls_host.clone());
                if let Some(flow) = DiscoveryFlow::start(&mut h, method.as_deref(), max, mtls_host) {
                    self.flow = StreamFlow::Discovery(flow);
                }
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.request_body_size = body_size;
        let Some(config) = self.config.clone() else { return Action::Continue };
        match &self.flow {
            StreamFlow::Token(_) => self.token(|f, h| f.request_body(h, &config.clients, body_size, end_of_stream)),
            StreamFlow::Introspect(_) => self.introspection(|f, h| f.request_body(h, body_size, end_of_stream)),
            StreamFlow::Resource(_) => self.resource(|f, h| f.request_body(h, body_size, end_of_stream)),
            // Waiting for a lookup: hold the body until it is decided.
            _ => Action::Continue,
        }
    }

    /// Trailers end the request without an end-of-stream body callback (the
    /// SDK's default would let a held request go on undecided): whatever
    /// waited for the end of the body is decided here.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.awaiting_request_end {
            let size = self.request_body_size;
            return self.on_http_request_body(size, true);
        }
        if self.pending.is_some() {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        match self.flow {
            StreamFlow::Token(_) => self.token(|f, h| f.response_headers(h, end_of_stream)),
            StreamFlow::Introspect(_) => self.introspection(|f, h| f.response_headers(h, end_of_stream)),
            StreamFlow::Discovery(_) => self.discovery(|f, h| f.response_headers(h, end_of_stream)),
            _ => Action::Continue,
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.response_body_size = body_size;
        match self.flow {
            StreamFlow::Token(_) => self.token(|f, h| f.response_body(h, body_size, end_of_stream)),
            StreamFlow::Introspect(_) => self.introspection(|f, h| f.response_body(h, body_size, end_of_stream)),
            StreamFlow::Discovery(_) => self.discovery(|f, h| f.response_body(h, body_size, end_of_stream)),
            _ => Action::Continue,
        }
    }

    /// Trailers end the response: a held token response is bound (or an
    /// introspection or metadata response patched) before any of it goes on.
    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.awaiting_response_end {
            let size = self.response_body_size;
            return self.on_http_response_body(size, true);
        }
        if self.pending.is_some() {
            return Action::Pause;
        }
        Action::Continue
    }
}
