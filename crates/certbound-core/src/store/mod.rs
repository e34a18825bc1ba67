//! Binding looked up: where bindings live. The pure part of both backends:
//! the bounded slot table of the shared-data store, and the etcd v3 JSON
//! gateway requests and answers.

pub mod etcd_write;
pub mod ops;
pub mod shared;
pub mod vm_cache;

use crate::binding::Binding;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::rc::Rc;

pub use crate::keys::{CACHE_PREFIX, SLOT_PREFIX};
/// How many slots an insert or a lookup may visit. Bounds the work per request.
pub const MAX_PROBES: usize = 32;

/// A fixed-size open-addressing table over shared data keys: memory is
/// bounded by its capacity, expired bindings are reused in place, and a live
/// binding is never evicted (a full probe window means "store full").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotTable {
    /// A power of two.
    slots: u64,
}

impl SlotTable {
    pub fn new(capacity: u64) -> SlotTable {
        SlotTable { slots: capacity.max(1).next_power_of_two() }
    }

    pub fn slots(&self) -> u64 {
        self.slots
    }

    /// Slot indexes to visit for a binding key: double hashing with an odd
    /// step, so every slot is reachable in a power-of-two table.
    pub fn probes(&self, key: &str) -> impl Iterator<Item = u64> {
        let h = fnv1a(key.as_bytes());
        let mask = self.slots - 1;
        let start = h & mask;
        let step = ((h >> 32) | 1) & mask | 1;
        let n = (MAX_PROBES as u64).min(self.slots);
        (0..n).map(move |i| (start.wrapping_add(i.wrapping_mul(step))) & mask)
    }
}

pub fn slot_key(prefix: &str, index: u64) -> String {
    format!("{prefix}{index}")
}

/// FNV-1a: the hash of the slot table, the VM cache and the module's map shards.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// A slot's content: the binding key it holds and the binding.
pub fn encode_slot(key: &str, binding: &Binding) -> Vec<u8> {
    let mut v = key.as_bytes().to_vec();
    v.push(b'|');
    v.extend_from_slice(&binding.encode());
    v
}

fn decode_slot(bytes: &[u8]) -> Option<(&[u8], Option<Binding>)> {
    let sep = bytes.iter().position(|b| *b == b'|')?;
    let (k, rest) = bytes.split_at(sep);
    Some((k, rest.get(1..).and_then(Binding::decode)))
}

/// What an insert does at one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotPut {
    /// Free, or holding an expired binding: write here.
    Take,
    /// Holds this key's live binding to the same certificate.
    AlreadyBound,
    /// Holds this key's live binding to another certificate: never overwritten.
    Conflict,
    /// Holds another live binding: try the next slot.
    Next,
}

pub fn put_at(slot: Option<&[u8]>, key: &str, new: &Binding, now: i64) -> SlotPut {
    let Some(bytes) = slot.filter(|b| !b.is_empty()) else { return SlotPut::Take };
    match decode_slot(bytes) {
        None => SlotPut::Take,
        Some((_, None)) => SlotPut::Take,
        Some((_, Some(b))) if !b.is_live(now) => SlotPut::Take,
        Some((k, Some(b))) if k == key.as_bytes() => {
            if b.thumbprint.ct_eq(&new.thumbprint) {
                SlotPut::AlreadyBound
            } else {
                SlotPut::Conflict
            }
        }
        Some(_) => SlotPut::Next,
    }
}

/// What a lookup finds at one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotGet {
    Found(Binding),
    /// The key's binding has expired, or the slot was never used: it is not bound.
    Absent,
    Next,
}

pub fn get_at(slot: Option<&[u8]>, key: &str, now: i64) -> SlotGet {
    let Some(bytes) = slot.filter(|b| !b.is_empty()) else { return SlotGet::Absent };
    match decode_slot(bytes) {
        Some((k, Some(b))) if k == key.as_bytes() && b.is_live(now) => SlotGet::Found(b),
        // Another key, or this key's expired binding: a live one may be further on.
        _ => SlotGet::Next,
    }
}

/// Where an insert goes, decided over the whole probe window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutPlan<C> {
    /// The key already has a live binding to the same certificate.
    AlreadyBound,
    /// The key has a live binding to another certificate: never overwritten.
    Conflict,
    /// The first free or expired slot, with the version read (for compare-and-swap).
    Write { index: u64, cas: C },
    /// Every slot of the window holds another live binding.
    Full,
}

/// Plans a put-if-absent: a live binding of the key anywhere in its probe
/// window wins over a free slot before it (else a reissued token string
/// would shadow its live binding). The window ends at a never-used slot.
pub fn plan_put<C, E>(
    table: SlotTable,
    key: &str,
    new: &Binding,
    now: i64,
    read: impl FnMut(u64) -> Result<(Option<Vec<u8>>, C), E>,
) -> Result<PutPlan<C>, E> {
    plan_put_counted(table, key, new, now, read).map(|(plan, _)| plan)
}

/// [`plan_put`], and whether the write fills a slot that holds no binding
/// (never used, or swept): only then does the count of used slots grow.
/// Taking a slot whose binding expired replaces one counted binding by another.
pub fn plan_put_counted<C, E>(
    table: SlotTable,
    key: &str,
    new: &Binding,
    now: i64,
    mut read: impl FnMut(u64) -> Result<(Option<Vec<u8>>, C), E>,
) -> Result<(PutPlan<C>, bool), E> {
    let mut first_free: Option<(u64, C, bool)> = None;
    for index in table.probes(key) {
        let (value, cas) = read(index)?;
        let never_used = value.as_deref().is_none_or(|v| v.is_empty());
        match put_at(value.as_deref(), key, new, now) {
            SlotPut::AlreadyBound => return Ok((PutPlan::AlreadyBound, false)),
            SlotPut::Conflict => return Ok((PutPlan::Conflict, false)),
            SlotPut::Take if first_free.is_none() => {
                let fills = occupancy(value.as_deref(), now) == Occupancy::Free;
                first_free = Some((index, cas, fills));
            }
            SlotPut::Take | SlotPut::Next => {}
        }
        if never_used {
            break;
        }
    }
    Ok(first_free.map_or((PutPlan::Full, false), |(index, cas, fills)| (PutPlan::Write { index, cas }, fills)))
}

// ------------------------------------------------------------------ used slots

/// What a slot holds, as the count of used slots sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupancy {
    /// Never used, or swept (a tombstone): not counted.
    Free,
    /// A binding not yet expired: counted.
    Live,
    /// A binding that expired: still counted until the sweep replaces it by a tombstone.
    Expired,
}

/// What the sweep writes over an expired binding: not a binding (a put may take
/// the slot, a lookup goes on past it), and not "never used" (the probe window
/// does not end there). The memory of the old binding is freed.
pub const TOMBSTONE: &[u8] = b"|";

pub fn occupancy(slot: Option<&[u8]>, now: i64) -> Occupancy {
    match slot.filter(|b| !b.is_empty()).and_then(decode_slot) {
        Some((_, Some(b))) if b.is_live(now) => Occupancy::Live,
        Some((_, Some(_))) => Occupancy::Expired,
        _ => Occupancy::Free,
    }
}

/// How many slots one sweep step visits: a full pass over the table in
/// about `SWEEP_PASS_STEPS` steps, and never more than `SWEEP_MAX_CHUNK`
/// reads per step (a step runs on a worker between requests).
pub fn sweep_chunk(table: SlotTable) -> u64 {
    (table.slots() / SWEEP_PASS_STEPS).clamp(SWEEP_MIN_CHUNK.min(table.slots()), SWEEP_MAX_CHUNK)
}

pub const SWEEP_PASS_STEPS: u64 = 60;
pub const SWEEP_MIN_CHUNK: u64 = 1024;
pub const SWEEP_MAX_CHUNK: u64 = 16384;

/// The slots of the sweep step starting at `cursor` (wrapped into the table),
/// and the cursor of the next step.
pub fn sweep_step(table: SlotTable, cursor: u64) -> (std::ops::Range<u64>, u64) {
    let start = cursor % table.slots();
    let end = (start + sweep_chunk(table)).min(table.slots());
    (start..end, end % table.slots())
}

/// A count kept in one shared-data value (decimal); absent or unreadable is 0.
pub fn parse_count(value: Option<&[u8]>) -> u64 {
    value.and_then(|v| std::str::from_utf8(v).ok()).and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// The count after adding `delta` (never below zero).
pub fn adjust_count(current: u64, delta: i64) -> u64 {
    current.saturating_add_signed(delta)
}

/// Sweeps one step of the table: every expired binding in `range` becomes a
/// tombstone (by compare-and-swap, so a slot a put took meanwhile is left
/// alone, and two sweepers never both count one slot). Returns how many
/// counted bindings left the table.
pub fn sweep<C, E>(
    range: std::ops::Range<u64>,
    now: i64,
    mut read: impl FnMut(u64) -> Result<(Option<Vec<u8>>, C), E>,
    mut tombstone: impl FnMut(u64, C) -> Result<bool, E>,
) -> Result<u64, E> {
    let mut freed = 0;
    for index in range {
        let (value, cas) = read(index)?;
        if occupancy(value.as_deref(), now) == Occupancy::Expired && tombstone(index, cas)? {
            freed += 1;
        }
    }
    Ok(freed)
}

/// Looks a key's live binding up over its probe window.
pub fn find<E>(
    table: SlotTable,
    key: &str,
    now: i64,
    mut read: impl FnMut(u64) -> Result<Option<Vec<u8>>, E>,
) -> Result<Option<Binding>, E> {
    for index in table.probes(key) {
        match get_at(read(index)?.as_deref(), key, now) {
            SlotGet::Found(b) => return Ok(Some(b)),
            SlotGet::Absent => return Ok(None),
            SlotGet::Next => {}
        }
    }
    Ok(None)
}

// ------------------------------------------------------------------ etcd

fn b64(s: &[u8]) -> String {
    STANDARD.encode(s)
}

/// `POST /v3/kv/range` body for one key.
pub fn etcd_range(key: &str) -> Vec<u8> {
    json!({ "key": b64(key.as_bytes()) }).to_string().into_bytes()
}

/// `POST /v3/kv/range` body for every key under a prefix.
pub fn etcd_range_prefix(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last = last.saturating_add(1);
    }
    json!({ "key": b64(prefix.as_bytes()), "range_end": b64(&end) }).to_string().into_bytes()
}

/// `POST /v3/kv/put` body (the CLI registers clients with it).
pub fn etcd_put(key: &str, value: &[u8]) -> Vec<u8> {
    json!({ "key": b64(key.as_bytes()), "value": b64(value) }).to_string().into_bytes()
}

/// `POST /v3/kv/deleterange` body for one key.
pub fn etcd_delete(key: &str) -> Vec<u8> {
    etcd_range(key)
}

/// `POST /v3/kv/txn` body: put every binding, each under its lease, if none
/// of the keys exists (`create_revision == 0`). A binding is never overwritten.
pub fn etcd_put_if_absent(entries: &[(String, Binding, i64)]) -> Vec<u8> {
    let compare: Vec<Value> = entries
        .iter()
        .map(|(k, _, _)| json!({"key": b64(k.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}))
        .collect();
    let success: Vec<Value> = entries
        .iter()
        .map(|(k, b, lease)| json!({"request_put": {"key": b64(k.as_bytes()), "value": b64(&b.encode()), "lease": lease.to_string()}}))
        .collect();
    let failure: Vec<Value> =
        entries.iter().map(|(k, _, _)| json!({"request_range": {"key": b64(k.as_bytes())}})).collect();
    json!({ "compare": compare, "success": success, "failure": failure }).to_string().into_bytes()
}

/// `POST /v3/lease/grant` body.
pub fn etcd_lease_grant(ttl_seconds: i64) -> Vec<u8> {
    json!({ "TTL": ttl_seconds.to_string() }).to_string().into_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdError(pub String);

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_json(body: &[u8]) -> Result<Value, EtcdError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| EtcdError("etcd answered something that is not JSON".into()))?;
    if let Some(e) = v.get("error").or_else(|| v.get("message")) {
        return Err(EtcdError(format!("etcd error: {}", e.as_str().unwrap_or("unknown"))));
    }
    Ok(v)
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The lease id of a `lease/grant` answer.
pub fn etcd_lease_id(body: &[u8]) -> Result<i64, EtcdError> {
    int(parse_json(body)?.get("ID")).filter(|id| *id != 0).ok_or_else(|| EtcdError("lease grant without an ID".into()))
}

fn values_of(kvs: Option<&Value>) -> Vec<(String, Vec<u8>)> {
    kvs.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|kv| {
                    let k = STANDARD.decode(kv.get("key")?.as_str()?).ok()?;
                    let v = STANDARD.decode(kv.get("value").and_then(Value::as_str).unwrap_or("")).ok()?;
                    Some((String::from_utf8(k).ok()?, v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The key/values of a `kv/range` answer.
pub fn etcd_range_values(body: &[u8]) -> Result<Vec<(String, Vec<u8>)>, EtcdError> {
    Ok(values_of(parse_json(body)?.get("kvs")))
}

/// The outcome of the put-if-absent transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    Written,
    /// Some key existed: its stored values, to tell a retry from a conflict.
    Existing(Vec<(String, Vec<u8>)>),
}

pub fn etcd_txn_outcome(body: &[u8]) -> Result<TxnOutcome, EtcdError> {
    let v = parse_json(body)?;
    if v.get("succeeded").and_then(Value::as_bool).unwrap_or(false) {
        return Ok(TxnOutcome::Written);
    }
    let existing = v
        .get("responses")
        .and_then(Value::as_array)
        .map(|rs| rs.iter().flat_map(|r| values_of(r.get("response_range").and_then(|rr| rr.get("kvs")))).collect())
        .unwrap_or_default();
    Ok(TxnOutcome::Existing(existing))
}

/// Leases are shared by bindings that expire close together: one lease per
/// `bucket` seconds of expiry time, living until the end of its bucket.
pub fn lease_bucket(expires_at: i64, bucket: i64) -> i64 {
    let bucket = bucket.max(1);
    expires_at.div_euclid(bucket) * bucket + bucket
}

/// Where bindings live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Envoy shared data: one Envoy process, all its workers.
    SharedData { capacity: u64 },
    /// etcd through its v3 JSON gateway, for several Envoy replicas (shared by
    /// `Rc` with the streams waiting on etcd).
    Etcd(Rc<EtcdConfig>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// The Envoy cluster that reaches etcd's client port.
    pub cluster: String,
    pub authority: String,
    /// Prepended to every key certbound writes (keys are `<prefix>certbound/b/<hash>`).
    pub key_prefix: String,
    pub timeout_ms: u64,
    /// Slots of the per-Envoy read cache (shared data); 0: no cache.
    pub cache_capacity: u64,
    /// When etcd cannot answer a read: refuse (`true`) or treat the token as unbound.
    pub fail_closed: bool,
    pub lease_bucket_seconds: i64,
    /// Read registered clients from `<key_prefix>certbound/clients/` this often; 0: never.
    pub clients_refresh_seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::TokenKind;
    use crate::cert::Thumbprint;

    /// The store's tests' clock (this module's, the per-VM cache's, the etcd writes').
    pub(super) const NOW: i64 = 1_800_000_000;

    /// An access-token binding to the certificate `t`, live until `exp`.
    pub(super) fn b(t: &[u8], exp: i64) -> Binding {
        Binding { thumbprint: Thumbprint::of_der(t), kind: TokenKind::Access, expires_at: exp }
    }

    #[test]
    fn table_size_is_a_power_of_two_and_probes_stay_inside() {
        let t = SlotTable::new(1000);
        assert_eq!(t.slots(), 1024);
        for k in ["a", "b", "certbound/b/xyz"] {
            let p: Vec<u64> = t.probes(k).collect();
            assert_eq!(p.len(), MAX_PROBES);
            assert!(p.iter().all(|i| *i < 1024));
            let mut d = p.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), p.len(), "probes of {k} repeat");
        }
        assert_eq!(SlotTable::new(4).probes("x").count(), 4);
    }

    #[test]
    fn insert_takes_free_or_expired_slots_and_never_a_live_one() {
        let live = encode_slot("k1", &b(b"a", NOW + 10));
        let expired = encode_slot("k1", &b(b"a", NOW - 1));
        assert_eq!(put_at(None, "k2", &b(b"c", NOW + 5), NOW), SlotPut::Take);
        assert_eq!(put_at(Some(&expired), "k2", &b(b"c", NOW + 5), NOW), SlotPut::Take);
        assert_eq!(put_at(Some(&live), "k2", &b(b"c", NOW + 5), NOW), SlotPut::Next);
        assert_eq!(put_at(Some(&live), "k1", &b(b"a", NOW + 5), NOW), SlotPut::AlreadyBound);
        assert_eq!(put_at(Some(&live), "k1", &b(b"z", NOW + 5), NOW), SlotPut::Conflict);
    }

    /// A shared-data table in memory: slot index -> content.
    fn table_with(t: SlotTable, key: &str, contents: &[(usize, Vec<u8>)]) -> std::collections::HashMap<u64, Vec<u8>> {
        let probes: Vec<u64> = t.probes(key).collect();
        contents.iter().map(|(i, v)| (probes[*i], v.clone())).collect()
    }

    fn plan(t: SlotTable, m: &std::collections::HashMap<u64, Vec<u8>>, key: &str, new: &Binding) -> PutPlan<()> {
        plan_put::<(), ()>(t, key, new, NOW, |i| Ok((m.get(&i).cloned(), ()))).unwrap()
    }

    #[test]
    fn a_live_binding_further_along_the_window_is_found_before_a_free_slot_is_taken() {
        let t = SlotTable::new(1024);
        let probes: Vec<u64> = t.probes("k").collect();
        // Slot 0: another key's expired binding; slot 1: another live one; slot 2: k's live binding.
        let m = table_with(
            t,
            "k",
            &[
                (0, encode_slot("other", &b(b"x", NOW - 1))),
                (1, encode_slot("other2", &b(b"x", NOW + 9))),
                (2, encode_slot("k", &b(b"a", NOW + 9))),
            ],
        );
        assert_eq!(plan(t, &m, "k", &b(b"z", NOW + 5)), PutPlan::Conflict);
        assert_eq!(plan(t, &m, "k", &b(b"a", NOW + 5)), PutPlan::AlreadyBound);
        assert_eq!(
            plan(t, &m, "k2", &b(b"a", NOW + 5)),
            PutPlan::Write { index: t.probes("k2").next().unwrap(), cas: () }
        );
        let found = find::<()>(t, "k", NOW, |i| Ok(m.get(&i).cloned())).unwrap();
        assert_eq!(found, Some(b(b"a", NOW + 9)));
        // With the live one gone (expired), the first reusable slot is taken.
        let m = table_with(
            t,
            "k",
            &[(0, encode_slot("other", &b(b"x", NOW - 1))), (1, encode_slot("k", &b(b"a", NOW - 1)))],
        );
        assert_eq!(plan(t, &m, "k", &b(b"z", NOW + 5)), PutPlan::Write { index: probes[0], cas: () });
    }

    #[test]
    fn a_window_of_live_bindings_is_full() {
        let t = SlotTable::new(4);
        let m: std::collections::HashMap<u64, Vec<u8>> =
            (0..4).map(|i| (i, encode_slot(&format!("o{i}"), &b(b"x", NOW + 9)))).collect();
        assert_eq!(plan(t, &m, "k", &b(b"a", NOW + 5)), PutPlan::Full);
    }

    #[test]
    fn an_expired_binding_of_the_key_does_not_hide_a_live_one_further_on() {
        let t = SlotTable::new(1024);
        let m =
            table_with(t, "k", &[(0, encode_slot("k", &b(b"a", NOW - 1))), (1, encode_slot("k", &b(b"b", NOW + 9)))]);
        assert_eq!(find::<()>(t, "k", NOW, |i| Ok(m.get(&i).cloned())).unwrap(), Some(b(b"b", NOW + 9)));
    }

    #[test]
    fn lookup_finds_its_key_skips_others_and_stops_at_a_never_used_slot() {
        let slot = encode_slot("k1", &b(b"a", NOW + 10));
        assert_eq!(get_at(Some(&slot), "k1", NOW), SlotGet::Found(b(b"a", NOW + 10)));
        assert_eq!(get_at(Some(&slot), "k1", NOW + 10), SlotGet::Next);
        assert_eq!(get_at(Some(&slot), "k2", NOW), SlotGet::Next);
        assert_eq!(get_at(None, "k2", NOW), SlotGet::Absent);
        assert_eq!(get_at(Some(b""), "k2", NOW), SlotGet::Absent);
    }

    #[test]
    fn a_put_fills_a_free_or_swept_slot_and_replaces_an_expired_binding() {
        let t = SlotTable::new(1024);
        let read = |m: &std::collections::HashMap<u64, Vec<u8>>| {
            plan_put_counted::<(), ()>(t, "k", &b(b"a", NOW + 5), NOW, |i| Ok((m.get(&i).cloned(), ()))).unwrap()
        };
        let first = t.probes("k").next().unwrap();
        let empty = std::collections::HashMap::new();
        assert_eq!(read(&empty), (PutPlan::Write { index: first, cas: () }, true));
        let swept = table_with(t, "k", &[(0, TOMBSTONE.to_vec())]);
        assert_eq!(read(&swept), (PutPlan::Write { index: first, cas: () }, true));
        let expired = table_with(t, "k", &[(0, encode_slot("o", &b(b"x", NOW - 1)))]);
        assert_eq!(read(&expired), (PutPlan::Write { index: first, cas: () }, false));
        let bound = table_with(t, "k", &[(0, encode_slot("k", &b(b"a", NOW + 9)))]);
        assert_eq!(read(&bound), (PutPlan::AlreadyBound, false));
        // The plan without the count is the same plan.
        assert_eq!(plan(t, &expired, "k", &b(b"a", NOW + 5)), PutPlan::Write { index: first, cas: () });
    }

    #[test]
    fn a_tombstone_is_free_for_puts_and_passed_by_lookups_and_windows() {
        let t = SlotTable::new(1024);
        assert_eq!(occupancy(Some(TOMBSTONE), NOW), Occupancy::Free);
        assert_eq!(occupancy(None, NOW), Occupancy::Free);
        assert_eq!(occupancy(Some(&encode_slot("k", &b(b"a", NOW + 1))), NOW), Occupancy::Live);
        assert_eq!(occupancy(Some(&encode_slot("k", &b(b"a", NOW))), NOW), Occupancy::Expired);
        assert_eq!(put_at(Some(TOMBSTONE), "k", &b(b"a", NOW + 5), NOW), SlotPut::Take);
        assert_eq!(get_at(Some(TOMBSTONE), "k", NOW), SlotGet::Next);
        // A live binding past a tombstone is still found, and still wins over the tombstone's slot.
        let m = table_with(t, "k", &[(0, TOMBSTONE.to_vec()), (1, encode_slot("k", &b(b"a", NOW + 9)))]);
        assert_eq!(find::<()>(t, "k", NOW, |i| Ok(m.get(&i).cloned())).unwrap(), Some(b(b"a", NOW + 9)));
        assert_eq!(plan(t, &m, "k", &b(b"a", NOW + 5)), PutPlan::AlreadyBound);
    }

    #[test]
    fn the_sweep_frees_expired_bindings_only_and_walks_the_whole_table() {
        let t = SlotTable::new(4);
        let mut m: std::collections::HashMap<u64, (Vec<u8>, u32)> = std::collections::HashMap::new();
        m.insert(0, (encode_slot("a", &b(b"x", NOW - 1)), 1));
        m.insert(1, (encode_slot("b", &b(b"x", NOW + 9)), 1));
        m.insert(2, (TOMBSTONE.to_vec(), 1));
        m.insert(3, (encode_slot("c", &b(b"x", NOW - 5)), 7));
        let cell = std::cell::RefCell::new(m);
        let freed = sweep::<u32, ()>(
            0..4,
            NOW,
            |i| Ok(cell.borrow().get(&i).map_or((None, 0), |(v, c)| (Some(v.clone()), *c))),
            // Slot 3 was taken by a put meanwhile: its compare-and-swap fails, nothing is freed there.
            |i, cas| {
                let mut m = cell.borrow_mut();
                if i == 3 || m.get(&i).map(|e| e.1) != Some(cas) {
                    return Ok(false);
                }
                m.insert(i, (TOMBSTONE.to_vec(), cas + 1));
                Ok(true)
            },
        )
        .unwrap();
        assert_eq!(freed, 1);
        let m = cell.into_inner();
        assert_eq!(m[&0].0, TOMBSTONE);
        assert_eq!(occupancy(Some(&m[&1].0), NOW), Occupancy::Live);
        // Steps cover every slot once per pass, in chunks bounded both ways.
        assert_eq!(sweep_chunk(SlotTable::new(1 << 19)), (1 << 19) / SWEEP_PASS_STEPS);
        assert_eq!(sweep_chunk(SlotTable::new(1 << 24)), SWEEP_MAX_CHUNK);
        assert_eq!(sweep_chunk(SlotTable::new(4096)), SWEEP_MIN_CHUNK);
        assert_eq!(sweep_chunk(t), 4);
        let small = SlotTable::new(3000);
        let (mut cursor, mut seen) = (0, 0);
        loop {
            let (r, next) = sweep_step(small, cursor);
            seen += r.end - r.start;
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(seen, small.slots());
        assert_eq!(sweep_step(small, small.slots() + 5).0.start, 5);
    }

    #[test]
    fn the_used_count_is_a_decimal_that_never_goes_below_zero() {
        assert_eq!(parse_count(None), 0);
        assert_eq!(parse_count(Some(b"garbage")), 0);
        assert_eq!(parse_count(Some(b"42")), 42);
        assert_eq!(adjust_count(42, 1), 43);
        assert_eq!(adjust_count(42, -2), 40);
        assert_eq!(adjust_count(1, -2), 0);
    }

    #[test]
    fn etcd_requests_are_base64_json() {
        let r: Value = serde_json::from_slice(&etcd_range("certbound/b/x")).unwrap();
        assert_eq!(STANDARD.decode(r["key"].as_str().unwrap()).unwrap(), b"certbound/b/x");
        let p: Value = serde_json::from_slice(&etcd_range_prefix("certbound/clients/")).unwrap();
        assert_eq!(STANDARD.decode(p["range_end"].as_str().unwrap()).unwrap(), b"certbound/clients0");
        let t: Value = serde_json::from_slice(&etcd_put_if_absent(&[("k".into(), b(b"a", NOW), 42)])).unwrap();
        assert_eq!(t["compare"][0]["target"], "CREATE");
        assert_eq!(t["compare"][0]["create_revision"], "0");
        assert_eq!(t["success"][0]["request_put"]["lease"], "42");
        let v = STANDARD.decode(t["success"][0]["request_put"]["value"].as_str().unwrap()).unwrap();
        assert_eq!(Binding::decode(&v), Some(b(b"a", NOW)));
        let g: Value = serde_json::from_slice(&etcd_lease_grant(90)).unwrap();
        assert_eq!(g["TTL"], "90");
    }

    #[test]
    fn etcd_answers_are_read() {
        assert_eq!(etcd_lease_id(br#"{"header":{},"ID":"7587","TTL":"90"}"#), Ok(7587));
        assert!(etcd_lease_id(br#"{"error":"etcdserver: no leader","code":14}"#).is_err());
        let kv = format!(r#"{{"kvs":[{{"key":"{}","value":"{}"}}],"count":"1"}}"#, b64(b"k"), b64(b"v"));
        assert_eq!(etcd_range_values(kv.as_bytes()), Ok(vec![("k".into(), b"v".to_vec())]));
        assert_eq!(etcd_range_values(br#"{"header":{}}"#), Ok(vec![]));
        assert_eq!(etcd_txn_outcome(br#"{"header":{},"succeeded":true}"#), Ok(TxnOutcome::Written));
        let failed = format!(
            r#"{{"header":{{}},"responses":[{{"response_range":{{"kvs":[{{"key":"{}","value":"{}"}}]}}}}]}}"#,
            b64(b"k"),
            b64(b"v")
        );
        assert_eq!(etcd_txn_outcome(failed.as_bytes()), Ok(TxnOutcome::Existing(vec![("k".into(), b"v".to_vec())])));
        assert!(etcd_txn_outcome(b"<html>").is_err());
    }

    #[test]
    fn leases_are_shared_per_bucket_and_outlive_their_bindings() {
        assert_eq!(lease_bucket(1_000, 60), 1_020);
        assert_eq!(lease_bucket(1_019, 60), 1_020);
        assert_eq!(lease_bucket(1_020, 60), 1_080);
        assert!(lease_bucket(NOW, 60) > NOW);
    }
}
