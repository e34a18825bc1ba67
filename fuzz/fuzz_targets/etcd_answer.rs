//! Answers from etcd's JSON gateway and binding records.
#![no_main]
use certbound::store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = store::etcd_range_values(data);
    let _ = store::etcd_txn_outcome(data);
    let _ = store::etcd_lease_id(data);
    let _ = certbound::binding::Binding::decode(data);
    let _ = store::get_at(Some(data), "certbound/b/k", 1_800_000_000);
});
