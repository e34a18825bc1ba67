//! `store`: where bindings live (shared data or etcd).

use super::{from_value, ConfigError, DEFAULT_STORE_CAPACITY};
use crate::store::{EtcdConfig, StoreConfig};
use serde::Deserialize;
use serde_json::Value;
use std::rc::Rc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    backend: Option<String>,
    capacity: Option<u64>,
    etcd: Option<Value>,
    vm_cache_entries: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEtcd {
    cluster: String,
    authority: Option<String>,
    key_prefix: Option<String>,
    timeout_ms: Option<u64>,
    cache_capacity: Option<u64>,
    on_unavailable: Option<String>,
    lease_bucket_seconds: Option<i64>,
    clients_refresh_seconds: Option<u64>,
}

pub(super) const MAX_CAPACITY: u64 = 1 << 24;

/// The store, and the size of the per-VM cache of hits (`store.vm_cache_entries`).
pub(super) fn compile_store(raw: RawStore) -> Result<(StoreConfig, usize), ConfigError> {
    let vm_cache_entries = match raw.vm_cache_entries {
        None => crate::vm_cache::DEFAULT_ENTRIES,
        Some(n) if n <= crate::vm_cache::MAX_ENTRIES as u64 => n as usize,
        Some(_) => {
            return Err(ConfigError::new(
                "store.vm_cache_entries",
                format!("must be between 0 and {}", crate::vm_cache::MAX_ENTRIES),
            ))
        }
    };
    compile_backend(raw).map(|store| (store, vm_cache_entries))
}

fn compile_backend(raw: RawStore) -> Result<StoreConfig, ConfigError> {
    let capacity_ok = |c: u64, field: &str| {
        if c == 0 || c > MAX_CAPACITY {
            Err(ConfigError::new(field, format!("must be between 1 and {MAX_CAPACITY}")))
        } else {
            Ok(c)
        }
    };
    match raw.backend.as_deref().unwrap_or("shared_data") {
        "shared_data" => {
            if raw.etcd.is_some() {
                return Err(ConfigError::new("store.etcd", "only with backend \"etcd\""));
            }
            Ok(StoreConfig::SharedData {
                capacity: capacity_ok(raw.capacity.unwrap_or(DEFAULT_STORE_CAPACITY), "store.capacity")?,
            })
        }
        "etcd" => {
            if raw.capacity.is_some() {
                return Err(ConfigError::new(
                    "store.capacity",
                    "is for backend shared_data; etcd has etcd.cache_capacity",
                ));
            }
            let v = raw.etcd.ok_or_else(|| ConfigError::new("store.etcd", "backend etcd needs an etcd object"))?;
            let e: RawEtcd = from_value(v, "store.etcd")?;
            if e.cluster.is_empty() {
                return Err(ConfigError::new("store.etcd.cluster", "must name the Envoy cluster of etcd"));
            }
            let timeout_ms = e.timeout_ms.unwrap_or(1000);
            if timeout_ms == 0 || timeout_ms > 60_000 {
                return Err(ConfigError::new("store.etcd.timeout_ms", "must be between 1 and 60000"));
            }
            let fail_closed = match e.on_unavailable.as_deref() {
                None | Some("fail_closed") => true,
                Some("fail_open") => false,
                Some(o) => {
                    return Err(ConfigError::new(
                        "store.etcd.on_unavailable",
                        format!("{o:?}: expected fail_closed or fail_open"),
                    ))
                }
            };
            let lease_bucket_seconds = e.lease_bucket_seconds.unwrap_or(60);
            if !(1..=86_400).contains(&lease_bucket_seconds) {
                return Err(ConfigError::new("store.etcd.lease_bucket_seconds", "must be between 1 and 86400"));
            }
            Ok(StoreConfig::Etcd(Rc::new(EtcdConfig {
                authority: e.authority.unwrap_or_else(|| e.cluster.clone()),
                cluster: e.cluster,
                key_prefix: e.key_prefix.unwrap_or_default(),
                timeout_ms,
                cache_capacity: match e.cache_capacity.unwrap_or(DEFAULT_STORE_CAPACITY) {
                    // 0: no cache, every read asks etcd.
                    0 => 0,
                    c => capacity_ok(c, "store.etcd.cache_capacity")?,
                },
                fail_closed,
                lease_bucket_seconds,
                clients_refresh_seconds: {
                    let r = e.clients_refresh_seconds.unwrap_or(0);
                    if r > 3600 {
                        return Err(ConfigError::new("store.etcd.clients_refresh_seconds", "must be at most 3600"));
                    }
                    r
                },
            })))
        }
        o => Err(ConfigError::new("store.backend", format!("{o:?}: expected shared_data or etcd"))),
    }
}
