//! The binding store over a key-value map that every worker of one Envoy
//! shares: Envoy's shared data for the `.wasm`, process memory for the
//! dynamic module. The slot table (bounded, put-if-absent, never evicting a
//! live binding), the etcd read cache and the etcd lease cache live here;
//! the shells only provide [`SharedData`].

use crate::binding::{Binding, ToBind};
use crate::config::EtcdConfig;
use crate::flow::HostError;
use crate::keys::{SWEEP_CURSOR, TABLE_USED};
use crate::store::{self, PutPlan, SlotGet, SlotTable, CACHE_PREFIX, SLOT_PREFIX};

/// Why a compare-and-swap write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// Another writer changed the value since it was read.
    CasMismatch,
    Host(HostError),
}

/// A map shared by every worker, with a version per key for compare-and-swap.
pub trait SharedData {
    /// The value and its version, or `(None, _)` when the key is absent.
    fn shared_get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    /// Writes the value if the key's version is still `cas` (any version when
    /// `None`). A key that does not exist is created whatever `cas` says (as
    /// Envoy's shared data does), so "create only if absent" is written with
    /// [`CREATE_ONLY`]: an existing key never has that version.
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError>;
}

/// The version a write to a key read as absent carries: if another worker
/// created the key in the meantime, the write fails (`CasMismatch`) instead
/// of overwriting it. Envoy's versions count up from 1 over every write of
/// the process; the store never hands this one out (see `memory.rs` of the
/// module) and Envoy reaches it only once per 2^32 writes.
pub const CREATE_ONLY: u32 = u32::MAX;

/// The version to write with after reading `cas`: the same, or "create only" for an absent key.
fn guarded(cas: Option<u32>) -> Option<u32> {
    Some(cas.unwrap_or(CREATE_ONLY))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    Host(HostError),
    /// No free or expired slot in the probe window: new tokens are refused, live bindings kept.
    Full,
    /// A live binding of the same token to another certificate exists.
    Conflict,
    Etcd(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Host(s) => write!(f, "shared data call failed: host status {}", s.0),
            StoreError::Full => f.write_str("the binding store is full"),
            StoreError::Conflict => f.write_str("a live binding to another certificate exists"),
            StoreError::Etcd(e) => write!(f, "etcd: {e}"),
        }
    }
}

fn slot(data: &mut impl SharedData, prefix: &str, index: u64) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
    data.shared_get(&store::slot_key(prefix, index)).map_err(StoreError::Host)
}

/// Looks a binding up in a slot table.
pub fn slots_get(
    data: &mut impl SharedData,
    table: SlotTable,
    prefix: &str,
    key: &str,
    now: i64,
) -> Result<Option<Binding>, StoreError> {
    store::find(table, key, now, |index| slot(data, prefix, index).map(|(value, _)| value))
}

/// Writes a binding into a slot table: put-if-absent, never evicting a live
/// binding. True when it filled a slot that held no binding (the used count grows).
pub fn slots_put(
    data: &mut impl SharedData,
    table: SlotTable,
    prefix: &str,
    key: &str,
    binding: &Binding,
    now: i64,
) -> Result<bool, StoreError> {
    // A concurrent writer on another worker makes the CAS fail: plan again.
    for _ in 0..3 {
        match store::plan_put_counted(table, key, binding, now, |index| slot(data, prefix, index))? {
            (PutPlan::AlreadyBound, _) => return Ok(false),
            (PutPlan::Conflict, _) => return Err(StoreError::Conflict),
            (PutPlan::Full, _) => return Err(StoreError::Full),
            (PutPlan::Write { index, cas }, fills) => {
                // A slot read as empty is written only if it still is: two workers
                // filling the same empty slot must not both believe they stored.
                match data.shared_set(&store::slot_key(prefix, index), &store::encode_slot(key, binding), guarded(cas))
                {
                    Ok(()) => return Ok(fills),
                    Err(SetError::CasMismatch) => continue,
                    Err(SetError::Host(s)) => return Err(StoreError::Host(s)),
                }
            }
        }
    }
    Err(StoreError::Full)
}

/// The count of used slots, kept in the shared map.
pub fn slots_used(data: &mut impl SharedData) -> u64 {
    store::parse_count(data.shared_get(TABLE_USED).ok().and_then(|(v, _)| v).as_deref())
}

/// Adds `delta` to the count of used slots (compare-and-swap, so concurrent
/// workers add up); the new count, or `None` when it could not be written.
pub fn adjust_slots_used(data: &mut impl SharedData, delta: i64) -> Option<u64> {
    if delta == 0 {
        return Some(slots_used(data));
    }
    for _ in 0..16 {
        let (value, cas) = data.shared_get(TABLE_USED).ok()?;
        let next = store::adjust_count(store::parse_count(value.as_deref()), delta);
        match data.shared_set(TABLE_USED, next.to_string().as_bytes(), guarded(cas)) {
            Ok(()) => return Some(next),
            Err(SetError::CasMismatch) => continue,
            Err(SetError::Host(_)) => return None,
        }
    }
    None
}

/// One step of the sweep of expired bindings: the step's slots are claimed
/// through the cursor in the shared map (workers share the passes), each
/// expired binding becomes a tombstone, and the used count drops by those freed.
pub fn sweep_step(data: &mut impl SharedData, table: SlotTable, now: i64) -> Result<u64, StoreError> {
    let (value, cas) = data.shared_get(SWEEP_CURSOR).map_err(StoreError::Host)?;
    let (range, next) = store::sweep_step(table, store::parse_count(value.as_deref()));
    match data.shared_set(SWEEP_CURSOR, next.to_string().as_bytes(), guarded(cas)) {
        Ok(()) => {}
        // Another worker took this step: it sweeps it.
        Err(SetError::CasMismatch) => return Ok(0),
        Err(SetError::Host(s)) => return Err(StoreError::Host(s)),
    }
    let mut freed = 0;
    for index in range {
        let (value, cas) = slot(data, SLOT_PREFIX, index)?;
        if store::occupancy(value.as_deref(), now) != store::Occupancy::Expired {
            continue;
        }
        match data.shared_set(&store::slot_key(SLOT_PREFIX, index), store::TOMBSTONE, cas) {
            Ok(()) => freed += 1,
            // Written since it was read: not expired any more, or swept by another worker.
            Err(SetError::CasMismatch) => {}
            Err(SetError::Host(s)) => return Err(StoreError::Host(s)),
        }
    }
    if freed > 0 {
        adjust_slots_used(data, -(freed as i64));
    }
    Ok(freed)
}

/// The read cache of the etcd backend: one slot per key hash, a hit saves a
/// callout; overwriting a slot only costs a later callout (etcd has the truth).
pub fn cache_get(data: &mut impl SharedData, table: SlotTable, key: &str, now: i64) -> Option<Binding> {
    let index = table.probes(key).next()?;
    let (value, _) = slot(data, CACHE_PREFIX, index).ok()?;
    match store::get_at(value.as_deref(), key, now) {
        SlotGet::Found(b) => Some(b),
        _ => None,
    }
}

pub fn cache_put(data: &mut impl SharedData, table: SlotTable, key: &str, binding: &Binding) {
    if let Some(index) = table.probes(key).next() {
        let _ = data.shared_set(&store::slot_key(CACHE_PREFIX, index), &store::encode_slot(key, binding), None);
    }
}

/// Stores every binding of a token response: the slots filled (the used count
/// grows by them, even when a later binding fails: those slots stay written) and the outcome.
pub fn put_all(
    data: &mut impl SharedData,
    table: SlotTable,
    entries: &[ToBind],
    now: i64,
) -> (u64, Result<(), StoreError>) {
    let mut filled = 0;
    for e in entries {
        match slots_put(data, table, SLOT_PREFIX, &e.key, &e.binding, now) {
            Ok(f) => filled += u64::from(f),
            Err(err) => return (filled, Err(err)),
        }
    }
    (filled, Ok(()))
}

pub fn get(data: &mut impl SharedData, table: SlotTable, key: &str, now: i64) -> Result<Option<Binding>, StoreError> {
    slots_get(data, table, SLOT_PREFIX, key, now)
}

/// The etcd key of a binding key.
pub fn etcd_key(cfg: &EtcdConfig, key: &str) -> String {
    format!("{}{key}", cfg.key_prefix)
}

/// Lease ids are kept per bucket, so bindings expiring close together share one.
pub fn cached_lease(data: &mut impl SharedData, bucket_end: i64) -> Option<i64> {
    let (v, _) = data.shared_get(&crate::keys::lease_key(bucket_end)).ok()?;
    std::str::from_utf8(&v?).ok()?.parse().ok()
}

pub fn remember_lease(data: &mut impl SharedData, bucket_end: i64, id: Option<i64>) {
    let value = id.map(|i| i.to_string()).unwrap_or_default();
    let _ = data.shared_set(&crate::keys::lease_key(bucket_end), value.as_bytes(), None);
}

/// Reads a `kv/range` answer for one key, caching a live binding (when there is a cache).
pub fn etcd_read(
    data: &mut impl SharedData,
    body: &[u8],
    key: &str,
    cache: Option<SlotTable>,
    now: i64,
) -> Result<Option<Binding>, StoreError> {
    let values = store::etcd_range_values(body).map_err(|e| StoreError::Etcd(e.0))?;
    let found = values.first().and_then(|(_, v)| crate::binding::live_binding(Some(v), now));
    if let (Some(b), Some(cache)) = (&found, cache) {
        cache_put(data, cache, key, b);
    }
    Ok(found)
}

/// The slot table's size is fixed by the first configuration that used it
/// (kept in the shared map): a reload with another capacity must not lose
/// the bindings already stored. Returns the table and, when the stored size
/// wins over the configured one, the stored size.
pub fn slot_table(data: &mut impl SharedData, capacity: u64) -> (SlotTable, Option<u64>) {
    let wanted = SlotTable::new(capacity);
    let existing = data
        .shared_get(crate::keys::TABLE_META)
        .ok()
        .and_then(|(v, _)| v)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok());
    match existing {
        Some(slots) if slots != wanted.slots() => (SlotTable::new(slots), Some(slots)),
        Some(_) => (wanted, None),
        None => {
            let _ = data.shared_set(crate::keys::TABLE_META, wanted.slots().to_string().as_bytes(), None);
            (wanted, None)
        }
    }
}

/// The table a configuration's store uses (the etcd read cache's, or the
/// shared-data table, whose size the first configuration fixed), and the line
/// to log when that size is not the one this configuration asks for. Both
/// shells set their table up through this.
pub fn table_for(data: &mut impl SharedData, store: &crate::config::StoreConfig) -> (SlotTable, Option<String>) {
    match store {
        crate::config::StoreConfig::Etcd(e) => (SlotTable::new(e.cache_capacity), None),
        crate::config::StoreConfig::SharedData { capacity } => {
            let (table, kept) = slot_table(data, *capacity);
            let note = kept.map(|slots| {
                format!(
                    "certbound keeps the binding table at {slots} slots (store.capacity asks for {}); restart Envoy to resize it",
                    SlotTable::new(*capacity).slots()
                )
            });
            (table, note)
        }
    }
}

/// What a shell's one-second tick did to the store: the shared-data table's
/// slots in use after a sweep step (`None` with etcd), and why the sweep failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upkeep {
    pub slots_used: Option<u64>,
    pub problem: Option<String>,
}

/// The store's part of a shell's tick, the same in both shells: one bounded
/// sweep step of the shared-data table, then its count of slots in use.
pub fn upkeep(data: &mut impl SharedData, table: SlotTable, store: &crate::config::StoreConfig, now: i64) -> Upkeep {
    if !matches!(store, crate::config::StoreConfig::SharedData { .. }) || now <= 0 {
        return Upkeep { slots_used: None, problem: None };
    }
    let problem = sweep_step(data, table, now).err().map(|e| format!("cannot sweep the binding table: {e}"));
    Upkeep { slots_used: Some(slots_used(data)), problem }
}

/// A [`SharedData`] in memory, for tests.
#[cfg(test)]
#[derive(Debug, Default, Clone)]
pub struct MemoryData {
    pub map: std::collections::HashMap<String, (Vec<u8>, u32)>,
    pub fail: bool,
    /// The last version handed out (one counter over every key, as Envoy's).
    pub version: u32,
}

#[cfg(test)]
impl SharedData for MemoryData {
    fn shared_get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        if self.fail {
            return Err(HostError(10));
        }
        Ok(match self.map.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        if self.fail {
            return Err(SetError::Host(HostError(10)));
        }
        // As Envoy's shared data: an absent key is created whatever the version asked for.
        self.version += 1;
        let version = self.version;
        match self.map.get_mut(key) {
            Some(entry) => {
                if cas.is_some_and(|c| c != 0 && c != entry.1) {
                    return Err(SetError::CasMismatch);
                }
                *entry = (value.to_vec(), version);
            }
            None => {
                self.map.insert(key.to_string(), (value.to_vec(), version));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::Thumbprint;

    fn binding(expires_at: i64) -> Binding {
        Binding { thumbprint: Thumbprint::of_der(b"cert"), kind: crate::binding::TokenKind::Access, expires_at }
    }

    #[test]
    fn a_binding_put_is_found_until_it_expires() {
        let mut data = MemoryData::default();
        let table = SlotTable::new(8);
        let (filled, stored) = put_all(&mut data, table, &[ToBind { key: "k".into(), binding: binding(100) }], 10);
        assert_eq!((filled, stored), (1, Ok(())));
        assert_eq!(get(&mut data, table, "k", 50).unwrap(), Some(binding(100)));
        assert_eq!(get(&mut data, table, "k", 100).unwrap(), None);
    }

    #[test]
    fn a_host_failure_is_an_error_not_a_miss() {
        let mut data = MemoryData { fail: true, ..Default::default() };
        assert!(get(&mut data, SlotTable::new(8), "k", 1).is_err());
    }

    /// A map where another worker fills the same empty slot between our read and our write.
    struct Racing {
        inner: MemoryData,
        raced: bool,
    }

    impl SharedData for Racing {
        fn shared_get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
            self.inner.shared_get(key)
        }
        fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
            if !self.raced && key.starts_with(SLOT_PREFIX) {
                self.raced = true;
                let other = ToBind { key: "other".into(), binding: binding(500) };
                self.inner.shared_set(key, &store::encode_slot(&other.key, &other.binding), None)?;
            }
            self.inner.shared_set(key, value, cas)
        }
    }

    #[test]
    fn two_workers_filling_one_empty_slot_both_keep_their_binding() {
        let mut data = Racing { inner: MemoryData::default(), raced: false };
        let table = SlotTable::new(64);
        let (filled, stored) = put_all(&mut data, table, &[ToBind { key: "mine".into(), binding: binding(400) }], 10);
        assert_eq!((filled, stored), (1, Ok(())));
        assert_eq!(
            get(&mut data, table, "mine", 20).unwrap(),
            Some(binding(400)),
            "our binding was overwritten or lost"
        );
        let others = data.inner.map.values().filter(|(v, _)| v.starts_with(b"other|")).count();
        assert_eq!(others, 1, "the other worker's binding was overwritten");
    }

    #[test]
    fn create_only_never_overwrites_an_existing_key() {
        let mut data = MemoryData::default();
        data.shared_set("k", b"first", Some(CREATE_ONLY)).unwrap();
        assert_eq!(data.shared_set("k", b"second", Some(CREATE_ONLY)), Err(SetError::CasMismatch));
        assert_eq!(data.shared_get("k").unwrap().0.as_deref(), Some(&b"first"[..]));
    }

    #[test]
    fn the_first_table_size_stays() {
        let mut data = MemoryData::default();
        assert_eq!(slot_table(&mut data, 100), (SlotTable::new(128), None));
        assert_eq!(slot_table(&mut data, 1000), (SlotTable::new(128), Some(128)));
    }

    #[test]
    fn both_shells_set_up_and_sweep_the_table_alike() {
        let mut data = MemoryData::default();
        let shared = crate::config::StoreConfig::SharedData { capacity: 100 };
        let (table, note) = table_for(&mut data, &shared);
        assert_eq!((table.slots(), note), (128, None));
        let (kept, note) = table_for(&mut data, &crate::config::StoreConfig::SharedData { capacity: 1000 });
        assert_eq!(kept.slots(), 128, "the first configuration fixed the size");
        assert!(note.unwrap_or_default().contains("keeps the binding table at 128 slots"));
        assert_eq!(upkeep(&mut data, table, &shared, 1_800_000_000), Upkeep { slots_used: Some(0), problem: None });
        assert_eq!(upkeep(&mut data, table, &shared, 0).slots_used, None, "no clock, no sweep");
        data.fail = true;
        assert!(upkeep(&mut data, table, &shared, 1_800_000_000).problem.is_some());
    }
}
