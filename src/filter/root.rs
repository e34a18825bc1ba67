//! Root context: `Uninitialized -> Ready` (or `Failed`); the config is parsed
//! once and shared by `Rc` with every HTTP context.

use super::http::Http;
use super::metrics::Metrics;
use crate::config::{self, Config, StoreConfig};
use crate::store::SlotTable;
use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::rc::Rc;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_REV: &str = match option_env!("CERTBOUND_GIT_REV") {
    Some(r) => r,
    None => "unknown",
};

pub struct Root {
    id: u32,
    config: Option<Rc<Config>>,
    metrics: Option<Rc<Metrics>>,
    table: SlotTable,
}

impl Root {
    pub fn new(id: u32) -> Self {
        Root { id, config: None, metrics: None, table: SlotTable::new(1) }
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

impl Context for Root {}

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
                self.config = Some(Rc::new(c));
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

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
