//! A per-VM (per Envoy worker) cache of store hits. A binding is
//! put-if-absent and never changes while it lives, so a hit read from shared
//! data or etcd stays true until the binding's own expiry: the cache keeps
//! hits only (a miss may become a binding at any time), and a read past the
//! expiry drops the entry.
//!
//! Bounded: a fixed number of entries, direct-mapped by a hash of the key
//! (a new entry replaces whatever held its place: eviction costs nothing,
//! and the memory is fixed when the cache is made).

use crate::binding::Binding;

#[derive(Debug, Clone)]
pub struct VmCache {
    entries: Vec<Option<(Box<str>, Binding)>>,
    /// Unix seconds as the shell's tick last read them (at most about a second
    /// old): lookups use it instead of a host call for the clock. A binding
    /// read against it counts as live up to a second after its expiry: never
    /// a token taken for unbound.
    clock: Option<i64>,
}

/// Most entries a cache may have (`store.vm_cache_entries`).
pub const MAX_ENTRIES: usize = 1 << 20;
pub const DEFAULT_ENTRIES: usize = 4096;

impl VmCache {
    /// A cache of `entries` places; 0 makes a cache that keeps nothing.
    pub fn new(entries: usize) -> VmCache {
        VmCache { entries: vec![None; entries.min(MAX_ENTRIES)], clock: None }
    }

    /// The shell's tick read the clock (`None`: it could not, and lookups read it themselves).
    pub fn set_clock(&mut self, now: Option<i64>) {
        self.clock = now.filter(|t| *t > 0);
    }

    /// Unix seconds as the last tick read them, if the shell ticks.
    pub fn clock(&self) -> Option<i64> {
        self.clock
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    fn place(&self, key: &str) -> Option<usize> {
        let n = self.entries.len() as u64;
        (n > 0).then(|| (crate::store::fnv1a(key.as_bytes()) % n) as usize)
    }

    /// The key's binding if it is cached and still live at `now`.
    pub fn get(&mut self, key: &str, now: i64) -> Option<Binding> {
        let place = self.place(key)?;
        let entry = self.entries.get_mut(place)?;
        match entry {
            Some((k, b)) if &**k == key => {
                if b.is_live(now) {
                    Some(*b)
                } else {
                    *entry = None;
                    None
                }
            }
            _ => None,
        }
    }

    /// Keeps a binding the store answered with (a hit); an expired one is not kept.
    pub fn put(&mut self, key: &str, binding: &Binding, now: i64) {
        if !binding.is_live(now) {
            return;
        }
        if let Some(entry) = self.place(key).and_then(|i| self.entries.get_mut(i)) {
            *entry = Some((key.into(), *binding));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{b, NOW};

    #[test]
    fn a_hit_is_kept_until_the_bindings_own_expiry() {
        let mut c = VmCache::new(16);
        assert_eq!(c.get("k", NOW), None);
        c.put("k", &b(b"a", NOW + 10), NOW);
        assert_eq!(c.get("k", NOW), Some(b(b"a", NOW + 10)));
        assert_eq!(c.get("k", NOW + 9), Some(b(b"a", NOW + 10)));
        assert_eq!(c.get("k", NOW + 10), None);
        // Dropped on that read: not there even if the clock went back.
        assert_eq!(c.get("k", NOW), None);
    }

    #[test]
    fn an_expired_binding_is_never_kept_and_another_key_is_no_hit() {
        let mut c = VmCache::new(16);
        c.put("k", &b(b"a", NOW), NOW);
        assert_eq!(c.get("k", NOW - 1), None);
        c.put("k", &b(b"a", NOW + 5), NOW);
        assert_eq!(c.get("k2", NOW), None);
    }

    #[test]
    fn the_cache_is_bounded_and_a_new_entry_replaces_the_one_in_its_place() {
        let mut c = VmCache::new(8);
        for i in 0..1000 {
            c.put(&format!("key{i}"), &b(b"a", NOW + 10), NOW);
        }
        assert_eq!(c.capacity(), 8);
        let hits = (0..1000).filter(|i| c.get(&format!("key{i}"), NOW).is_some()).count();
        assert!(hits <= 8 && hits > 0, "{hits}");
        // The last one written is always there.
        assert!(c.get("key999", NOW).is_some());
    }

    #[test]
    fn a_cache_of_zero_entries_keeps_nothing() {
        let mut c = VmCache::new(0);
        c.put("k", &b(b"a", NOW + 10), NOW);
        assert_eq!(c.get("k", NOW), None);
    }
}
