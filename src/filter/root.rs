//! Root context: `Uninitialized -> Ready` (or `Failed`); the config is parsed
//! once and shared by `Rc` with every HTTP context.

use super::http::Http;
use super::metrics::Metrics;
use super::store_calls::WasmShared;
use crate::config::{self, ClientAuthMethod, Config, EtcdConfig, Pin, StoreConfig, ETCD_CLIENTS};
use crate::store::{self, SlotTable};
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

/// What a pending callout of the root context fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fetch {
    /// The clients registered in etcd.
    EtcdClients,
    /// The JWK Set of this client's `jwks_uri`.
    Jwks(String),
}

pub struct Root {
    id: u32,
    /// As configured; clients from etcd and fetched JWK Sets are added to a copy of it.
    configured: Option<Rc<Config>>,
    /// What new HTTP contexts get.
    config: Option<Rc<Config>>,
    metrics: Option<Rc<Metrics>>,
    table: SlotTable,
    /// This VM's cache of store hits, shared with its HTTP contexts.
    vm_cache: Rc<RefCell<VmCache>>,
    /// Pending callouts by token id.
    calls: HashMap<u32, Fetch>,
    /// The clients etcd last answered with (kept while etcd cannot be read).
    etcd_clients: Vec<config::Client>,
    /// The certificates of each client's last good JWK Set.
    jwks_pins: HashMap<String, Vec<Pin>>,
    /// Unix seconds at which each refresh is next due.
    next_etcd: i64,
    next_jwks: i64,
}

impl Root {
    pub fn new(id: u32) -> Self {
        Root {
            id,
            configured: None,
            config: None,
            metrics: None,
            table: SlotTable::new(1),
            vm_cache: Rc::new(RefCell::new(VmCache::new(0))),
            calls: HashMap::new(),
            etcd_clients: Vec::new(),
            jwks_pins: HashMap::new(),
            next_etcd: 0,
            next_jwks: 0,
        }
    }

    fn etcd(&self) -> Option<Rc<EtcdConfig>> {
        match self.configured.as_ref().map(|c| &c.store) {
            Some(StoreConfig::Etcd(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Reads the clients etcd holds. A client registered in the plugin
    /// configuration keeps that registration.
    fn apply_etcd_clients(&mut self, body: &[u8]) {
        let (Some(configured), Some(etcd)) = (self.configured.clone(), self.etcd()) else { return };
        let values = match store::etcd_range_values(body) {
            Ok(v) => v,
            Err(e) => {
                warn!("[root {}] certbound: cannot read clients from etcd: {e}", self.id);
                return;
            }
        };
        let mut clients = Vec::new();
        for (key, value) in values {
            let field = format!("etcd:{key}");
            match config::parse_client(&value, &field) {
                Ok(c) if configured.clients.contains_key(&c.client_id) => {
                    warn!(
                        "[root {}] certbound: {field} ignored: {:?} is in the plugin configuration",
                        self.id, c.client_id
                    )
                }
                Ok(c) if !key.ends_with(&format!("/{}", c.client_id)) => {
                    warn!("[root {}] certbound: {field} ignored: its client_id is {:?}", self.id, c.client_id)
                }
                Ok(c) if c.jwks_uri.is_some() && configured.jwks_fetch.is_none() => {
                    warn!(
                        "[root {}] certbound: {field} ignored: it has a jwks_uri and jwks_fetch is not configured",
                        self.id
                    )
                }
                Ok(c) => clients.push(c),
                Err(e) => warn!("[root {}] certbound: client registration refused: {e}", self.id),
            }
        }
        let added = clients.len();
        self.etcd_clients = clients;
        if self.rebuild() {
            info!(
                "[root {}] certbound: {added} client(s) from etcd (prefix {}{})",
                self.id, etcd.key_prefix, ETCD_CLIENTS
            );
            // A client new from etcd gets its JWK Set now, not at the next refresh.
            self.fetch_jwks(true);
        }
    }

    /// A client's fetched JWK Set: its certificates become the client's pins
    /// (beside the configured ones) until the next good fetch.
    fn apply_jwks(&mut self, client_id: &str, answer: Result<Vec<u8>, String>) {
        let certs = answer.and_then(|body| crate::jwks::parse_document(&body));
        match certs {
            Ok(certs) => {
                if certs.is_empty() {
                    warn!("[root {}] certbound: the JWK Set of {client_id:?} has no key with x5c", self.id);
                }
                let pins = certs.into_iter().map(|c| Pin { thumbprint: c.thumbprint, validity: Some(c.validity) });
                self.jwks_pins.insert(client_id.to_string(), pins.collect());
                if self.rebuild() {
                    info!(
                        "[root {}] certbound: registered certificates of {client_id:?} updated from its jwks_uri",
                        self.id
                    );
                }
            }
            // The last good set stays.
            Err(e) => warn!("[root {}] certbound: cannot use the jwks_uri of {client_id:?}: {e}", self.id),
        }
    }

    /// The configuration new streams get: the configured one, the clients
    /// from etcd, and the certificates of fetched JWK Sets. True when it changed.
    fn rebuild(&mut self) -> bool {
        let Some(configured) = self.configured.clone() else { return false };
        let mut merged = (*configured).clone();
        for c in &self.etcd_clients {
            merged.clients.entry(c.client_id.clone()).or_insert_with(|| c.clone());
        }
        for (client_id, fetched) in &self.jwks_pins {
            if let Some(ClientAuthMethod::SelfSignedTlsClientAuth { pins }) =
                merged.clients.get_mut(client_id).map(|c| &mut c.method)
            {
                for p in fetched {
                    if !pins.iter().any(|q| q.thumbprint.ct_eq(&p.thumbprint)) {
                        pins.push(p.clone());
                    }
                }
            }
        }
        let changed = self.config.as_ref().map(|c| c.clients != merged.clients).unwrap_or(true);
        if changed {
            self.config = Some(Rc::new(merged));
        }
        changed
    }

    fn fetch_etcd_clients(&mut self) {
        let Some(etcd) = self.etcd() else { return };
        if self.calls.values().any(|f| *f == Fetch::EtcdClients) {
            return;
        }
        let prefix = format!("{}{ETCD_CLIENTS}", etcd.key_prefix);
        match super::store_calls::etcd_call(&etcd, crate::keys::ETCD_RANGE, &store::etcd_range_prefix(&prefix)) {
            Ok(token) => {
                self.calls.insert(token, Fetch::EtcdClients);
            }
            Err(e) => warn!("[root {}] certbound: cannot read clients from etcd: {e}", self.id),
        }
    }

    /// Fetches the JWK Sets of the clients with a `jwks_uri` (only those never fetched, when `missing_only`).
    fn fetch_jwks(&mut self, missing_only: bool) {
        let Some(config) = self.config.clone() else { return };
        let Some(fetch) = &config.jwks_fetch else { return };
        for client in config.clients.values() {
            let Some(uri) = &client.jwks_uri else { continue };
            if missing_only && self.jwks_pins.contains_key(&client.client_id) {
                continue;
            }
            let fetching = Fetch::Jwks(client.client_id.clone());
            if self.calls.values().any(|f| *f == fetching) {
                continue;
            }
            let sent = hostcalls::dispatch_http_call(
                &fetch.cluster,
                vec![
                    (":method", "GET"),
                    (":path", &uri.path),
                    (":authority", &uri.authority),
                    ("accept", "application/json"),
                ],
                None,
                vec![],
                Duration::from_millis(fetch.timeout_ms),
            );
            match sent {
                Ok(token) => {
                    self.calls.insert(token, fetching);
                }
                Err(s) => warn!(
                    "[root {}] certbound: cannot fetch the jwks_uri of {:?} through {}: {s:?}",
                    self.id, client.client_id, fetch.cluster
                ),
            }
        }
    }
}

impl Root {
    /// The slot table's size is fixed by the first configuration that used
    /// it (kept in shared data): a reload with another capacity must not
    /// lose the bindings already stored.
    fn slot_table(&self, store: &StoreConfig) -> SlotTable {
        match store {
            StoreConfig::Etcd(e) => SlotTable::new(e.cache_capacity),
            StoreConfig::SharedData { capacity } => {
                let (table, kept) = crate::shared::slot_table(&mut WasmShared, *capacity);
                if let Some(slots) = kept {
                    warn!(
                        "[root {}] certbound keeps the binding table at {slots} slots (store.capacity asks for {}); \
                         restart Envoy to resize it",
                        self.id,
                        SlotTable::new(*capacity).slots()
                    );
                }
                table
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(fetch) = self.calls.remove(&token_id) else {
            warn!("[root {}] certbound: answer to unknown call {token_id}", self.id);
            return;
        };
        let answer = super::store_calls::callout_answer(num_headers, body_size);
        match fetch {
            Fetch::EtcdClients => match answer {
                Ok(body) => self.apply_etcd_clients(&body),
                // The last known clients stay registered until etcd answers again.
                Err(e) => warn!("[root {}] certbound: cannot read clients from etcd: {e}", self.id),
            },
            Fetch::Jwks(client_id) => self.apply_jwks(&client_id, answer.map_err(|e| e.to_string())),
        }
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
        let bytes = match super::host::body(BufferType::PluginConfiguration, plugin_configuration_size) {
            Ok(b) => b,
            Err(status) => {
                error!("[root {}] certbound: cannot read plugin configuration: {status:?}", self.id);
                return false;
            }
        };
        match config::parse(&bytes) {
            Ok(c) => {
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
                let refreshes = [
                    match &c.store {
                        StoreConfig::Etcd(e) => e.clients_refresh_seconds,
                        _ => 0,
                    },
                    c.jwks_fetch.as_ref().map_or(0, |j| j.refresh_seconds),
                ];
                let c = Rc::new(c);
                self.configured = Some(c.clone());
                self.config = Some(c);
                // A reload starts from the new configuration; fetched sets are fetched again.
                self.etcd_clients.clear();
                self.jwks_pins.clear();
                self.next_etcd = 0;
                self.next_jwks = 0;
                if self.metrics.is_none() {
                    self.metrics = Some(Rc::new(Metrics::define()));
                }
                let shared_data =
                    matches!(self.configured.as_ref().map(|c| &c.store), Some(StoreConfig::SharedData { .. }));
                if let Some(m) = &self.metrics {
                    m.slots_capacity(if shared_data { self.table.slots() } else { 0 });
                    if shared_data {
                        m.slots_used(crate::shared::slots_used(&mut WasmShared));
                    }
                }
                // The shared-data table is swept every second (a bounded step); refreshes are due by their own clocks.
                let refresh_ms = refreshes.iter().copied().filter(|r| *r > 0).min().map(|r| r.saturating_mul(1000));
                let sweep_ms = shared_data.then_some(SWEEP_TICK_MS);
                if let Some(tick) = [refresh_ms, sweep_ms].into_iter().flatten().min() {
                    if let Err(s) = super::abi::set_tick_period_ms(tick.min(u64::from(u32::MAX)) as u32) {
                        warn!("[root {}] certbound: cannot schedule its periodic work: {s:?}", self.id);
                    }
                    if refresh_ms.is_some() {
                        self.on_tick();
                    }
                }
                true
            }
            Err(e) => {
                error!("[root {}] certbound refuses its configuration: {e}", self.id);
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(
            context_id,
            self.config.clone(),
            self.metrics.clone().unwrap_or_default(),
            self.table,
            self.vm_cache.clone(),
        )))
    }

    fn on_tick(&mut self) {
        let Some(configured) = self.configured.clone() else { return };
        let now = super::host::now().unwrap_or_default();
        if matches!(configured.store, StoreConfig::SharedData { .. }) && now > 0 {
            if let Err(e) = crate::shared::sweep_step(&mut WasmShared, self.table, now) {
                warn!("[root {}] certbound: cannot sweep the binding table: {e}", self.id);
            }
            // Every worker sets the gauge from the one count in shared data.
            if let Some(m) = &self.metrics {
                m.slots_used(crate::shared::slots_used(&mut WasmShared));
            }
        }
        if let Some(etcd) = self.etcd().filter(|e| e.clients_refresh_seconds > 0) {
            if now >= self.next_etcd {
                self.next_etcd = now + etcd.clients_refresh_seconds as i64;
                self.fetch_etcd_clients();
            }
        }
        if let Some(fetch) = &configured.jwks_fetch {
            if now >= self.next_jwks {
                self.next_jwks = now + fetch.refresh_seconds as i64;
                self.fetch_jwks(false);
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
