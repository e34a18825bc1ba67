//! Root context: `Uninitialized -> Ready` (or `Failed`); the config is parsed
//! once and shared by `Rc` with every HTTP context.

use super::http::Http;
use super::metrics::Metrics;
use crate::config::{self, Config, EtcdConfig, StoreConfig, ETCD_CLIENTS};
use crate::store::{self, SlotTable};
use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::rc::Rc;
use std::time::Duration;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_REV: &str = match option_env!("CERTBOUND_GIT_REV") {
    Some(r) => r,
    None => "unknown",
};

pub struct Root {
    id: u32,
    /// As configured; the clients read from etcd are added to a copy of it.
    configured: Option<Rc<Config>>,
    /// What new HTTP contexts get.
    config: Option<Rc<Config>>,
    metrics: Option<Rc<Metrics>>,
    table: SlotTable,
    /// The pending etcd read of registered clients.
    clients_call: Option<u32>,
}

impl Root {
    pub fn new(id: u32) -> Self {
        Root { id, configured: None, config: None, metrics: None, table: SlotTable::new(1), clients_call: None }
    }

    fn etcd(&self) -> Option<Rc<EtcdConfig>> {
        match self.configured.as_ref().map(|c| &c.store) {
            Some(StoreConfig::Etcd(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Merges the clients etcd holds into the configured ones. A client
    /// registered in the plugin configuration keeps that registration.
    fn apply_etcd_clients(&mut self, body: &[u8]) {
        let (Some(configured), Some(etcd)) = (self.configured.clone(), self.etcd()) else { return };
        let values = match store::etcd_range_values(body) {
            Ok(v) => v,
            Err(e) => {
                warn!("[root {}] certbound: cannot read clients from etcd: {e}", self.id);
                return;
            }
        };
        let mut merged = (*configured).clone();
        let mut added = 0;
        for (key, value) in values {
            let field = format!("etcd:{key}");
            match config::parse_client(&value, &field) {
                Ok(c) if merged.clients.contains_key(&c.client_id) => {
                    warn!(
                        "[root {}] certbound: {field} ignored: {:?} is in the plugin configuration",
                        self.id, c.client_id
                    )
                }
                Ok(c) if !key.ends_with(&format!("/{}", c.client_id)) => {
                    warn!("[root {}] certbound: {field} ignored: its client_id is {:?}", self.id, c.client_id)
                }
                Ok(c) => {
                    merged.clients.insert(c.client_id.clone(), c);
                    added += 1;
                }
                Err(e) => warn!("[root {}] certbound: client registration refused: {e}", self.id),
            }
        }
        let changed = self.config.as_ref().map(|c| c.clients != merged.clients).unwrap_or(true);
        if changed {
            info!(
                "[root {}] certbound: {added} client(s) from etcd (prefix {}{})",
                self.id, etcd.key_prefix, ETCD_CLIENTS
            );
            self.config = Some(Rc::new(merged));
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
                let wanted = SlotTable::new(*capacity);
                let existing = hostcalls::get_shared_data(TABLE_META)
                    .ok()
                    .and_then(|(v, _)| v)
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok());
                match existing {
                    Some(slots) if slots != wanted.slots() => {
                        warn!(
                            "[root {}] certbound keeps the binding table at {slots} slots (store.capacity asks for {}); \
                             restart Envoy to resize it",
                            self.id,
                            wanted.slots()
                        );
                        SlotTable::new(slots)
                    }
                    Some(_) => wanted,
                    None => {
                        let _ =
                            hostcalls::set_shared_data(TABLE_META, Some(wanted.slots().to_string().as_bytes()), None);
                        wanted
                    }
                }
            }
        }
    }
}

const TABLE_META: &str = "certbound/s/meta";

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        if self.clients_call != Some(token_id) {
            warn!("[root {}] certbound: answer to unknown call {token_id}", self.id);
            return;
        }
        self.clients_call = None;
        match super::store::etcd_answer(num_headers, body_size) {
            Ok(body) => self.apply_etcd_clients(&body),
            // The last known clients stay registered until etcd answers again.
            Err(e) => warn!("[root {}] certbound: cannot read clients from etcd: {e}", self.id),
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        info!("[root {}] certbound {VERSION} (git {GIT_REV}) starting", self.id);
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, plugin_configuration_size) {
            Ok(b) => b.unwrap_or_default(),
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
                let refresh = match &c.store {
                    StoreConfig::Etcd(e) => e.clients_refresh_seconds,
                    _ => 0,
                };
                let c = Rc::new(c);
                self.configured = Some(c.clone());
                self.config = Some(c);
                if refresh > 0 {
                    if let Err(s) = hostcalls::set_tick_period(Duration::from_secs(refresh)) {
                        warn!("[root {}] certbound: cannot schedule the etcd client refresh: {s:?}", self.id);
                    }
                    self.on_tick();
                }
                if self.metrics.is_none() {
                    self.metrics = Some(Rc::new(Metrics::define()));
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
        Some(Box::new(Http::new(context_id, self.config.clone(), self.metrics.clone().unwrap_or_default(), self.table)))
    }

    fn on_tick(&mut self) {
        let Some(etcd) = self.etcd() else { return };
        if self.clients_call.is_some() {
            return;
        }
        let prefix = format!("{}{ETCD_CLIENTS}", etcd.key_prefix);
        match super::store::etcd_call(&etcd, "/v3/kv/range", &store::etcd_range_prefix(&prefix)) {
            Ok(token) => self.clients_call = Some(token),
            Err(e) => warn!("[root {}] certbound: cannot read clients from etcd: {e}", self.id),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
