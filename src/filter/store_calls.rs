//! The binding store as the shell sees it: shared-data slots (synchronous)
//! or etcd through `dispatch_http_call` (asynchronous, with a shared-data
//! read cache). Decisions come from `crate::store`.

use super::abi;
use super::host::HostStatus;
use crate::binding::{Binding, ToBind};
use crate::config::EtcdConfig;
use crate::keys::{SWEEP_CURSOR, TABLE_USED};
use crate::store::{self, PutPlan, SlotGet, SlotTable, CACHE_PREFIX, SLOT_PREFIX};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::time::Duration;

#[derive(Debug)]
pub enum StoreError {
    Host(HostStatus),
    /// No free or expired slot in the probe window: new tokens are refused, live bindings kept.
    Full,
    /// A live binding of the same token to another certificate exists.
    Conflict,
    Etcd(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Host(s) => write!(f, "shared data call failed: {s:?}"),
            StoreError::Full => f.write_str("the binding store is full"),
            StoreError::Conflict => f.write_str("a live binding to another certificate exists"),
            StoreError::Etcd(e) => write!(f, "etcd: {e}"),
        }
    }
}

fn slot(prefix: &str, index: u64) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
    abi::shared_get(&store::slot_key(prefix, index)).map_err(StoreError::Host)
}

/// Looks a binding up in a slot table.
pub fn slots_get(table: SlotTable, prefix: &str, key: &str, now: i64) -> Result<Option<Binding>, StoreError> {
    store::find(table, key, now, |index| slot(prefix, index).map(|(value, _)| value))
}

/// Writes a binding into a slot table: put-if-absent, never evicting a live
/// binding. True when it filled a slot that held no binding (the used count grows).
pub fn slots_put(table: SlotTable, prefix: &str, key: &str, binding: &Binding, now: i64) -> Result<bool, StoreError> {
    // A concurrent writer on another worker makes the CAS fail: plan again.
    for _ in 0..3 {
        match store::plan_put_counted(table, key, binding, now, |index| slot(prefix, index))? {
            (PutPlan::AlreadyBound, _) => return Ok(false),
            (PutPlan::Conflict, _) => return Err(StoreError::Conflict),
            (PutPlan::Full, _) => return Err(StoreError::Full),
            (PutPlan::Write { index, cas }, fills) => {
                match abi::shared_set(&store::slot_key(prefix, index), &store::encode_slot(key, binding), cas) {
                    Ok(()) => return Ok(fills),
                    Err(HostStatus(abi::CAS_MISMATCH)) => continue,
                    Err(s) => return Err(StoreError::Host(s)),
                }
            }
        }
    }
    Err(StoreError::Full)
}

/// The read cache of the etcd backend: one slot per key hash, a hit saves a
/// callout; overwriting a slot only costs a later callout (etcd has the truth).
pub fn cache_get(table: SlotTable, key: &str, now: i64) -> Option<Binding> {
    let index = table.probes(key).next()?;
    let (value, _) = slot(CACHE_PREFIX, index).ok()?;
    match store::get_at(value.as_deref(), key, now) {
        SlotGet::Found(b) => Some(b),
        _ => None,
    }
}

pub fn cache_put(table: SlotTable, key: &str, binding: &Binding) {
    if let Some(index) = table.probes(key).next() {
        let _ = abi::shared_set(&store::slot_key(CACHE_PREFIX, index), &store::encode_slot(key, binding), None);
    }
}

/// Stores every binding of a token response; the used count grows by the
/// slots filled, even when a later binding fails (those slots stay written).
pub fn shared_put_all(table: SlotTable, entries: &[ToBind], now: i64) -> (u64, Result<(), StoreError>) {
    let mut filled = 0;
    for e in entries {
        match slots_put(table, SLOT_PREFIX, &e.key, &e.binding, now) {
            Ok(f) => filled += u64::from(f),
            Err(err) => return (filled, Err(err)),
        }
    }
    (filled, Ok(()))
}

/// The count of used slots, kept in shared data.
pub fn slots_used() -> u64 {
    store::parse_count(abi::shared_get(TABLE_USED).ok().and_then(|(v, _)| v).as_deref())
}

/// Adds `delta` to the count of used slots (compare-and-swap, so concurrent
/// workers add up); the new count, or `None` when it could not be written.
pub fn adjust_slots_used(delta: i64) -> Option<u64> {
    if delta == 0 {
        return Some(slots_used());
    }
    for _ in 0..16 {
        let (value, cas) = abi::shared_get(TABLE_USED).ok()?;
        let next = store::adjust_count(store::parse_count(value.as_deref()), delta);
        match abi::shared_set(TABLE_USED, next.to_string().as_bytes(), cas) {
            Ok(()) => return Some(next),
            Err(HostStatus(abi::CAS_MISMATCH)) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// One step of the sweep of expired bindings: the step's slots are claimed
/// through the cursor in shared data (workers share the passes), each
/// expired binding becomes a tombstone, and the used count drops by those freed.
pub fn sweep_step(table: SlotTable, now: i64) -> Result<u64, StoreError> {
    let (value, cas) = abi::shared_get(SWEEP_CURSOR).map_err(StoreError::Host)?;
    let (range, next) = store::sweep_step(table, store::parse_count(value.as_deref()));
    match abi::shared_set(SWEEP_CURSOR, next.to_string().as_bytes(), cas) {
        Ok(()) => {}
        // Another worker took this step: it sweeps it.
        Err(HostStatus(abi::CAS_MISMATCH)) => return Ok(0),
        Err(s) => return Err(StoreError::Host(s)),
    }
    let freed = store::sweep(
        range,
        now,
        |index| slot(SLOT_PREFIX, index),
        |index, cas| match abi::shared_set(&store::slot_key(SLOT_PREFIX, index), store::TOMBSTONE, cas) {
            Ok(()) => Ok(true),
            Err(HostStatus(abi::CAS_MISMATCH)) => Ok(false),
            Err(s) => Err(StoreError::Host(s)),
        },
    )?;
    if freed > 0 {
        adjust_slots_used(-(freed as i64));
    }
    Ok(freed)
}

pub fn shared_get(table: SlotTable, key: &str, now: i64) -> Result<Option<Binding>, StoreError> {
    slots_get(table, SLOT_PREFIX, key, now)
}

// ------------------------------------------------------------------ etcd

/// The etcd key of a binding key.
pub fn etcd_key(cfg: &EtcdConfig, key: &str) -> String {
    format!("{}{key}", cfg.key_prefix)
}

/// Sends one request to etcd's JSON gateway through the configured cluster
/// (through the SDK: its dispatcher keeps the callout registry that routes the answer here).
pub fn etcd_call(cfg: &EtcdConfig, path: &str, body: &[u8]) -> Result<u32, StoreError> {
    hostcalls::dispatch_http_call(
        &cfg.cluster,
        vec![
            (":method", "POST"),
            (":path", path),
            (":authority", &cfg.authority),
            ("content-type", "application/json"),
        ],
        Some(body),
        vec![],
        Duration::from_millis(cfg.timeout_ms),
    )
    .map_err(|s| StoreError::Etcd(format!("cannot call cluster {}: {s:?}", cfg.cluster)))
}

/// The answer to a dispatched call: its body, or why there is none.
pub fn callout_answer(num_headers: usize, body_size: usize) -> Result<Vec<u8>, StoreError> {
    if num_headers == 0 {
        return Err(StoreError::Etcd("no answer (timeout or connection failure)".into()));
    }
    let status = super::host::header_value(MapType::HttpCallResponseHeaders, ":status");
    let body = super::host::body(BufferType::HttpCallResponseBody, body_size).unwrap_or_default();
    if status.as_deref() != Some("200") {
        let text = String::from_utf8_lossy(body.get(..200.min(body.len())).unwrap_or_default()).into_owned();
        return Err(StoreError::Etcd(format!("status {}: {text}", status.unwrap_or_default())));
    }
    Ok(body)
}

/// Lease ids are kept in shared data per bucket, so bindings expiring close together share one.
pub fn cached_lease(bucket_end: i64) -> Option<i64> {
    let (v, _) = abi::shared_get(&crate::keys::lease_key(bucket_end)).ok()?;
    std::str::from_utf8(&v?).ok()?.parse().ok()
}

pub fn remember_lease(bucket_end: i64, id: Option<i64>) {
    let value = id.map(|i| i.to_string()).unwrap_or_default();
    let _ = abi::shared_set(&crate::keys::lease_key(bucket_end), value.as_bytes(), None);
}

/// Reads a `kv/range` answer for one key, caching a live binding (when there is a cache).
pub fn etcd_read(body: &[u8], key: &str, cache: Option<SlotTable>, now: i64) -> Result<Option<Binding>, StoreError> {
    let values = store::etcd_range_values(body).map_err(|e| StoreError::Etcd(e.0))?;
    let found = values.first().and_then(|(_, v)| crate::binding::live_binding(Some(v), now));
    if let (Some(b), Some(cache)) = (&found, cache) {
        cache_put(cache, key, b);
    }
    Ok(found)
}
