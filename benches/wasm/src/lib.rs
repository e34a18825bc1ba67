//! Bench-only filters (see Cargo.toml): a no-op, and a filler of certbound's slot table.

use certbound_core::binding::{key_for_token, Binding, TokenKind};
use certbound_core::cert::Thumbprint;
use certbound_core::keys::TABLE_USED;
use certbound_core::store::{self, PutPlan, SlotTable, SLOT_PREFIX};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, Status};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { fill: None, calls: Rc::from([]), metric: None }) });
}}

struct Root {
    /// `None`: no-op; `Some(slots)`: the filler of a table of that capacity.
    fill: Option<u64>,
    /// {"mode": "calls", "calls": [...]}: on each request's headers, the listed host calls and nothing
    /// else, so the bench can price each one in Envoy (what a Wasm filter pays per call).
    calls: Rc<[Call]>,
    metric: Option<u32>,
}

/// A host call the `calls` mode makes, named as in its configuration.
#[derive(Clone, Copy, PartialEq)]
enum Call {
    /// The request's header map (certbound's one read of the request).
    Headers,
    /// `connection.sha256_peer_certificate_digest`.
    Property,
    /// A filter state value (certbound's decision record).
    SetProperty,
    /// A counter increment.
    Metric,
}

const CALLS: [(&str, Call); 4] = [
    ("headers", Call::Headers),
    ("property", Call::Property),
    ("set_property", Call::SetProperty),
    ("metric", Call::Metric),
];

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config);
        self.fill = text
            .contains("\"fill\"")
            .then(|| {
                text.split("\"capacity\":").nth(1).and_then(|r| r.trim().trim_end_matches('}').trim().parse().ok())
            })
            .flatten();
        // Read once here: a stream only walks the list (its cost is what is priced).
        self.calls = CALLS
            .iter()
            .filter(|(name, _)| text.contains("\"calls\"") && text.contains(&format!("\"{name}\"")))
            .map(|&(_, call)| call)
            .collect();
        if self.calls.contains(&Call::Metric) {
            self.metric =
                proxy_wasm::hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, "bench.calls").ok();
        }
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        if !self.calls.is_empty() {
            return Some(Box::new(Calls { calls: self.calls.clone(), metric: self.metric }));
        }
        Some(match self.fill {
            None => Box::new(Noop) as Box<dyn HttpContext>,
            Some(capacity) => Box::new(Fill { table: SlotTable::new(capacity) }),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop;
impl Context for Noop {}
impl HttpContext for Noop {}

/// The host calls a filter like certbound makes on a protected route, each alone or together.
struct Calls {
    calls: Rc<[Call]>,
    metric: Option<u32>,
}
impl Context for Calls {}
impl HttpContext for Calls {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        use proxy_wasm::hostcalls as h;
        use proxy_wasm::types::MapType;
        for c in self.calls.iter() {
            match c {
                Call::Headers => drop(h::get_map_bytes(MapType::HttpRequestHeaders)),
                Call::Property => drop(h::get_property(vec!["connection", "sha256_peer_certificate_digest"])),
                Call::SetProperty => drop(h::set_property(vec!["certbound"], Some(b"{\"decision\":\"allowed\"}"))),
                Call::Metric => drop(self.metric.map(|m| h::increment_metric(m, 1))),
            }
        }
        Action::Continue
    }
}

struct Fill {
    table: SlotTable,
}
impl Context for Fill {}

fn get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    proxy_wasm::hostcalls::get_shared_data(key).unwrap_or((None, None))
}

impl HttpContext for Fill {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let mut parts = path.trim_start_matches('/').split('/');
        let (Some("fill"), Some(start), Some(count)) = (parts.next(), parts.next(), parts.next()) else {
            self.send_http_response(404, vec![], Some(b"GET /fill/<start>/<count>"));
            return Action::Pause;
        };
        let (start, count): (u64, u64) = (start.parse().unwrap_or(0), count.parse().unwrap_or(0));
        let now = (proxy_wasm::hostcalls::get_current_time()
            .map(|t| t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
            .unwrap_or(std::time::UNIX_EPOCH.elapsed().map(|d| d.as_secs()).unwrap_or(0))) as i64;
        let binding = Binding {
            thumbprint: Thumbprint::of_der(b"bench-fill"),
            kind: TokenKind::Access,
            expires_at: now + 86_400,
        };
        let (mut filled, mut full) = (0u64, 0u64);
        for i in start..start + count {
            let key = key_for_token(&format!("bench-fill-{i}")).unwrap_or_default();
            match store::plan_put_counted(self.table, &key, &binding, now, |index| {
                Ok::<_, Status>(get(&store::slot_key(SLOT_PREFIX, index)))
            }) {
                Ok((PutPlan::Write { index, cas }, fills)) => {
                    let slot = store::slot_key(SLOT_PREFIX, index);
                    if proxy_wasm::hostcalls::set_shared_data(&slot, Some(&store::encode_slot(&key, &binding)), cas)
                        .is_ok()
                        && fills
                    {
                        filled += 1;
                    }
                }
                Ok((PutPlan::Full, _)) => full += 1,
                _ => {}
            }
        }
        // The gauge's count (certbound.store_slots_used) follows.
        loop {
            let (v, cas) = get(TABLE_USED);
            let next = store::parse_count(v.as_deref()) + filled;
            match proxy_wasm::hostcalls::set_shared_data(TABLE_USED, Some(next.to_string().as_bytes()), cas) {
                Err(Status::CasMismatch) => continue,
                _ => break,
            }
        }
        let body = format!("{{\"filled\":{filled},\"full\":{full},\"slots\":{}}}", self.table.slots());
        self.send_http_response(200, vec![("content-type", "application/json")], Some(body.as_bytes()));
        Action::Pause
    }
}
