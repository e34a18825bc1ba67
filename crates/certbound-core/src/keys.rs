//! Every name certbound writes in Envoy shared data and in etcd, in one place.

/// A binding: `certbound/b/` + base64url(SHA-256(token)) (the token is never stored).
pub const BINDING_PREFIX: &str = "certbound/b/";
/// The shared-data store's slots: `certbound/s/<index>`.
pub const SLOT_PREFIX: &str = "certbound/s/";
/// The slot table's size, fixed by the first configuration that used it.
pub const TABLE_META: &str = "certbound/s/meta";
/// How many slots of the table hold a binding (live, or expired and not yet swept): a decimal count.
pub const TABLE_USED: &str = "certbound/s/used";
/// Where the sweep of expired slots goes on: the next slot index, decimal.
pub const SWEEP_CURSOR: &str = "certbound/s/sweep";
/// The etcd read cache's slots in shared data: `certbound/c/<index>`.
pub const CACHE_PREFIX: &str = "certbound/c/";
/// The etcd lease of a lease bucket, remembered in shared data: `certbound/l/<bucket end>`.
pub const LEASE_PREFIX: &str = "certbound/l/";
/// Registered clients in etcd: `<key_prefix>certbound/clients/<client_id>`.
pub const CLIENTS_PREFIX: &str = "certbound/clients/";

/// etcd's v3 JSON gateway paths certbound calls.
pub const ETCD_RANGE: &str = "/v3/kv/range";
pub const ETCD_PUT: &str = "/v3/kv/put";
pub const ETCD_DELETE_RANGE: &str = "/v3/kv/deleterange";
pub const ETCD_TXN: &str = "/v3/kv/txn";
pub const ETCD_LEASE_GRANT: &str = "/v3/lease/grant";

/// The shared-data key of a lease bucket.
pub fn lease_key(bucket_end: i64) -> String {
    format!("{LEASE_PREFIX}{bucket_end}")
}
