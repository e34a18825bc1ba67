//! Root context: `Uninitialized -> Ready` (or `Failed`); the config is parsed
//! once and shared by `Rc` with every HTTP context. Clients from etcd and
//! fetched JWK Sets come from the core's [`Registry`]; this context only
//! sends the fetches it asks for, and sweeps the shared-data table.

use super::http::Http;
use super::metrics::Metrics;
use super::store_calls::WasmShared;
use crate::config::{self, StoreConfig};
use crate::registry::{Answered, Fetch, Registry, Request};
use crate::store::SlotTable;
use crate::vm_cache::VmCache;
use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// The tick of the sweep of the shared-data table (each tick sweeps one bounded step).
const SWEEP_TICK_MS: u64 = 1000;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_REV: &str = match option_env!("CERTBOUND_GIT_REV") {
    Some(r) => r,
    None => "unknown",
};

pub struct Root {
    id: u32,
    /// The configuration and the clients it serves as they change.
    registry: Option<Registry>,
    metrics: Option<Rc<Metrics>>,
    table: SlotTable,
    /// This VM's cache of store hits, shared with its HTTP contexts.
    vm_cache: Rc<RefCell<VmCache>>,
    /// Pending callouts by token id.
    calls: HashMap<u32, Fetch>,
}

impl Root {
    pub fn new(id: u32) -> Self {
        Root {
            id,
            registry: None,
            metrics: None,
            table: SlotTable::new(1),
            vm_cache: Rc::new(RefCell::new(VmCache::new(0))),
            calls: HashMap::new(),
        }
    }

    fn send(&mut self, requests: Vec<Request>) {
        for r in requests {
            let sent = hostcalls::dispatch_http_call(
                &r.cluster,
                vec![(":method", r.method), (":path", &r.path), (":authority", &r.authority), r.media],
                if r.body.is_empty() { None } else { Some(&r.body) },
                vec![],
                Duration::from_millis(r.timeout_ms),
            );
            match sent {
                Ok(token) => {
                    if let Some(reg) = self.registry.as_mut() {
                        reg.sent(r.fetch.clone());
                    }
                    self.calls.insert(token, r.fetch);
                }
                Err(s) => {
                    warn!("[root {}] certbound: cannot fetch {:?} through {}: {s:?}", self.id, r.fetch, r.cluster)
                }
            }
        }
    }

    fn log(&self, answered: &Answered) {
        for (level, line) in &answered.log {
            log::log!(*level, "[root {}] {line}", self.id);
        }
    }

    /// The slot table's size is fixed by the first configuration that used
    /// it (kept in shared data): a reload with another capacity must not
    /// lose the bindings already stored.
    fn slot_table(&self, store: &StoreConfig) -> SlotTable {
        let (table, note) = crate::shared::table_for(&mut WasmShared, store);
        if let Some(note) = note {
            warn!("[root {}] {note}", self.id);
        }
        table
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(fetch) = self.calls.remove(&token_id) else {
            warn!("[root {}] certbound: answer to unknown call {token_id}", self.id);
            return;
        };
        let answer = super::store_calls::callout_answer(num_headers, body_size);
        let Some(registry) = self.registry.as_mut() else { return };
        let answered = registry.answered(&fetch, answer);
        self.log(&answered);
        self.send(answered.send);
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        // Log lines the host would drop are not even formatted.
        if let Ok(level) = super::abi::host_log_level() {
            log::set_max_level(super::abi::level_filter(level));
        }
        info!("[root {}] certbound {VERSION} (git {GIT_REV}) starting", self.id);
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match super::abi::body(BufferType::PluginConfiguration, plugin_configuration_size) {
            Ok(b) => b,
            Err(status) => {
                error!("[root {}] certbound: cannot read plugin configuration: {status:?}", self.id);
                return false;
            }
        };
        let c = match config::parse(&bytes) {
            Ok(c) => c,
            Err(e) => {
                error!("[root {}] certbound refuses its configuration: {e}", self.id);
                return false;
            }
        };
        info!(
            "[root {}] certbound configured: {} client(s), token path {}, introspection path {}",
            self.id,
            c.clients.len(),
            c.token_path,
            c.introspection_path
        );
        self.table = self.slot_table(&c.store);
        // Hits stay true across a reload (bindings never change while they live); only a new size starts afresh.
        if self.vm_cache.try_borrow().map_or(true, |v| v.capacity() != c.vm_cache_entries) {
            self.vm_cache = Rc::new(RefCell::new(VmCache::new(c.vm_cache_entries)));
        }
        let shared_data = matches!(c.store, StoreConfig::SharedData { .. });
        // A reload starts from the new configuration; fetched sets are fetched again.
        let registry = Registry::new(Rc::new(c));
        let refresh_ms = registry.refresh_period().map(|r| r.saturating_mul(1000));
        self.registry = Some(registry);
        if self.metrics.is_none() {
            self.metrics = Some(Rc::new(Metrics::define()));
        }
        if let Some(m) = &self.metrics {
            m.slots_capacity(if shared_data { self.table.slots() } else { 0 });
            if shared_data {
                m.slots_used(crate::shared::slots_used(&mut WasmShared));
            }
        }
        // The shared-data table is swept every second (a bounded step); refreshes are due by their own clocks.
        let sweep_ms = shared_data.then_some(SWEEP_TICK_MS);
        // The VM cache's clock is kept by the tick (a lookup then reads no clock).
        let clock_ms = (self.vm_cache.try_borrow().map_or(0, |v| v.capacity()) > 0).then_some(SWEEP_TICK_MS);
        if let Ok(mut cache) = self.vm_cache.try_borrow_mut() {
            cache.set_clock(super::abi::now());
        }
        if let Some(tick) = [refresh_ms, sweep_ms, clock_ms].into_iter().flatten().min() {
            if let Err(s) = super::abi::set_tick_period_ms(tick.min(u64::from(u32::MAX)) as u32) {
                warn!("[root {}] certbound: cannot schedule its periodic work: {s:?}", self.id);
            }
            if refresh_ms.is_some() {
                self.on_tick();
            }
        }
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(
            context_id,
            self.registry.as_ref().map(|r| r.current()),
            self.metrics.clone().unwrap_or_default(),
            self.table,
            self.vm_cache.clone(),
        )))
    }

    fn on_tick(&mut self) {
        let clock = super::abi::now();
        if let Ok(mut c) = self.vm_cache.try_borrow_mut() {
            c.set_clock(clock);
        }
        let now = clock.unwrap_or_default();
        let Some(registry) = self.registry.as_mut() else { return };
        let upkeep = crate::shared::upkeep(&mut WasmShared, self.table, &registry.current().store, now);
        let due = registry.due(now);
        if let Some(problem) = upkeep.problem {
            warn!("[root {}] certbound: {problem}", self.id);
        }
        // Every worker sets the gauge from the one count in shared data.
        if let (Some(used), Some(m)) = (upkeep.slots_used, &self.metrics) {
            m.slots_used(used);
        }
        self.send(due);
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
