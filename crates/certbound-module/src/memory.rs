//! The process-wide map the dynamic module keeps its bindings in: what
//! Envoy's shared data is to the `.wasm`, shared by every worker thread,
//! with a version per key for compare-and-swap. Bounded by the slot table
//! (the keys are slots), so its memory is bounded by `store.capacity`.

use certbound_core::flow::HostError;
use certbound_core::shared::{SetError, CREATE_ONLY};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

const SHARDS: usize = 64;

type Shard = Mutex<HashMap<Box<str>, (Box<[u8]>, u32)>>;

fn shards() -> &'static [Shard] {
    static MAP: OnceLock<Vec<Shard>> = OnceLock::new();
    MAP.get_or_init(|| (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect())
}

fn shard(key: &str) -> Result<&'static Shard, HostError> {
    let h = certbound_core::store::fnv1a(key.as_bytes());
    shards().get((h as usize) % SHARDS).ok_or(HostError(10))
}

/// The value and its version; `(None, None)` when absent.
pub fn get(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
    // A poisoned lock (a panic on another thread while it held it) is an internal failure, not a panic here.
    let map = shard(key)?.lock().map_err(|_| HostError(10))?;
    Ok(match map.get(key) {
        Some((v, cas)) => (Some(v.to_vec()), Some(*cas)),
        None => (None, None),
    })
}

/// The next version of a key: never 0 (no version) nor `CREATE_ONLY`.
fn next_version(v: u32) -> u32 {
    match v.wrapping_add(1) {
        0 | CREATE_ONLY => 1,
        n => n,
    }
}

/// Writes if the key's version is still `cas` (`None` or 0: whatever it is);
/// an absent key is created, as Envoy's shared data does. An existing key
/// never has version `CREATE_ONLY`, so a write with it creates only.
pub fn set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
    let mut map = shard(key).map_err(SetError::Host)?.lock().map_err(|_| SetError::Host(HostError(10)))?;
    match map.get_mut(key) {
        Some(entry) => {
            if cas.is_some_and(|c| c != 0 && c != entry.1) {
                return Err(SetError::CasMismatch);
            }
            *entry = (value.into(), next_version(entry.1));
        }
        None => {
            map.insert(key.into(), (value.into(), 1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap_as_shared_data() {
        let key = "test/cas";
        assert_eq!(get(key).unwrap(), (None, None));
        set(key, b"a", None).unwrap();
        let (v, cas) = get(key).unwrap();
        assert_eq!(v.as_deref(), Some(&b"a"[..]));
        set(key, b"b", cas).unwrap();
        assert_eq!(set(key, b"c", cas), Err(SetError::CasMismatch));
        assert_eq!(get(key).unwrap().0.as_deref(), Some(&b"b"[..]));
        // An absent key is created; a key that exists is never overwritten by a create-only write.
        set("test/created", b"x", Some(CREATE_ONLY)).unwrap();
        assert_eq!(set("test/created", b"y", Some(CREATE_ONLY)), Err(SetError::CasMismatch));
        assert_eq!(get("test/created").unwrap().0.as_deref(), Some(&b"x"[..]));
        assert_eq!(next_version(u32::MAX - 1), 1);
    }
}
