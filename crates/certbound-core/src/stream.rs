//! One HTTP stream, whatever the shell: routes the token endpoint, the
//! introspection endpoint, AS metadata and protected resource routes to
//! their flows, serves the flows' store lookups and writes (from the shared
//! map, or etcd through a callout) and carries out their steps. The `.wasm`
//! shell and the dynamic-module shell turn Envoy's callbacks into calls of
//! [`Stream`] and its [`Action`] back into the host's.

use crate::binding::{ToBind, TokenKeys};
use crate::cert::Thumbprint;
use crate::cert_header;
use crate::cert_source::{self, Event, Facts};
use crate::config::{Config, EtcdConfig, StoreConfig};
use crate::counter::Counter;
use crate::decision::{Decision, Flow, Outcome};
use crate::error::{OAuthError, Reason};
use crate::flow::discovery::DiscoveryFlow;
use crate::flow::introspection::{self as introspection_flow, IntrospectionFlow};
use crate::flow::resource::{self as resource_flow, ResourceFlow};
use crate::flow::token::{self as token_flow, TokenFlow};
use crate::flow::{Attribute, Body, Held, Host, HostError, Step};
use crate::path::Endpoint;
use crate::resource::{self, ResourceError};
use crate::shared::SharedData;
use crate::store::ops::{Answer, Answered, Looked, NoClock, Store, Stored};
use crate::store::SlotTable;
use crate::vm_cache::VmCache;
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

/// What the shell tells Envoy about what it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// What the shell does after a callout answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCallout {
    /// The stream stays as it is (still held, or already answered).
    Nothing,
    /// The held stream goes on: the request, or the response when `response_phase`.
    Resume { response_phase: bool },
}

/// What a stream asks of its shell beyond what a flow asks ([`Host`]):
/// local replies, the connection's facts, the shared map, callouts, counters.
pub trait StreamHost: Host + SharedData {
    /// Answers the request locally (the stream is then decided).
    fn send_local_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError>;
    /// Ends the stream without an answer (when a local reply could not be sent).
    fn reset(&mut self);
    /// Every request header (name, value), repeated names kept; values not UTF-8 become U+FFFD.
    fn request_headers(&mut self) -> Vec<(String, String)>;
    /// A string under `filter_metadata.certbound` of the matched route.
    fn route_metadata(&mut self, key: &str) -> Option<String>;
    /// Sends a POST to etcd's JSON gateway through the configured cluster; the
    /// answer comes back through [`Stream::callout_done`] with the returned id.
    fn etcd_call(&mut self, cfg: &EtcdConfig, path: &str, body: &[u8]) -> Result<u64, String>;
    /// One refusal, counted under its reason.
    fn refused(&mut self, reason: Reason);
    /// One refusal a report-only route did not carry out, counted under its reason.
    fn reported(&mut self, reason: Reason);
    /// What certbound decided about this request: written to Envoy's dynamic
    /// metadata (namespace `certbound`), or filter state where the host cannot write metadata.
    fn decided(&mut self, decision: &Decision);
    /// The slot table now has `used` slots holding a binding (the gauge).
    fn slots_used(&mut self, used: u64);
    /// A log line as it is (already prefixed with the stream's ids).
    fn log_line(&mut self, level: log::Level, line: &str);
}

/// The request as certbound sees it: its headers, read from the host once
/// (one call, the whole map) and kept with the writes certbound makes, so
/// every fact after the first costs no host call; and the ids its log lines
/// start with, `[stream-id request-id]`.
struct Ids {
    id: u32,
    request_id: Option<String>,
    headers: Option<Vec<(String, String)>>,
}

impl Ids {
    fn headers(&mut self, h: &mut impl StreamHost) -> &[(String, String)] {
        self.headers.get_or_insert_with(|| h.request_headers())
    }

    /// A request header's value, repeated ones joined by `,` (as Envoy folds them).
    fn header(&mut self, h: &mut impl StreamHost, name: &str) -> Option<String> {
        let mut values = self.headers(h).iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let first = values.next()?;
        Some(values.fold(first.to_string(), |mut all, v| {
            all.push(',');
            all.push_str(v);
            all
        }))
    }

    /// Sets (or with `None` removes) a request header; removing one the request does not carry costs nothing.
    fn set_header(&mut self, h: &mut impl StreamHost, name: &str, value: Option<&str>) -> Result<(), HostError> {
        if value.is_none() && !self.headers(h).iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
            return Ok(());
        }
        h.set_request_header(name, value)?;
        if let Some(map) = &mut self.headers {
            map.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            if let Some(v) = value {
                map.push((name.to_string(), v.to_string()));
            }
        }
        Ok(())
    }

    fn read_request_id(&mut self, h: &mut impl StreamHost) {
        if self.request_id.is_none() {
            self.request_id = Some(
                self.header(h, "x-request-id")
                    .map(|id| id.chars().filter(|c| c.is_ascii_graphic()).take(64).collect())
                    .unwrap_or_else(|| "-".into()),
            );
        }
    }

    fn prefix(&mut self, h: &mut impl StreamHost) -> String {
        self.read_request_id(h);
        format!("[{} {}]", self.id, self.request_id.as_deref().unwrap_or("-"))
    }
}

/// An etcd callout's answer as both shells get it (its `:status` and body):
/// the body of a 200, or why there is none.
pub fn callout_result(status: Option<&[u8]>, body: Vec<u8>) -> Result<Vec<u8>, String> {
    if status == Some(&b"200"[..]) {
        return Ok(body);
    }
    let text = String::from_utf8_lossy(body.get(..200.min(body.len())).unwrap_or_default()).into_owned();
    Err(format!("status {}: {text}", String::from_utf8_lossy(status.unwrap_or_default())))
}

/// What a flow said about the request while it ran: its client, and the
/// decision its counters tell (written once the event is over).
#[derive(Default)]
struct Record {
    client_id: Option<String>,
    outcome: Option<Outcome>,
}

/// The decision a flow's counter tells, if it tells one.
fn outcome_of(counter: Counter) -> Option<Outcome> {
    match counter {
        Counter::ClientAuthenticated => Some(Outcome::Authenticated),
        Counter::TokensBound => Some(Outcome::Bound),
        Counter::UnboundTokenResponses => Some(Outcome::Unbound),
        Counter::IntrospectionPatched | Counter::MetadataPatched => Some(Outcome::Patched),
        Counter::IntrospectionUnpatched | Counter::MetadataUnpatched => Some(Outcome::Unpatched),
        Counter::IntrospectionDeactivated => Some(Outcome::Deactivated),
        Counter::ResourceAllowed => Some(Outcome::Allowed),
        Counter::ResourceAllowedUnbound => Some(Outcome::AllowedUnbound),
        Counter::UntrustedHeaderRemoved
        | Counter::CertificateConflicts
        | Counter::StoreErrors
        | Counter::StoreRetries => None,
    }
}

/// A [`Host`] whose log lines carry the stream's prefix, and which notes
/// what the flow decided.
struct Tagged<'a, H> {
    host: &'a mut H,
    ids: &'a mut Ids,
    record: &'a mut Record,
}

impl<H: StreamHost> Host for Tagged<'_, H> {
    fn request_header(&mut self, name: &str) -> Option<String> {
        self.ids.header(self.host, name)
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        self.ids.set_header(self.host, name, value)
    }
    fn response_header(&mut self, name: &str) -> Option<String> {
        self.host.response_header(name)
    }
    fn set_response_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        self.host.set_response_header(name, value)
    }
    fn body(&mut self, which: Body, size: usize) -> Result<Vec<u8>, HostError> {
        self.host.body(which, size)
    }
    fn replace_body(&mut self, which: Body, size: usize, data: &[u8]) -> Result<(), HostError> {
        self.host.replace_body(which, size, data)
    }
    fn now(&mut self) -> Result<i64, HostError> {
        self.host.now()
    }
    fn attribute(&mut self, attribute: Attribute<'_>) -> Result<Option<Vec<u8>>, HostError> {
        self.host.attribute(attribute)
    }
    fn count(&mut self, counter: Counter) {
        if let Some(o) = outcome_of(counter) {
            self.record.outcome = Some(o);
        }
        self.host.count(counter)
    }
    fn log(&mut self, level: log::Level, message: &str) {
        if level <= log::max_level() {
            let prefix = self.ids.prefix(self.host);
            self.host.log_line(level, &format!("{prefix} {message}"));
        }
    }
    fn client(&mut self, client_id: &str) {
        self.record.client_id = Some(crate::client_auth::printable(client_id));
    }
}

enum StreamFlow {
    /// Not an endpoint certbound acts on.
    Other,
    /// A local reply was sent; nothing more to do.
    Answered,
    Token(Box<TokenFlow>),
    Introspect(IntrospectionFlow),
    Resource(ResourceFlow),
    Discovery(DiscoveryFlow),
}

/// One HTTP stream's state, from its request headers to its end.
pub struct Stream {
    ids: Ids,
    record: Record,
    /// Which flow judges the request (from the endpoint its path names).
    kind: Flow,
    config: Option<Rc<Config>>,
    /// Where bindings are looked up and stored, and the callout out for them.
    store: Store,
    flow: StreamFlow,
    /// The certificate this request presented, from its trusted source.
    presented: Option<cert_source::Presented>,
    /// The request is held until its end (body end or trailers) to be judged.
    awaiting_request_end: bool,
    /// The response is held until its end to be bound or patched.
    awaiting_response_end: bool,
    /// Bytes of the request / response body buffered so far (trailers end a body without saying its size).
    request_body_size: usize,
    response_body_size: usize,
}

/// The certificate of the TLS connection Envoy terminated, from its SHA-256
/// (Envoy attribute `connection.sha256_peer_certificate_digest`, hex).
fn connection_certificate(h: &mut impl Host) -> Result<Option<Thumbprint>, String> {
    let raw = h
        .attribute(Attribute::PeerCertificateDigest)
        .map_err(|s| format!("cannot read connection.sha256_peer_certificate_digest: host status {}", s.0))?;
    let Some(raw) = raw.filter(|r| !r.is_empty()) else { return Ok(None) };
    let hex = String::from_utf8(raw).map_err(|_| "peer certificate digest is not text".to_string())?;
    Thumbprint::from_hex_digest(&hex).map_err(|e| e.to_string())
}

fn string_attribute(h: &mut impl Host, attribute: Attribute<'_>) -> Option<String> {
    let raw = h.attribute(attribute).ok().flatten()?;
    String::from_utf8(raw).ok().filter(|s| !s.is_empty())
}

/// The downstream peer's address (`source.address`, `ip:port` or `ip`).
fn source_ip(h: &mut impl Host) -> Option<IpAddr> {
    let addr = string_attribute(h, Attribute::SourceAddress)?;
    addr.parse::<SocketAddr>().map(|a| a.ip()).ok().or_else(|| addr.parse::<IpAddr>().ok())
}

impl Stream {
    pub fn new(id: u32, config: Option<Rc<Config>>, table: SlotTable, vm_cache: Rc<RefCell<VmCache>>) -> Self {
        Stream {
            ids: Ids { id, request_id: None, headers: None },
            record: Record::default(),
            kind: Flow::Other,
            store: Store::new(config.clone(), table, vm_cache),
            config,
            flow: StreamFlow::Other,
            presented: None,
            awaiting_request_end: false,
            awaiting_response_end: false,
            request_body_size: 0,
            response_body_size: 0,
        }
    }

    /// True while a callout this stream waits for is outstanding.
    pub fn waiting_for_callout(&self) -> bool {
        self.store.waiting()
    }

    fn warn(&mut self, h: &mut impl StreamHost, message: &str) {
        if log::Level::Warn <= log::max_level() {
            let prefix = self.ids.prefix(h);
            h.log_line(log::Level::Warn, &format!("{prefix} {message}"));
        }
    }

    /// Answers with an OAuth error, logs why and counts it.
    fn refuse(&mut self, h: &mut impl StreamHost, e: OAuthError) -> Action {
        self.reply(h, e.status, e.headers(), e.body(), e.reason, e.error, &e.description)
    }

    /// Answers a protected-resource request with an RFC 6750 error.
    fn refuse_resource(&mut self, h: &mut impl StreamHost, e: ResourceError) -> Action {
        self.reply(h, e.status, e.headers(), e.body(), e.reason, e.error.unwrap_or("no_token"), &e.description)
    }

    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        h: &mut impl StreamHost,
        status: u32,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        reason: Reason,
        error: &str,
        description: &str,
    ) -> Action {
        self.warn(h, &format!("certbound refused: {error} ({}): {description}", reason.as_str()));
        h.refused(reason);
        self.write_decision(h, Outcome::Refused, Some(reason));
        self.flow = StreamFlow::Answered;
        self.store.forget();
        self.awaiting_request_end = false;
        self.awaiting_response_end = false;
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Err(status) = h.send_local_response(status, &headers, &body) {
            self.warn(h, &format!("certbound could not send its reply: host status {}", status.0));
            // Without a reply the request must still not pass: reset it.
            h.reset();
        }
        Action::Pause
    }

    /// Writes what was decided about this request (never a token).
    fn write_decision(&mut self, h: &mut impl StreamHost, outcome: Outcome, reason: Option<Reason>) {
        h.decided(&Decision {
            flow: self.kind,
            outcome,
            reason,
            client_id: self.record.client_id.clone(),
            x5t: self.presented.as_ref().map(|p| p.thumbprint.x5t_s256()),
        });
    }

    /// A report-only route would have refused the request: logged, counted and
    /// written as reported, and the request goes on as if allowed.
    fn report(&mut self, h: &mut impl StreamHost, e: ResourceError) -> Action {
        self.warn(
            h,
            &format!(
                "certbound report-only: would refuse {} ({}): {}",
                e.error.unwrap_or("no_token"),
                e.reason.as_str(),
                e.description
            ),
        );
        h.reported(e.reason);
        self.write_decision(h, Outcome::Reported, Some(e.reason));
        self.flow = StreamFlow::Other;
        self.store.forget();
        self.awaiting_request_end = false;
        self.awaiting_response_end = false;
        Action::Continue
    }

    /// Finds the certificate this request presented, removes certificate
    /// headers whose sender is not trusted (and the loser of a conflict), and
    /// forwards the verified certificate upstream when configured.
    fn resolve_certificate(
        &mut self,
        h: &mut impl StreamHost,
        config: &Config,
    ) -> Result<(), cert_source::CertProblem> {
        let sources = &config.sources;
        let connection = if sources.connection {
            connection_certificate(h).unwrap_or_else(|e| {
                self.warn(h, &format!("certbound: {e}; the connection counts as having no certificate"));
                None
            })
        } else {
            None
        };
        let all_headers = if sources.headers.is_empty() { Vec::new() } else { self.ids.headers(h).to_vec() };
        let values: Vec<Vec<&str>> = sources
            .headers
            .iter()
            .map(|s| {
                all_headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(&s.name)).map(|(_, v)| v.as_str()).collect()
            })
            .collect();
        let any_header = values.iter().any(|v| !v.is_empty());
        let (peer_subject, peer_san) = if any_header {
            (string_attribute(h, Attribute::PeerSubject), string_attribute(h, Attribute::PeerDnsSan))
        } else {
            (None, None)
        };
        let facts = Facts {
            connection,
            source_ip: if any_header { source_ip(h) } else { None },
            peer_subject: peer_subject.as_deref(),
            peer_dns_san: peer_san.as_deref(),
            headers: values,
            // Only a certificate read from a header has dates to check.
            now: if any_header { h.now().unwrap_or_default() } else { 0 },
        };
        let resolution = cert_source::resolve(sources, &facts)?;
        for name in &resolution.remove {
            let _ = self.ids.set_header(h, name, None);
        }
        for event in &resolution.events {
            match event {
                Event::UntrustedHeaderRemoved(name) => {
                    self.warn(h, &format!("certbound removed {name}: its sender is not trusted by the config"));
                    h.count(Counter::UntrustedHeaderRemoved);
                }
                Event::Conflict { kept } => {
                    self.warn(
                        h,
                        &format!(
                            "certbound: the connection and a trusted header name different certificates; kept {kept:?}"
                        ),
                    );
                    h.count(Counter::CertificateConflicts);
                }
            }
        }
        if let Some(fwd) = &sources.forward {
            match resolution.presented.as_ref().and_then(|p| p.cert.as_ref()).map(|c| &c.der) {
                // One write: the verified certificate replaces whatever the client sent.
                Some(der) => {
                    let _ = self.ids.set_header(h, &fwd.name, Some(&cert_header::encode(der, fwd.format)));
                }
                None => {
                    let _ = self.ids.set_header(h, &fwd.name, None);
                }
            }
        }
        self.presented = resolution.presented;
        Ok(())
    }

    // ------------------------------------------------------------ running a flow's event

    /// Runs one event of the stream's flow (found by `pick`), notes whether it
    /// holds the stream until its end, and carries out the step it returns.
    fn run<F: Held, H: StreamHost>(
        &mut self,
        h: &mut H,
        pick: fn(&mut StreamFlow) -> Option<&mut F>,
        event: impl FnOnce(&mut F, &mut Tagged<'_, H>) -> Step,
    ) -> Action {
        let Some(flow) = pick(&mut self.flow) else { return Action::Continue };
        let step = event(flow, &mut Tagged { host: h, ids: &mut self.ids, record: &mut self.record });
        self.awaiting_request_end = flow.awaiting_request_end();
        self.awaiting_response_end = flow.awaiting_response_end();
        self.flush_decision(h);
        self.carry_out(h, step)
    }

    fn resource<H: StreamHost>(
        &mut self,
        h: &mut H,
        event: impl FnOnce(&mut ResourceFlow, &mut Tagged<'_, H>) -> Step,
    ) -> Action {
        fn pick(flow: &mut StreamFlow) -> Option<&mut ResourceFlow> {
            match flow {
                StreamFlow::Resource(f) => Some(f),
                _ => None,
            }
        }
        self.run(h, pick, event)
    }

    fn token<H: StreamHost>(
        &mut self,
        h: &mut H,
        event: impl FnOnce(&mut TokenFlow, &mut Tagged<'_, H>) -> Step,
    ) -> Action {
        fn pick(flow: &mut StreamFlow) -> Option<&mut TokenFlow> {
            match flow {
                StreamFlow::Token(f) => Some(&mut **f),
                _ => None,
            }
        }
        self.run(h, pick, event)
    }

    fn introspection<H: StreamHost>(
        &mut self,
        h: &mut H,
        event: impl FnOnce(&mut IntrospectionFlow, &mut Tagged<'_, H>) -> Step,
    ) -> Action {
        fn pick(flow: &mut StreamFlow) -> Option<&mut IntrospectionFlow> {
            match flow {
                StreamFlow::Introspect(f) => Some(f),
                _ => None,
            }
        }
        self.run(h, pick, event)
    }

    fn discovery<H: StreamHost>(
        &mut self,
        h: &mut H,
        event: impl FnOnce(&mut DiscoveryFlow, &mut Tagged<'_, H>) -> Step,
    ) -> Action {
        fn pick(flow: &mut StreamFlow) -> Option<&mut DiscoveryFlow> {
            match flow {
                StreamFlow::Discovery(f) => Some(f),
                _ => None,
            }
        }
        self.run(h, pick, event)
    }

    /// Writes the decision a flow's counter told during the last event, if any.
    fn flush_decision(&mut self, h: &mut impl StreamHost) {
        if let Some(outcome) = self.record.outcome.take() {
            self.write_decision(h, outcome, None);
        }
    }

    fn carry_out(&mut self, h: &mut impl StreamHost, step: Step) -> Action {
        match step {
            Step::Continue => Action::Continue,
            Step::Pause => Action::Pause,
            Step::Reply(e) => self.refuse(h, e),
            Step::RefuseResource(e) => self.refuse_resource(h, e),
            Step::Report(e) => self.report(h, e),
            Step::Lookup(keys) => self.lookup(h, keys),
            Step::Bind(entries) => self.bind(h, entries),
        }
    }

    // ------------------------------------------------------------ the store

    /// The flow asked for a binding: answered at once, or when etcd answers (the stream stays held).
    fn lookup(&mut self, h: &mut impl StreamHost, keys: TokenKeys) -> Action {
        match self.store.lookup(h, keys) {
            Err(NoClock) => self.refuse(h, OAuthError::internal("the proxy clock is unavailable")),
            Ok(Answer::Later) => Action::Pause,
            Ok(Answer::Now(result)) => self.deliver_lookup(h, result),
        }
    }

    /// Gives the store's answer to the flow that asked.
    fn deliver_lookup(&mut self, h: &mut impl StreamHost, result: Looked) -> Action {
        let Some(config) = self.config.clone() else { return Action::Continue };
        match self.flow {
            StreamFlow::Introspect(_) => self.introspection(h, |f, h| f.looked_up(h, result)),
            StreamFlow::Resource(_) => self.resource(h, |f, h| f.looked_up(h, &config.clients, result)),
            StreamFlow::Token(_) => self.token(h, |f, h| f.looked_up(h, result)),
            _ => Action::Continue,
        }
    }

    /// The token flow asked for its bindings to be stored: at once, or when
    /// etcd has them (the AS's answer stays held).
    fn bind(&mut self, h: &mut impl StreamHost, entries: Vec<ToBind>) -> Action {
        match self.store.bind(h, entries) {
            Err(NoClock) => self.refuse(h, OAuthError::internal("the proxy clock is unavailable")),
            Ok(Answer::Later) => Action::Pause,
            Ok(Answer::Now(result)) => self.deliver_stored(h, result),
        }
    }

    /// Gives the store's outcome for the bindings to the token flow.
    fn deliver_stored(&mut self, h: &mut impl StreamHost, result: Stored) -> Action {
        self.token(h, |f, h| f.stored(h, result))
    }

    /// An etcd callout answered: `answer` is the body of a 200, or why there is none.
    pub fn callout_done(&mut self, h: &mut impl StreamHost, id: u64, answer: Result<Vec<u8>, String>) -> AfterCallout {
        let response_phase = self.store.writing();
        let action = match self.store.callout_done(h, id, answer) {
            Answered::Unexpected { waiting: None } => {
                self.warn(h, &format!("certbound: answer to unknown call {id}"));
                return AfterCallout::Nothing;
            }
            Answered::Unexpected { waiting: Some(w) } => {
                self.warn(h, &format!("certbound: answer to call {id}, waiting for {w}"));
                return AfterCallout::Nothing;
            }
            Answered::Later => return AfterCallout::Nothing,
            Answered::Lookup(result) => self.deliver_lookup(h, result),
            Answered::Stored(result) => self.deliver_stored(h, result),
        };
        if action == Action::Continue && !self.store.waiting() {
            AfterCallout::Resume { response_phase }
        } else {
            AfterCallout::Nothing
        }
    }

    // ------------------------------------------------------------ Envoy's callbacks

    pub fn request_headers<H: StreamHost>(&mut self, h: &mut H, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return self.refuse(h, OAuthError::not_configured());
        };
        // Only certbound says which certificate a request proved, on every route
        // (removing a header the request does not carry costs no host call).
        for name in &config.thumbprint_headers {
            let _ = self.ids.set_header(h, name, None);
        }
        let full_path = self.ids.header(h, ":path").unwrap_or_default();
        let endpoint = match config.endpoints.classify(&full_path) {
            Ok(e) => e,
            Err(ambiguous) => {
                return self.refuse(h, OAuthError::invalid_request(Reason::AmbiguousPath, ambiguous.description));
            }
        };
        let route = match endpoint {
            Endpoint::Protected(ref r) => Some(r.clone()),
            // Per-route protection in Envoy's own route configuration.
            Endpoint::Other if config.route_metadata => h.route_metadata("unbound_tokens").map(|unbound| {
                let missing = h.route_metadata("missing_token");
                let other = h.route_metadata("other_schemes");
                let header = h.route_metadata("thumbprint_header");
                let enforcement = h.route_metadata("enforcement");
                Rc::new(resource::route_from_metadata(
                    &unbound,
                    missing.as_deref(),
                    other.as_deref(),
                    header.as_deref(),
                    enforcement.as_deref(),
                ))
            }),
            _ => None,
        };
        let is_token = endpoint == Endpoint::Token;
        self.kind = match (&endpoint, &route) {
            (Endpoint::Token, _) => Flow::Token,
            (Endpoint::Introspection, _) => Flow::Introspection,
            (Endpoint::Discovery, _) => Flow::Discovery,
            (_, Some(_)) => Flow::Resource,
            _ => Flow::Other,
        };
        // The certificate is needed on the token endpoint and protected routes;
        // elsewhere only to strip untrusted headers and forward the verified one.
        let sources = &config.sources;
        let needs_certificate = is_token || route.is_some() || !sources.headers.is_empty() || sources.forward.is_some();
        // The token, introspection and metadata endpoints log in the response
        // phase too, when request headers may be gone: their request id is read now.
        // Elsewhere (the hot path of protected routes) only when a line needs it.
        if matches!(endpoint, Endpoint::Token | Endpoint::Introspection | Endpoint::Discovery) {
            self.ids.read_request_id(h);
        }
        let resolved = if needs_certificate { self.resolve_certificate(h, &config) } else { Ok(()) };
        if let Err(problem) = resolved {
            if is_token {
                return self.refuse(
                    h,
                    if problem.bad_request {
                        OAuthError::invalid_request(problem.reason, problem.description)
                    } else {
                        OAuthError::invalid_client(problem.reason, problem.description)
                    },
                );
            }
            if let Some(route) = &route {
                let e = ResourceError {
                    status: if problem.bad_request { 400 } else { 401 },
                    error: Some(if problem.bad_request { "invalid_request" } else { "invalid_token" }),
                    description: problem.description,
                    reason: problem.reason,
                };
                if route.enforcement == resource::Enforcement::Report {
                    return self.report(h, e);
                }
                return self.refuse_resource(h, e);
            }
            // Elsewhere the unusable certificate headers are dropped; the request is not about them.
            self.warn(h, &format!("certbound: {}; certificate headers removed", problem.description));
            h.refused(problem.reason);
            for s in &config.sources.headers {
                let _ = self.ids.set_header(h, &s.name, None);
            }
        }
        if let Some(route) = route {
            // (The route's thumbprint header is removed by the flow: a route from
            // Envoy's route metadata is not among config.thumbprint_headers.)
            let settings = resource_flow::Settings {
                max_body_bytes: config.max_body_bytes,
                fail_closed: match &config.store {
                    StoreConfig::Etcd(cfg) => cfg.fail_closed,
                    StoreConfig::SharedData { .. } => true,
                },
                jwt_claims: config.jwt_claims.as_ref(),
                certificate: self.presented.as_ref().map(|p| p.thumbprint),
                clients: &config.clients,
            };
            let (step, flow) = ResourceFlow::start(
                &mut Tagged { host: h, ids: &mut self.ids, record: &mut self.record },
                route,
                &full_path,
                end_of_stream,
                settings,
            );
            if let Some(flow) = flow {
                self.awaiting_request_end = flow.awaiting_request_end();
                self.flow = StreamFlow::Resource(flow);
            }
            self.flush_decision(h);
            return self.carry_out(h, step);
        }
        match endpoint {
            Endpoint::Token => {
                let settings = token_flow::Settings {
                    max_body_bytes: config.max_body_bytes,
                    binding: config.binding.clone(),
                    certificate: self.presented.clone(),
                };
                match TokenFlow::start(
                    &mut Tagged { host: h, ids: &mut self.ids, record: &mut self.record },
                    end_of_stream,
                    settings,
                ) {
                    Err(e) => self.refuse(h, e),
                    Ok(None) => Action::Continue,
                    Ok(Some(flow)) => {
                        self.awaiting_request_end = flow.awaiting_request_end();
                        self.flow = StreamFlow::Token(Box::new(flow));
                        Action::Pause
                    }
                }
            }
            Endpoint::Introspection => {
                let settings = introspection_flow::Settings {
                    max_body_bytes: config.max_body_bytes,
                    wso2_member: config.introspection_wso2_member,
                    // Shared data that cannot be read is refused too: an answer without cnf would pass a bound token as unbound.
                    fail_closed: match &config.store {
                        StoreConfig::Etcd(cfg) => cfg.fail_closed,
                        StoreConfig::SharedData { .. } => true,
                    },
                };
                match IntrospectionFlow::start(
                    &mut Tagged { host: h, ids: &mut self.ids, record: &mut self.record },
                    end_of_stream,
                    settings,
                ) {
                    Err(e) => self.refuse(h, e),
                    Ok(None) => Action::Continue,
                    Ok(Some(flow)) => {
                        self.awaiting_request_end = flow.awaiting_request_end();
                        self.flow = StreamFlow::Introspect(flow);
                        Action::Pause
                    }
                }
            }
            Endpoint::Discovery => {
                let method = self.ids.header(h, ":method");
                let (max, mtls_host) = (config.max_body_bytes, config.discovery.mtls_host.clone());
                if let Some(flow) = DiscoveryFlow::start(
                    &mut Tagged { host: h, ids: &mut self.ids, record: &mut self.record },
                    method.as_deref(),
                    max,
                    mtls_host,
                ) {
                    self.flow = StreamFlow::Discovery(flow);
                }
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    /// A request body chunk arrived; `body_size` is what is buffered so far.
    pub fn request_body(&mut self, h: &mut impl StreamHost, body_size: usize, end_of_stream: bool) -> Action {
        self.request_body_size = body_size;
        let Some(config) = self.config.clone() else { return Action::Continue };
        match &self.flow {
            StreamFlow::Token(_) => self.token(h, |f, h| f.request_body(h, &config.clients, body_size, end_of_stream)),
            StreamFlow::Introspect(_) => self.introspection(h, |f, h| f.request_body(h, body_size, end_of_stream)),
            StreamFlow::Resource(_) => {
                self.resource(h, |f, h| f.request_body(h, &config.clients, body_size, end_of_stream))
            }
            // Not held by a flow (a flow waiting for a lookup answers Pause itself).
            _ => Action::Continue,
        }
    }

    /// Trailers end the request without an end-of-stream body event: whatever
    /// waited for the end of the body is decided here.
    pub fn request_trailers(&mut self, h: &mut impl StreamHost) -> Action {
        if self.awaiting_request_end {
            let size = self.request_body_size;
            return self.request_body(h, size, true);
        }
        if self.store.waiting() {
            return Action::Pause;
        }
        Action::Continue
    }

    pub fn response_headers(&mut self, h: &mut impl StreamHost, end_of_stream: bool) -> Action {
        match self.flow {
            StreamFlow::Token(_) => self.token(h, |f, h| f.response_headers(h, end_of_stream)),
            StreamFlow::Introspect(_) => self.introspection(h, |f, h| f.response_headers(h, end_of_stream)),
            StreamFlow::Discovery(_) => self.discovery(h, |f, h| f.response_headers(h, end_of_stream)),
            _ => Action::Continue,
        }
    }

    /// A response body chunk arrived; `body_size` is what is buffered so far.
    pub fn response_body(&mut self, h: &mut impl StreamHost, body_size: usize, end_of_stream: bool) -> Action {
        self.response_body_size = body_size;
        let Some(config) = self.config.clone() else { return Action::Continue };
        match self.flow {
            StreamFlow::Token(_) => self.token(h, |f, h| f.response_body(h, body_size, end_of_stream)),
            StreamFlow::Introspect(_) => {
                self.introspection(h, |f, h| f.response_body(h, &config.clients, body_size, end_of_stream))
            }
            StreamFlow::Discovery(_) => self.discovery(h, |f, h| f.response_body(h, body_size, end_of_stream)),
            _ => Action::Continue,
        }
    }

    /// Trailers end the response: a held token response is bound (or an
    /// introspection or metadata response patched) before any of it goes on.
    pub fn response_trailers(&mut self, h: &mut impl StreamHost) -> Action {
        if self.awaiting_response_end {
            let size = self.response_body_size;
            return self.response_body(h, size, true);
        }
        if self.store.waiting() {
            return Action::Pause;
        }
        Action::Continue
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! `Stream` over a host in memory: the flows' [`MockHost`], a
    //! [`MemoryData`] shared map, recorded local replies, etcd calls with ids
    //! the test controls, refusals, resets, and a switch to fail the local reply.
    use super::*;
    use crate::binding::Binding;
    use crate::binding::{key_for_token, TokenKind};
    use crate::flow::mock::MockHost;
    use crate::keys::ETCD_RANGE as RANGE;
    use crate::shared::{MemoryData, SetError};
    use crate::store::{self, shared};
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use std::collections::HashMap;

    const NOW: i64 = 1_800_000_000;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Reply {
        pub status: u32,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Reply {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap_or_default()
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct EtcdCall {
        pub id: u64,
        pub cluster: String,
        pub path: String,
        pub body: Vec<u8>,
    }

    /// A [`StreamHost`] in memory.
    #[derive(Debug, Default)]
    pub struct TestHost {
        /// Headers, bodies, attributes, counters, the clock, failing host calls.
        pub host: MockHost,
        /// The shared map; `data.fail` makes every call fail.
        pub data: MemoryData,
        pub replies: Vec<Reply>,
        /// `send_local_response` answers with a host status.
        pub reply_fails: bool,
        pub resets: usize,
        pub etcd_calls: Vec<EtcdCall>,
        /// The id the next etcd call gets (then counts up).
        pub next_id: u64,
        /// `etcd_call` fails (no cluster, say).
        pub etcd_refuses: bool,
        pub refusals: Vec<Reason>,
        pub reports: Vec<Reason>,
        /// Every decision written, in order.
        pub decisions: Vec<Decision>,
        pub slots_used: Vec<u64>,
        pub route_metadata: HashMap<String, String>,
        pub lines: Vec<(log::Level, String)>,
        /// Every host call, by name, in order: what a request costs in VM exits.
        pub calls: Vec<&'static str>,
    }

    impl TestHost {
        /// A request with these pseudo-headers, at `NOW`, etcd ids from 100.
        pub fn request(method: &str, path: &str) -> TestHost {
            let mut h = TestHost { next_id: 100, ..TestHost::default() };
            h.host.now = NOW;
            h.header(":method", method).header(":path", path)
        }

        pub fn header(mut self, name: &str, value: &str) -> TestHost {
            self.host.request_headers.insert(name.into(), value.into());
            self
        }

        /// The connection presented the certificate whose DER is `der` (Envoy's hex digest).
        pub fn connection_cert(mut self, der: &[u8]) -> TestHost {
            self.host
                .attributes
                .insert("connection.sha256_peer_certificate_digest".into(), Thumbprint::of_der(der).hex().into_bytes());
            self
        }

        pub fn counted(&self, c: Counter) -> usize {
            self.host.counted(c)
        }

        pub fn last_reply(&self) -> &Reply {
            self.replies.last().expect("no local reply was sent")
        }
    }

    impl Host for TestHost {
        fn request_header(&mut self, name: &str) -> Option<String> {
            self.calls.push("request_header");
            self.host.request_header(name)
        }
        fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
            self.calls.push("set_request_header");
            self.host.set_request_header(name, value)
        }
        fn response_header(&mut self, name: &str) -> Option<String> {
            self.calls.push("response_header");
            self.host.response_header(name)
        }
        fn set_response_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
            self.calls.push("set_response_header");
            self.host.set_response_header(name, value)
        }
        fn body(&mut self, which: Body, size: usize) -> Result<Vec<u8>, HostError> {
            self.calls.push("body");
            self.host.body(which, size)
        }
        fn replace_body(&mut self, which: Body, size: usize, data: &[u8]) -> Result<(), HostError> {
            self.calls.push("replace_body");
            self.host.replace_body(which, size, data)
        }
        fn now(&mut self) -> Result<i64, HostError> {
            self.calls.push("now");
            self.host.now()
        }
        fn attribute(&mut self, attribute: Attribute<'_>) -> Result<Option<Vec<u8>>, HostError> {
            self.calls.push("attribute");
            self.host.attribute(attribute)
        }
        fn count(&mut self, counter: Counter) {
            self.calls.push("count");
            self.host.count(counter)
        }
        fn log(&mut self, level: log::Level, message: &str) {
            self.calls.push("log");
            self.host.log(level, message)
        }
    }

    impl SharedData for TestHost {
        fn shared_get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
            self.calls.push("shared_get");
            self.data.shared_get(key)
        }
        fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
            self.calls.push("shared_set");
            self.data.shared_set(key, value, cas)
        }
    }

    impl StreamHost for TestHost {
        fn send_local_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
            self.calls.push("send_local_response");
            if self.reply_fails {
                return Err(HostError(1));
            }
            let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            self.replies.push(Reply { status, headers, body: body.to_vec() });
            Ok(())
        }
        fn reset(&mut self) {
            self.calls.push("reset");
            self.resets += 1;
        }
        fn request_headers(&mut self) -> Vec<(String, String)> {
            self.calls.push("request_headers");
            self.host.request_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        fn route_metadata(&mut self, key: &str) -> Option<String> {
            self.calls.push("route_metadata");
            self.route_metadata.get(key).cloned()
        }
        fn etcd_call(&mut self, cfg: &EtcdConfig, path: &str, body: &[u8]) -> Result<u64, String> {
            self.calls.push("etcd_call");
            if self.etcd_refuses {
                return Err("no such cluster".into());
            }
            let id = self.next_id;
            self.next_id += 1;
            self.etcd_calls.push(EtcdCall { id, cluster: cfg.cluster.clone(), path: path.into(), body: body.to_vec() });
            Ok(id)
        }
        fn refused(&mut self, reason: Reason) {
            self.calls.push("refused");
            self.refusals.push(reason);
        }
        fn reported(&mut self, reason: Reason) {
            self.calls.push("reported");
            self.reports.push(reason);
        }
        fn decided(&mut self, decision: &Decision) {
            self.calls.push("decided");
            self.decisions.push(decision.clone());
        }
        fn slots_used(&mut self, used: u64) {
            self.calls.push("slots_used");
            self.slots_used.push(used);
        }
        fn log_line(&mut self, level: log::Level, line: &str) {
            self.calls.push("log_line");
            self.lines.push((level, line.to_string()));
        }
    }

    // ------------------------------------------------------------ helpers

    fn config(json: serde_json::Value) -> Rc<Config> {
        Rc::new(crate::config::parse(json.to_string().as_bytes()).expect("a valid test config"))
    }

    fn vm_cache() -> Rc<RefCell<VmCache>> {
        Rc::new(RefCell::new(VmCache::new(64)))
    }

    const TABLE: u64 = 64;

    fn stream(config: &Rc<Config>, cache: &Rc<RefCell<VmCache>>) -> Stream {
        Stream::new(7, Some(config.clone()), SlotTable::new(TABLE), cache.clone())
    }

    fn thumb(der: &[u8]) -> Thumbprint {
        Thumbprint::of_der(der)
    }

    fn bound_to(der: &[u8]) -> Binding {
        Binding { thumbprint: thumb(der), kind: TokenKind::Access, expires_at: NOW + 600 }
    }

    /// Protected `/api/` (the verified thumbprint in `x-api-x5t`), bindings in etcd under `pfx/`.
    fn etcd_config() -> Rc<Config> {
        config(serde_json::json!({
            "store": {"backend": "etcd", "etcd": {"cluster": "etcd", "key_prefix": "pfx/"}},
            "protected_routes": [{"path_prefix": "/api/", "thumbprint_header": "x-api-x5t"}],
        }))
    }

    /// Protected `/api/`, bindings in the shared map.
    fn shared_config() -> Rc<Config> {
        config(serde_json::json!({"protected_routes": [{"path_prefix": "/api/", "thumbprint_header": "x-api-x5t"}]}))
    }

    /// A GET of a protected resource with `Bearer tok` over a connection that presented `der`.
    fn api_request(der: &[u8]) -> TestHost {
        TestHost::request("GET", "/api/orders")
            .header("authorization", "Bearer tok")
            .header("x-api-x5t", "forged")
            .connection_cert(der)
    }

    /// A `kv/range` answer of etcd's JSON gateway holding `binding` under `key`.
    fn etcd_answer(key: &str, binding: &Binding) -> Vec<u8> {
        serde_json::json!({
            "header": {"revision": "7"},
            "kvs": [{"key": STANDARD.encode(key), "value": STANDARD.encode(binding.encode()), "create_revision": "5"}],
            "count": "1",
        })
        .to_string()
        .into_bytes()
    }

    /// The request of the etcd-backed `/api/` route is out to etcd: its one call.
    fn paused_on_lookup(s: &mut Stream, h: &mut TestHost) -> EtcdCall {
        assert_eq!(s.request_headers(h, true), Action::Pause);
        assert!(s.waiting_for_callout());
        assert_eq!(h.etcd_calls.len(), 1, "one lookup, one call");
        assert!(h.replies.is_empty());
        h.etcd_calls[0].clone()
    }

    // ------------------------------------------------------------ tests

    #[test]
    fn a_callout_answers_with_the_body_of_a_200_only() {
        assert_eq!(super::callout_result(Some(b"200"), b"{}".to_vec()), Ok(b"{}".to_vec()));
        assert_eq!(super::callout_result(Some(b"503"), b"down".to_vec()), Err("status 503: down".into()));
        assert_eq!(super::callout_result(None, Vec::new()), Err("status : ".into()));
    }

    #[test]
    fn a_request_without_a_configuration_is_answered_locally_never_continued() {
        for (method, path) in [("GET", "/api/orders"), ("POST", "/oauth2/token"), ("GET", "/anything")] {
            let mut s = Stream::new(1, None, SlotTable::new(TABLE), vm_cache());
            let mut h = TestHost::request(method, path);
            assert_eq!(s.request_headers(&mut h, false), Action::Pause, "{path}");
            assert_eq!(h.replies.len(), 1, "{path}");
            let r = h.last_reply();
            assert_eq!(r.status, 500);
            assert_eq!(r.json()["error"], "server_error");
            assert_eq!(r.header("cache-control"), Some("no-store"));
            assert_eq!(h.refusals, vec![Reason::NotConfigured]);
            assert_eq!(h.resets, 0);
            assert!(h.etcd_calls.is_empty());
            assert!(!s.waiting_for_callout());
        }
    }

    #[test]
    fn an_ambiguous_path_is_refused_and_counted() {
        let c = config(serde_json::json!({"thumbprint_headers": ["x-client-x5t"]}));
        let mut s = stream(&c, &vm_cache());
        let mut h = TestHost::request("POST", "/oauth2/%74oken")
            .header("x-client-x5t", "forged")
            .header("x-certbound-x5t", "forged");
        assert_eq!(s.request_headers(&mut h, false), Action::Pause);
        assert_eq!(h.replies.len(), 1);
        let r = h.last_reply();
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["error"], "invalid_request");
        assert_eq!(h.refusals, vec![Reason::AmbiguousPath]);
        // The listed thumbprint headers (and the default one) are gone even from a refused request.
        assert!(!h.host.request_headers.contains_key("x-client-x5t"));
        assert!(!h.host.request_headers.contains_key("x-certbound-x5t"));
        // The request stays answered: a body after the reply is not judged again.
        assert_eq!(s.request_body(&mut h, 0, true), Action::Continue);
        assert_eq!(h.replies.len(), 1);
    }

    #[test]
    fn thumbprint_headers_are_removed_on_routes_certbound_ignores() {
        let c = config(serde_json::json!({
            "thumbprint_headers": ["x-client-x5t"],
            "protected_routes": [{"path_prefix": "/api/", "thumbprint_header": "x-api-x5t"}],
        }));
        let mut s = stream(&c, &vm_cache());
        let mut h = TestHost::request("GET", "/static/app.js")
            .header("x-client-x5t", "forged")
            .header("x-certbound-x5t", "forged")
            .header("x-api-x5t", "forged")
            .header("authorization", "Bearer tok");
        assert_eq!(s.request_headers(&mut h, true), Action::Continue);
        for name in ["x-client-x5t", "x-certbound-x5t", "x-api-x5t"] {
            assert!(!h.host.request_headers.contains_key(name), "{name} left on an ignored route");
        }
        assert_eq!(h.host.request_headers["authorization"], "Bearer tok", "other headers are untouched");
        assert!(h.replies.is_empty() && h.refusals.is_empty() && h.etcd_calls.is_empty());
        assert!(h.data.map.is_empty(), "no store lookup on an ignored route");
        assert_eq!(s.request_trailers(&mut h), Action::Continue);
        assert_eq!(s.response_headers(&mut h, false), Action::Continue);
    }

    #[test]
    fn an_etcd_lookup_sends_one_call_and_a_wrong_id_changes_nothing() {
        let c = etcd_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = api_request(b"client-a");
        let call = paused_on_lookup(&mut s, &mut h);
        assert_eq!((call.id, call.cluster.as_str(), call.path.as_str()), (100, "etcd", RANGE));
        assert_eq!(call.body, store::etcd_range(&format!("pfx/{}", key_for_token("tok").unwrap())));
        assert!(
            !h.host.request_headers.contains_key("x-api-x5t"),
            "the forged thumbprint is removed before the lookup"
        );

        let good = etcd_answer(&format!("pfx/{}", key_for_token("tok").unwrap()), &bound_to(b"client-a"));
        assert_eq!(s.callout_done(&mut h, 999, Ok(good)), AfterCallout::Nothing);
        assert!(s.waiting_for_callout(), "still waiting for call 100");
        assert_eq!(h.etcd_calls.len(), 1);
        assert!(h.replies.is_empty() && h.refusals.is_empty());
        assert_eq!(h.counted(Counter::ResourceAllowed), 0);
        assert_eq!(h.counted(Counter::StoreRetries), 0);
    }

    #[test]
    fn an_etcd_error_is_retried_once_and_a_second_failure_fails_closed() {
        let c = etcd_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = api_request(b"client-a");
        let first = paused_on_lookup(&mut s, &mut h);

        assert_eq!(s.callout_done(&mut h, first.id, Err("timeout".into())), AfterCallout::Nothing);
        assert_eq!(h.counted(Counter::StoreRetries), 1);
        assert_eq!(h.etcd_calls.len(), 2);
        let retry = h.etcd_calls[1].clone();
        assert_eq!(retry.id, 101);
        assert_eq!((&retry.path, &retry.body, &retry.cluster), (&first.path, &first.body, &first.cluster));
        assert!(s.waiting_for_callout());
        assert!(h.replies.is_empty());
        // The first call's answer, late, is not the retry's.
        assert_eq!(s.callout_done(&mut h, first.id, Err("late".into())), AfterCallout::Nothing);
        assert!(s.waiting_for_callout() && h.replies.is_empty());

        assert_eq!(s.callout_done(&mut h, retry.id, Err("connection reset".into())), AfterCallout::Nothing);
        assert_eq!(h.etcd_calls.len(), 2, "never a third call");
        assert_eq!(h.counted(Counter::StoreRetries), 1);
        assert_eq!(h.counted(Counter::StoreErrors), 1);
        assert!(!s.waiting_for_callout());
        assert_eq!(h.replies.len(), 1);
        let r = h.last_reply();
        assert_eq!(r.status, 401);
        assert!(r.header("www-authenticate").unwrap().contains("invalid_token"), "{r:?}");
        assert_eq!(h.refusals, vec![Reason::StoreUnavailable]);
        assert_eq!(h.counted(Counter::ResourceAllowed), 0);
        // Decided: a later answer to anything changes nothing.
        assert_eq!(s.callout_done(&mut h, retry.id, Ok(b"{}".to_vec())), AfterCallout::Nothing);
        assert_eq!(h.replies.len(), 1);
    }

    #[test]
    fn an_etcd_call_that_cannot_be_sent_fails_closed_at_once() {
        let c = etcd_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = api_request(b"client-a");
        h.etcd_refuses = true;
        assert_eq!(s.request_headers(&mut h, true), Action::Pause);
        assert!(!s.waiting_for_callout());
        assert_eq!(h.last_reply().status, 401);
        assert_eq!(h.refusals, vec![Reason::StoreUnavailable]);
    }

    #[test]
    fn a_live_binding_to_the_presented_certificate_in_etcd_resumes_the_request() {
        let c = etcd_config();
        let cache = vm_cache();
        let mut s = stream(&c, &cache);
        let mut h = api_request(b"client-a");
        let first = paused_on_lookup(&mut s, &mut h);
        // One transient failure, then the answer: the retry's answer decides.
        assert_eq!(s.callout_done(&mut h, first.id, Err("timeout".into())), AfterCallout::Nothing);
        let key = key_for_token("tok").unwrap();
        let answer = etcd_answer(&format!("pfx/{key}"), &bound_to(b"client-a"));
        assert_eq!(s.callout_done(&mut h, 101, Ok(answer)), AfterCallout::Resume { response_phase: false });
        assert!(!s.waiting_for_callout());
        assert!(h.replies.is_empty() && h.refusals.is_empty());
        assert_eq!(h.counted(Counter::ResourceAllowed), 1);
        assert_eq!(h.counted(Counter::StoreErrors), 0);
        assert_eq!(h.host.request_headers["x-api-x5t"], thumb(b"client-a").x5t_s256());
        // The hit is kept (VM cache and the shared etcd read cache): the next request asks etcd nothing.
        assert_eq!(cache.borrow_mut().get(&key, NOW), Some(bound_to(b"client-a")));
        let mut s2 = stream(&c, &cache);
        let mut h2 = api_request(b"client-a");
        assert_eq!(s2.request_headers(&mut h2, true), Action::Continue);
        assert!(h2.etcd_calls.is_empty());
        // Another VM (its own cache) over the same shared map: the etcd read cache answers.
        let mut h3 = api_request(b"client-a");
        h3.data = std::mem::take(&mut h.data);
        let mut s3 = stream(&c, &vm_cache());
        assert_eq!(s3.request_headers(&mut h3, true), Action::Continue, "from the shared read cache");
        assert!(h3.etcd_calls.is_empty());
    }

    #[test]
    fn a_binding_to_another_certificate_in_etcd_is_refused() {
        let c = etcd_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = api_request(b"stranger");
        let call = paused_on_lookup(&mut s, &mut h);
        let answer = etcd_answer(&format!("pfx/{}", key_for_token("tok").unwrap()), &bound_to(b"client-a"));
        assert_eq!(s.callout_done(&mut h, call.id, Ok(answer)), AfterCallout::Nothing);
        assert_eq!(h.replies.len(), 1);
        assert_eq!(h.last_reply().status, 401);
        assert!(h.last_reply().header("www-authenticate").unwrap().contains("invalid_token"));
        assert_eq!(h.refusals, vec![Reason::TokenCertificateMismatch]);
        assert_eq!(h.counted(Counter::ResourceAllowed), 0);
        assert!(!h.host.request_headers.contains_key("x-api-x5t"));
        assert!(!s.waiting_for_callout());
    }

    #[test]
    fn an_empty_etcd_answer_is_an_unbound_token() {
        let c = etcd_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = api_request(b"client-a");
        let call = paused_on_lookup(&mut s, &mut h);
        let empty = br#"{"header":{"revision":"7"}}"#.to_vec();
        assert_eq!(s.callout_done(&mut h, call.id, Ok(empty)), AfterCallout::Nothing);
        assert_eq!(h.last_reply().status, 401);
        assert_eq!(h.refusals, vec![Reason::UnboundToken]);
    }

    #[test]
    fn a_shared_map_lookup_decides_at_once_and_a_hit_is_then_served_from_the_vm_cache() {
        let c = shared_config();
        let cache = vm_cache();
        let key = key_for_token("tok").unwrap();
        let mut h = api_request(b"client-a");
        let entries = [crate::binding::ToBind { key: key.clone(), binding: bound_to(b"client-a") }];
        assert_eq!(shared::put_all(&mut h.data, SlotTable::new(TABLE), &entries, NOW), (1, Ok(())));

        let mut s = stream(&c, &cache);
        assert_eq!(s.request_headers(&mut h, true), Action::Continue, "decided in the request-headers call");
        assert!(!s.waiting_for_callout());
        assert!(h.etcd_calls.is_empty() && h.replies.is_empty());
        assert_eq!(h.counted(Counter::ResourceAllowed), 1);
        assert_eq!(h.host.request_headers["x-api-x5t"], thumb(b"client-a").x5t_s256());

        // The shared map now fails every call: the hit still comes from this VM's cache.
        let mut h2 = api_request(b"client-a");
        h2.data.fail = true;
        let mut s2 = stream(&c, &cache);
        assert_eq!(s2.request_headers(&mut h2, true), Action::Continue);
        assert!(h2.replies.is_empty() && h2.refusals.is_empty());
        assert_eq!(h2.counted(Counter::ResourceAllowed), 1);
        assert_eq!(h2.counted(Counter::StoreErrors), 0);

        // Without that cache the failing map refuses (fail closed), synchronously.
        let mut h3 = api_request(b"client-a");
        h3.data.fail = true;
        let mut s3 = stream(&c, &vm_cache());
        assert_eq!(s3.request_headers(&mut h3, true), Action::Pause);
        assert_eq!(h3.last_reply().status, 401);
        assert_eq!(h3.refusals, vec![Reason::StoreUnavailable]);
        assert_eq!(h3.counted(Counter::StoreErrors), 1);

        // The VM cache never turns a binding into a pass for another certificate.
        let mut h4 = api_request(b"stranger");
        h4.data.fail = true;
        let mut s4 = stream(&c, &cache);
        assert_eq!(s4.request_headers(&mut h4, true), Action::Pause);
        assert_eq!(h4.refusals, vec![Reason::TokenCertificateMismatch]);
    }

    #[test]
    fn a_shared_map_miss_is_an_unbound_token_and_not_cached() {
        let c = shared_config();
        let cache = vm_cache();
        let mut h = api_request(b"client-a");
        let mut s = stream(&c, &cache);
        assert_eq!(s.request_headers(&mut h, true), Action::Pause);
        assert_eq!(h.last_reply().status, 401);
        assert_eq!(h.refusals, vec![Reason::UnboundToken]);
        assert_eq!(cache.borrow_mut().get(&key_for_token("tok").unwrap(), NOW), None);
    }

    /// A JWS as an AS writes it (base64url, no padding), and the same token respelled
    /// (the signature's unused bits changed, padding added) as lenient verifiers accept it.
    fn jws_and_respelled() -> (String, String) {
        let jws = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjMSJ9.-_A";
        (jws.to_string(), "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjMSJ9.-_D==".to_string())
    }

    fn jwt_request(token: &str, der: &[u8]) -> TestHost {
        TestHost::request("GET", "/api/orders").header("authorization", &format!("Bearer {token}")).connection_cert(der)
    }

    #[test]
    fn every_spelling_of_a_bound_jwt_finds_its_binding() {
        let c = shared_config();
        let (jws, respelled) = jws_and_respelled();
        let mut h = jwt_request(&respelled, b"stranger");
        let entries = [crate::binding::ToBind { key: key_for_token(&jws).unwrap(), binding: bound_to(b"client-a") }];
        assert_eq!(shared::put_all(&mut h.data, SlotTable::new(TABLE), &entries, NOW), (1, Ok(())));
        // Respelled and presented with another certificate: still bound, so refused.
        let allow =
            config(serde_json::json!({"protected_routes": [{"path_prefix": "/api/", "unbound_tokens": "allow"}]}));
        let mut s = stream(&allow, &vm_cache());
        assert_eq!(s.request_headers(&mut h, true), Action::Pause);
        assert_eq!(h.refusals, vec![Reason::TokenCertificateMismatch]);
        let mut s = stream(&c, &vm_cache());
        let mut h2 = jwt_request(&respelled, b"client-a");
        h2.data = h.data.clone();
        assert_eq!(s.request_headers(&mut h2, true), Action::Continue);
    }

    #[test]
    fn a_binding_stored_under_a_jwts_legacy_key_is_found_until_it_expires() {
        let (jws, _) = jws_and_respelled();
        let keys = crate::binding::keys_for_token(&jws).unwrap();
        let legacy = keys.legacy.clone().unwrap();
        // Shared map: the key misses, the legacy key hits, and the hit is kept under the key.
        let c = shared_config();
        let cache = vm_cache();
        let mut h = jwt_request(&jws, b"client-a");
        let entries = [crate::binding::ToBind { key: legacy.clone(), binding: bound_to(b"client-a") }];
        assert_eq!(shared::put_all(&mut h.data, SlotTable::new(TABLE), &entries, NOW), (1, Ok(())));
        let mut s = stream(&c, &cache);
        assert_eq!(s.request_headers(&mut h, true), Action::Continue);
        assert_eq!(h.counted(Counter::ResourceAllowed), 1);
        assert_eq!(cache.borrow_mut().get(&keys.key, NOW).map(|b| b.thumbprint), Some(thumb(b"client-a")));
        // etcd: one range call for the key, a second for the legacy key after an empty answer.
        let c = etcd_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = jwt_request(&jws, b"stranger");
        assert_eq!(s.request_headers(&mut h, true), Action::Pause);
        let first = h.etcd_calls.last().cloned().unwrap();
        assert_eq!(first.body, store::etcd_range(&format!("pfx/{}", keys.key)));
        let empty = br#"{"header":{"revision":"7"}}"#.to_vec();
        assert_eq!(s.callout_done(&mut h, first.id, Ok(empty)), AfterCallout::Nothing);
        let second = h.etcd_calls.last().cloned().unwrap();
        assert_eq!(second.body, store::etcd_range(&format!("pfx/{legacy}")));
        let answer = etcd_answer(&format!("pfx/{legacy}"), &bound_to(b"client-a"));
        assert_eq!(s.callout_done(&mut h, second.id, Ok(answer)), AfterCallout::Nothing);
        assert_eq!(h.refusals, vec![Reason::TokenCertificateMismatch]);
        // An opaque token has one key: a miss is a miss, with one call.
        let mut s = stream(&c, &vm_cache());
        let mut h = api_request(b"client-a");
        assert_eq!(s.request_headers(&mut h, true), Action::Pause);
        let call = h.etcd_calls.last().cloned().unwrap();
        let empty = br#"{"header":{"revision":"7"}}"#.to_vec();
        s.callout_done(&mut h, call.id, Ok(empty));
        assert_eq!(h.etcd_calls.len(), 1);
        assert_eq!(h.refusals, vec![Reason::UnboundToken]);
    }

    #[test]
    fn a_reply_that_cannot_be_sent_resets_the_stream() {
        // A refusal decided in the request headers (no configuration, an ambiguous path) ...
        let mut s = Stream::new(1, None, SlotTable::new(TABLE), vm_cache());
        let mut h = TestHost::request("GET", "/api/orders");
        h.reply_fails = true;
        assert_eq!(s.request_headers(&mut h, true), Action::Pause);
        assert!(h.replies.is_empty());
        assert_eq!(h.resets, 1);
        assert_eq!(h.refusals, vec![Reason::NotConfigured]);

        let c = config(serde_json::json!({}));
        let mut s = stream(&c, &vm_cache());
        let mut h = TestHost::request("POST", "/oauth2/%74oken");
        h.reply_fails = true;
        assert_eq!(s.request_headers(&mut h, false), Action::Pause);
        assert_eq!((h.resets, h.refusals.as_slice()), (1, &[Reason::AmbiguousPath][..]));

        // ... and one decided by an etcd answer.
        let c = etcd_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = api_request(b"stranger");
        let call = paused_on_lookup(&mut s, &mut h);
        h.reply_fails = true;
        let answer = etcd_answer(&format!("pfx/{}", key_for_token("tok").unwrap()), &bound_to(b"client-a"));
        assert_eq!(s.callout_done(&mut h, call.id, Ok(answer)), AfterCallout::Nothing, "never resumed");
        assert_eq!(h.resets, 1);
        assert!(h.replies.is_empty());
        assert_eq!(h.refusals, vec![Reason::TokenCertificateMismatch]);
    }

    fn token_config() -> Rc<Config> {
        config(serde_json::json!({"clients": [
            {"client_id": "c1", "token_endpoint_auth_method": "self_signed_tls_client_auth",
             "thumbprints": [thumb(b"c1").x5t_s256()], "upstream": {"client_secret": "s1"}}]}))
    }

    fn token_request(der: &[u8], body: &[u8]) -> TestHost {
        let mut h = TestHost::request("POST", "/oauth2/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .connection_cert(der);
        h.host.request_body = body.to_vec();
        h
    }

    #[test]
    fn a_token_request_ended_by_trailers_is_decided_at_the_trailers() {
        const BODY: &[u8] = b"grant_type=client_credentials&client_id=c1";
        let c = token_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = token_request(b"c1", BODY);
        assert_eq!(s.request_headers(&mut h, false), Action::Pause, "held for its body");
        assert_eq!(s.request_body(&mut h, 10, false), Action::Pause);
        assert_eq!(s.request_body(&mut h, BODY.len(), false), Action::Pause, "no end of stream yet");
        assert_eq!(h.counted(Counter::ClientAuthenticated), 0);
        assert_eq!(s.request_trailers(&mut h), Action::Continue);
        assert_eq!(h.counted(Counter::ClientAuthenticated), 1);
        assert!(h.host.request_headers["authorization"].starts_with("Basic "), "upstream credentials set");
        assert!(h.replies.is_empty());

        // A stranger's certificate is refused at the trailers, not let through.
        let mut s = stream(&c, &vm_cache());
        let mut h = token_request(b"stranger", BODY);
        assert_eq!(s.request_headers(&mut h, false), Action::Pause);
        assert_eq!(s.request_body(&mut h, BODY.len(), false), Action::Pause);
        assert_eq!(s.request_trailers(&mut h), Action::Pause);
        assert_eq!(h.last_reply().status, 401);
        assert_eq!(h.last_reply().json()["error"], "invalid_client");
        assert_eq!(h.refusals.len(), 1);
        assert!(!h.host.request_headers.contains_key("authorization"));
    }

    #[test]
    fn a_request_paused_on_a_pending_lookup_stays_paused_at_its_trailers() {
        let c = etcd_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = api_request(b"client-a");
        // Not the end of the stream, and no form body to read: the lookup goes out at once.
        assert_eq!(s.request_headers(&mut h, false), Action::Pause);
        assert!(s.waiting_for_callout());
        assert_eq!(s.request_body(&mut h, 3, false), Action::Pause);
        assert_eq!(s.request_trailers(&mut h), Action::Pause);
        assert_eq!(h.etcd_calls.len(), 1, "the trailers send nothing more");
        assert!(h.replies.is_empty());
        let answer = etcd_answer(&format!("pfx/{}", key_for_token("tok").unwrap()), &bound_to(b"client-a"));
        assert_eq!(s.callout_done(&mut h, 100, Ok(answer)), AfterCallout::Resume { response_phase: false });
    }

    #[test]
    fn a_form_body_ended_by_trailers_is_read_then_looked_up() {
        let c = etcd_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = api_request(b"client-a").header("content-type", "application/x-www-form-urlencoded");
        h.host.request_body = b"item=1".to_vec();
        assert_eq!(s.request_headers(&mut h, false), Action::Pause);
        assert!(h.etcd_calls.is_empty(), "the body is read before the lookup");
        assert_eq!(s.request_body(&mut h, 6, false), Action::Pause);
        assert_eq!(s.request_trailers(&mut h), Action::Pause);
        assert_eq!(h.etcd_calls.len(), 1, "the trailers end the body: the lookup goes out");
        assert_eq!(s.request_trailers(&mut h), Action::Pause);
        assert_eq!(h.etcd_calls.len(), 1);
        let answer = etcd_answer(&format!("pfx/{}", key_for_token("tok").unwrap()), &bound_to(b"client-a"));
        assert_eq!(s.callout_done(&mut h, 100, Ok(answer)), AfterCallout::Resume { response_phase: false });
    }

    const ISSUED: &[u8] = br#"{"access_token":"at","refresh_token":"rt","token_type":"Bearer","expires_in":600}"#;

    /// A token request from `c1` with its certificate, let through to the AS, whose 200 is now held.
    fn token_answer_held(s: &mut Stream, h: &mut TestHost) {
        const BODY: &[u8] = b"grant_type=client_credentials&client_id=c1";
        h.host.request_body = BODY.to_vec();
        h.host.response_headers.insert(":status".into(), "200".into());
        h.host.response_body = ISSUED.to_vec();
        assert_eq!(s.request_headers(h, false), Action::Pause);
        assert_eq!(s.request_body(h, BODY.len(), true), Action::Continue);
        assert_eq!(s.response_headers(h, false), Action::Pause, "the answer is held to be bound");
        assert_eq!(s.response_body(h, ISSUED.len(), false), Action::Pause, "all of it buffered, its end not yet told");
    }

    fn decision(
        flow: Flow,
        outcome: Outcome,
        reason: Option<Reason>,
        client: Option<&str>,
        der: Option<&[u8]>,
    ) -> Decision {
        Decision { flow, outcome, reason, client_id: client.map(str::to_string), x5t: der.map(|d| thumb(d).x5t_s256()) }
    }

    #[test]
    fn every_decision_is_written_once_with_its_flow_client_and_certificate_never_a_token() {
        // A token exchange: the client authenticates, then its tokens are bound.
        let c = token_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = token_request(b"c1", b"");
        token_answer_held(&mut s, &mut h);
        s.response_trailers(&mut h);
        assert_eq!(
            h.decisions,
            vec![
                decision(Flow::Token, Outcome::Authenticated, None, Some("c1"), Some(b"c1")),
                decision(Flow::Token, Outcome::Bound, None, Some("c1"), Some(b"c1")),
            ]
        );
        // A bound token with its certificate, and with another.
        let c = shared_config();
        let cache = vm_cache();
        let entries = [crate::binding::ToBind { key: key_for_token("tok").unwrap(), binding: bound_to(b"client-a") }];
        for (der, want) in [
            (&b"client-a"[..], decision(Flow::Resource, Outcome::Allowed, None, None, Some(b"client-a"))),
            (
                b"stranger",
                decision(
                    Flow::Resource,
                    Outcome::Refused,
                    Some(Reason::TokenCertificateMismatch),
                    None,
                    Some(b"stranger"),
                ),
            ),
        ] {
            let mut h = api_request(der);
            shared::put_all(&mut h.data, SlotTable::new(TABLE), &entries, NOW).1.unwrap();
            stream(&c, &cache).request_headers(&mut h, true);
            assert_eq!(h.decisions, vec![want]);
            assert!(h.decisions.iter().all(|d| !d.json().contains("tok\"")), "never the token");
        }
        // A refusal before any flow: the path read two ways.
        let mut h = TestHost::request("GET", "/api/%2e%2e/oauth2/token");
        stream(&c, &cache).request_headers(&mut h, true);
        assert_eq!(h.decisions, vec![decision(Flow::Other, Outcome::Refused, Some(Reason::AmbiguousPath), None, None)]);
    }

    /// The host calls of a bound token with its certificate on a protected route, the binding already
    /// in this VM's cache: what every such request costs in VM exits. A change that adds one shows here.
    #[test]
    fn host_call_budget_of_a_bound_token_hit_on_a_protected_route() {
        log::set_max_level(log::LevelFilter::Warn);
        let c = shared_config();
        let cache = vm_cache();
        let entries = [crate::binding::ToBind { key: key_for_token("tok").unwrap(), binding: bound_to(b"client-a") }];
        let mut warm = api_request(b"client-a");
        shared::put_all(&mut warm.data, SlotTable::new(TABLE), &entries, NOW).1.unwrap();
        stream(&c, &cache).request_headers(&mut warm, true);
        // The request carries no forged thumbprint header; the .wasm's tick keeps the VM's clock.
        cache.borrow_mut().set_clock(Some(NOW));
        let mut h =
            TestHost::request("GET", "/api/orders").header("authorization", "Bearer tok").connection_cert(b"client-a");
        assert_eq!(stream(&c, &cache).request_headers(&mut h, true), Action::Continue);
        assert_eq!(
            h.calls,
            vec![
                "request_headers",    // the request's facts, read once: :path, authorization, the thumbprint headers
                "attribute",          // connection.sha256_peer_certificate_digest
                "set_request_header", // x-api-x5t: the verified thumbprint
                "count",              // resource_allowed
                "decided",            // the decision record
            ]
        );
        // Without the tick's clock (the dynamic module), one clock read more; a forged header, one removal more.
        let mut h = api_request(b"client-a");
        cache.borrow_mut().set_clock(None);
        stream(&c, &cache).request_headers(&mut h, true);
        assert_eq!(h.calls.iter().filter(|c| **c == "now").count(), 1);
        assert_eq!(h.calls.iter().filter(|c| **c == "set_request_header").count(), 2);
        assert_eq!(h.calls.len(), 7);
    }

    /// The host calls of a client-credentials token request and its answer, bound in the shared map.
    #[test]
    fn host_call_budget_of_a_token_request_and_its_response() {
        log::set_max_level(log::LevelFilter::Warn);
        let c = token_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = token_request(b"c1", b"");
        token_answer_held(&mut s, &mut h);
        let request: Vec<_> = h.calls.clone();
        h.calls.clear();
        s.response_trailers(&mut h);
        assert_eq!(
            request,
            vec![
                "request_headers",    // the request's facts, read once
                "attribute",          // the certificate digest
                "body",               // the form body, at its end
                "now",                // certificate validity
                "set_request_header", // Authorization: the upstream secret
                "count",              // client_authenticated
                "decided",            // authenticated
                "response_header",    // :status
                "response_header",    // content-encoding
            ]
        );
        // The answer: read once, its two bindings stored in the shared map, then released.
        let (reads, writes) = (
            h.calls.iter().filter(|c| **c == "shared_get").count(),
            h.calls.iter().filter(|c| **c == "shared_set").count(),
        );
        assert_eq!(h.calls.iter().filter(|c| **c == "body").count(), 1);
        assert_eq!(h.calls.iter().filter(|c| **c == "now").count(), 2, "binding lifetimes, then the store's clock");
        assert_eq!((reads, writes), (3, 3), "two slots read and written, and the used count");
        assert_eq!(h.calls.iter().filter(|c| **c == "decided").count(), 1);
    }

    /// The host calls of an introspection of a bound token, its binding in the shared map.
    #[test]
    fn host_call_budget_of_an_introspection() {
        log::set_max_level(log::LevelFilter::Warn);
        let c = config(serde_json::json!({}));
        let mut h =
            TestHost::request("POST", "/oauth2/introspect").header("content-type", "application/x-www-form-urlencoded");
        h.host.request_body = b"token=tok".to_vec();
        let entries = [crate::binding::ToBind { key: key_for_token("tok").unwrap(), binding: bound_to(b"client-a") }];
        shared::put_all(&mut h.data, SlotTable::new(TABLE), &entries, NOW).1.unwrap();
        h.host.response_headers.insert(":status".into(), "200".into());
        h.host.response_body = br#"{"active":true}"#.to_vec();
        let mut s = stream(&c, &vm_cache());
        assert_eq!(s.request_headers(&mut h, false), Action::Pause);
        assert_eq!(s.request_body(&mut h, 9, true), Action::Continue);
        assert_eq!(s.response_headers(&mut h, false), Action::Pause);
        assert_eq!(s.response_body(&mut h, 15, true), Action::Continue);
        assert_eq!(
            h.calls,
            vec![
                "request_headers",     // the request's facts, read once
                "body",                // the form body
                "now",                 // the lookup's clock
                "shared_get",          // the binding's slot
                "response_header",     // :status
                "response_header",     // content-encoding
                "body",                // the answer
                "replace_body",        // with cnf
                "set_response_header", // Content-Length
                "count",               // introspection_patched
                "decided",             // patched
            ]
        );
    }

    #[test]
    fn a_report_only_route_decides_counts_and_writes_but_lets_the_request_go_on() {
        log::set_max_level(log::LevelFilter::Warn);
        let c = config(serde_json::json!({"protected_routes": [
            {"path_prefix": "/api/", "enforcement": "report", "thumbprint_header": "x-api-x5t"}]}));
        let cache = vm_cache();
        // A bound token with another certificate, an unbound token, a token in the query, no token.
        let entries = [crate::binding::ToBind { key: key_for_token("tok").unwrap(), binding: bound_to(b"client-a") }];
        for (h, reason) in [
            (api_request(b"stranger"), Reason::TokenCertificateMismatch),
            (
                TestHost::request("GET", "/api/x").header("authorization", "Bearer other").connection_cert(b"c"),
                Reason::UnboundToken,
            ),
            (TestHost::request("GET", "/api/x?access_token=tok"), Reason::TokenInUri),
            (TestHost::request("GET", "/api/x"), Reason::MissingToken),
        ] {
            let mut h = h;
            shared::put_all(&mut h.data, SlotTable::new(TABLE), &entries, NOW).1.unwrap();
            let mut s = stream(&c, &cache);
            assert_eq!(s.request_headers(&mut h, true), Action::Continue, "{reason:?}");
            assert!(h.replies.is_empty() && h.refusals.is_empty(), "{reason:?}");
            assert_eq!(h.reports, vec![reason]);
            assert_eq!(h.decisions.len(), 1);
            assert_eq!((h.decisions[0].outcome, h.decisions[0].reason), (Outcome::Reported, Some(reason)));
            assert!(!h.host.request_headers.contains_key("x-api-x5t"), "no verified thumbprint");
            assert!(h.lines.iter().any(|(_, l)| l.contains("report-only") && l.contains(reason.as_str())));
        }
        // What would be allowed is allowed as on an enforcing route.
        let mut h = api_request(b"client-a");
        shared::put_all(&mut h.data, SlotTable::new(TABLE), &entries, NOW).1.unwrap();
        assert_eq!(stream(&c, &cache).request_headers(&mut h, true), Action::Continue);
        assert_eq!(h.host.request_headers["x-api-x5t"], thumb(b"client-a").x5t_s256());
        assert_eq!(h.decisions[0].outcome, Outcome::Allowed);
        assert!(h.reports.is_empty());
    }

    #[test]
    fn a_report_only_route_reports_after_an_etcd_lookup_and_resumes_the_request() {
        let c = config(serde_json::json!({
            "store": {"backend": "etcd", "etcd": {"cluster": "etcd", "key_prefix": "pfx/"}},
            "protected_routes": [{"path_prefix": "/api/", "enforcement": "report"}]}));
        let mut s = stream(&c, &vm_cache());
        let mut h = api_request(b"stranger");
        let call = paused_on_lookup(&mut s, &mut h);
        let answer = etcd_answer(&format!("pfx/{}", key_for_token("tok").unwrap()), &bound_to(b"client-a"));
        assert_eq!(s.callout_done(&mut h, call.id, Ok(answer)), AfterCallout::Resume { response_phase: false });
        assert_eq!(h.reports, vec![Reason::TokenCertificateMismatch]);
        assert!(h.replies.is_empty());
    }

    #[test]
    fn a_token_answer_is_bound_in_the_shared_map_before_it_goes_on() {
        let c = token_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = token_request(b"c1", b"");
        token_answer_held(&mut s, &mut h);
        assert_eq!(s.response_trailers(&mut h), Action::Continue, "bound at the response's trailers");
        assert_eq!(h.counted(Counter::TokensBound), 2);
        assert_eq!(h.slots_used, vec![2], "the gauge follows the slots filled");
        let table = SlotTable::new(TABLE);
        for token in ["at", "rt"] {
            let b = shared::get(&mut h.data, table, &key_for_token(token).unwrap(), NOW).unwrap().unwrap();
            assert_eq!(b.thumbprint, thumb(b"c1"));
        }
        assert!(h.replies.is_empty() && h.etcd_calls.is_empty());
    }

    #[test]
    fn a_token_answer_the_shared_map_cannot_store_is_never_released() {
        let c = token_config();
        let mut s = stream(&c, &vm_cache());
        let mut h = token_request(b"c1", b"");
        token_answer_held(&mut s, &mut h);
        h.data.fail = true;
        assert_eq!(s.response_body(&mut h, ISSUED.len(), true), Action::Pause);
        assert_eq!(h.last_reply().status, 503);
        assert_eq!(h.last_reply().json()["error"], "temporarily_unavailable");
        assert_eq!(h.refusals, vec![Reason::BindingStoreFailed]);
        assert_eq!(h.counted(Counter::TokensBound), 0);
    }

    fn etcd_token_config(cache_capacity: u64) -> Rc<Config> {
        config(serde_json::json!({
            "store": {"backend": "etcd", "etcd": {"cluster": "etcd", "key_prefix": "pfx/", "cache_capacity": cache_capacity}},
            "clients": [{"client_id": "c1", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                         "thumbprints": [thumb(b"c1").x5t_s256()]}],
        }))
    }

    #[test]
    fn a_token_answer_bound_in_etcd_resumes_the_response() {
        let c = etcd_token_config(64);
        let mut s = stream(&c, &vm_cache());
        let mut h = token_request(b"c1", b"");
        token_answer_held(&mut s, &mut h);
        assert_eq!(s.response_body(&mut h, ISSUED.len(), true), Action::Pause);
        // Leases first (one per expiry bucket), then one transaction.
        let mut lease = 7000;
        while h.etcd_calls.last().unwrap().path == crate::keys::ETCD_LEASE_GRANT {
            let id = h.etcd_calls.last().unwrap().id;
            lease += 1;
            let answer = format!(r#"{{"ID":"{lease}","TTL":"900"}}"#).into_bytes();
            assert_eq!(s.callout_done(&mut h, id, Ok(answer)), AfterCallout::Nothing);
            assert!(h.etcd_calls.len() < 5, "{:?}", h.etcd_calls);
        }
        let txn = h.etcd_calls.last().unwrap().clone();
        assert_eq!(txn.path, crate::keys::ETCD_TXN);
        let txn_body: serde_json::Value = serde_json::from_slice(&txn.body).unwrap();
        assert_eq!(txn_body["success"].as_array().unwrap().len(), 2);
        assert_eq!(h.counted(Counter::TokensBound), 0, "not before etcd says so");
        // The response may still end with trailers while the write is out: it stays held.
        assert_eq!(s.response_trailers(&mut h), Action::Pause);
        let done = s.callout_done(&mut h, txn.id, Ok(br#"{"succeeded":true}"#.to_vec()));
        assert_eq!(done, AfterCallout::Resume { response_phase: true });
        assert_eq!(h.counted(Counter::TokensBound), 2);
        assert!(h.replies.is_empty());
        // The leases are remembered for the next writes, the bindings in the read cache.
        assert!(h.data.map.keys().any(|k| k.starts_with(crate::keys::LEASE_PREFIX)));
        assert_eq!(
            shared::cache_get(&mut h.data, SlotTable::new(TABLE), &key_for_token("at").unwrap(), NOW)
                .map(|b| b.thumbprint),
            Some(thumb(b"c1"))
        );
    }

    #[test]
    fn a_token_answer_etcd_cannot_store_is_replaced_by_an_error() {
        let c = etcd_token_config(0);
        let mut s = stream(&c, &vm_cache());
        let mut h = token_request(b"c1", b"");
        token_answer_held(&mut s, &mut h);
        assert_eq!(s.response_body(&mut h, ISSUED.len(), true), Action::Pause);
        let first = h.etcd_calls.last().unwrap().clone();
        assert_eq!(s.callout_done(&mut h, first.id, Err("timeout".into())), AfterCallout::Nothing);
        let retry = h.etcd_calls.last().unwrap().clone();
        assert_eq!((retry.path.as_str(), &retry.body), (first.path.as_str(), &first.body));
        assert_eq!(s.callout_done(&mut h, retry.id, Err("timeout".into())), AfterCallout::Nothing);
        assert_eq!(h.last_reply().status, 503);
        assert_eq!(h.refusals, vec![Reason::BindingStoreFailed]);
        assert_eq!(h.counted(Counter::StoreRetries), 1);
        assert_eq!(h.counted(Counter::TokensBound), 0);
        assert!(!s.waiting_for_callout());
    }
}
