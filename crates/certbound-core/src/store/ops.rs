//! Binding looked up and stored, for one stream: this VM's cache of hits, then
//! the shared map or the etcd read cache, then etcd through a callout (sent
//! once more when it fails), a token's legacy key after its key, and the
//! leases and put-if-absent transaction of a write. The stream only hands
//! the answers to the flow that asked; everything about where a binding is
//! lives here, beside the slot table, the shared map, the etcd writes and the
//! per-VM cache.

use super::etcd_write::{EtcdWrite, Outcome as WriteOutcome};
use super::shared::{self, StoreError};
use super::vm_cache::VmCache;
use super::SlotTable;
use crate::binding::{Binding, ToBind, TokenKeys};
use crate::config::{Config, EtcdConfig, StoreConfig};
use crate::counter::Counter;
use crate::flow::BindError;
use crate::keys::ETCD_RANGE as RANGE;
use crate::stream::StreamHost;
use std::cell::RefCell;
use std::rc::Rc;

/// A lookup's answer as the flows take it (`Err`: the store could not answer, and why).
pub type Looked = Result<Option<Binding>, String>;
/// A write's outcome as the token flow takes it.
pub type Stored = Result<(), BindError>;

/// What the store says to a lookup or a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// The answer, now.
    Now(T),
    /// A callout is out: the answer comes with [`Store::callout_done`].
    Later,
}

/// What a callout's answer comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// The lookup the stream waits for is answered.
    Lookup(Looked),
    /// The write the stream waits for is done (or failed).
    Stored(Stored),
    /// Another call is out (a retry, the legacy key, the next step of a write).
    Later,
    /// An answer to a call this stream is not waiting for (`waiting`: the one it waits for).
    Unexpected { waiting: Option<u64> },
}

/// The clock could not be read: nothing was looked up or stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoClock;

/// What a pending etcd call will continue with.
enum Waiting {
    /// A binding lookup (`legacy`: of the token's legacy key).
    Lookup { keys: TokenKeys, legacy: bool },
    /// A step of storing bindings in etcd (a lease grant, or the transaction).
    Write(Box<EtcdWrite>),
}

struct Pending {
    id: u64,
    path: &'static str,
    body: Vec<u8>,
    retried: bool,
    waiting: Waiting,
}

/// One stream's view of the store.
pub struct Store {
    config: Option<Rc<Config>>,
    table: SlotTable,
    /// This VM's (or worker's) cache of store hits, in front of the shared map and etcd.
    vm_cache: Rc<RefCell<VmCache>>,
    pending: Option<Pending>,
}

impl Store {
    pub fn new(config: Option<Rc<Config>>, table: SlotTable, vm_cache: Rc<RefCell<VmCache>>) -> Store {
        Store { config, table, vm_cache, pending: None }
    }

    /// True while a callout is out.
    pub fn waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// True while the call out is a step of a write (the response is held).
    pub fn writing(&self) -> bool {
        matches!(self.pending, Some(Pending { waiting: Waiting::Write(_), .. }))
    }

    /// The stream was answered: whatever was out is no longer waited for.
    pub fn forget(&mut self) {
        self.pending = None;
    }

    /// The etcd read cache, unless configured off.
    fn cache(&self) -> Option<SlotTable> {
        match self.config.as_ref().map(|c| &c.store) {
            Some(StoreConfig::Etcd(cfg)) if cfg.cache_capacity > 0 => Some(self.table),
            _ => None,
        }
    }

    /// The etcd store's configuration, when that is the backend.
    fn etcd(&self) -> Option<Rc<EtcdConfig>> {
        match self.config.as_ref().map(|c| &c.store) {
            Some(StoreConfig::Etcd(cfg)) => Some(cfg.clone()),
            _ => None,
        }
    }

    /// Sends an etcd call and parks its continuation.
    fn send(
        &mut self,
        h: &mut impl StreamHost,
        path: &'static str,
        body: Vec<u8>,
        waiting: Waiting,
    ) -> Result<(), StoreError> {
        let Some(cfg) = self.etcd() else {
            return Err(StoreError::Etcd("not configured".into()));
        };
        let id = h.etcd_call(&cfg, path, &body).map_err(StoreError::Etcd)?;
        self.pending = Some(Pending { id, path, body, retried: false, waiting });
        Ok(())
    }

    /// A lookup answered without a callout: this VM's cache, the shared map,
    /// or a hit in the etcd read cache. `None`: etcd must be asked.
    fn read_local(&self, h: &mut impl StreamHost, key: &str, now: i64) -> Option<Result<Option<Binding>, StoreError>> {
        if let Some(hit) = self.vm_cache.try_borrow_mut().ok().and_then(|mut c| c.get(key, now)) {
            return Some(Ok(Some(hit)));
        }
        let found = match &self.config.as_ref()?.store {
            StoreConfig::SharedData { .. } => Some(shared::get(h, self.table, key, now)),
            StoreConfig::Etcd(cfg) if cfg.cache_capacity == 0 => None,
            StoreConfig::Etcd(_) => shared::cache_get(h, self.table, key, now).map(|b| Ok(Some(b))),
        };
        if let Some(Ok(Some(b))) = &found {
            self.remember_hit(key, b, now);
        }
        found
    }

    /// A binding the store answered with stays true until its expiry: kept in this VM (misses never are).
    fn remember_hit(&self, key: &str, binding: &Binding, now: i64) {
        if let Ok(mut c) = self.vm_cache.try_borrow_mut() {
            c.put(key, binding, now);
        }
    }

    /// A token's binding: from this VM's cache, the shared map or the etcd
    /// read cache at once, or from etcd later. When the token's key finds
    /// nothing, its legacy key is asked the same way.
    pub fn lookup(&mut self, h: &mut impl StreamHost, keys: TokenKeys) -> Result<Answer<Looked>, NoClock> {
        // The clock the shell's tick keeps in this VM, where it ticks: no host call.
        let ticked = self.vm_cache.try_borrow().ok().and_then(|c| c.clock());
        let now = ticked.map_or_else(|| h.now().map_err(|_| NoClock), Ok)?;
        Ok(self.look_up_key(h, keys, false, now))
    }

    fn look_up_key(&mut self, h: &mut impl StreamHost, keys: TokenKeys, legacy: bool, now: i64) -> Answer<Looked> {
        let key = if legacy { keys.legacy.as_deref().unwrap_or(&keys.key) } else { &keys.key };
        let result = match self.read_local(h, key, now) {
            Some(r) => r,
            None => {
                let Some(cfg) = self.etcd() else { return Answer::Now(Err("no store".into())) };
                let body = super::etcd_range(&shared::etcd_key(&cfg, key));
                match self.send(h, RANGE, body, Waiting::Lookup { keys: keys.clone(), legacy }) {
                    Ok(()) => return Answer::Later,
                    Err(e) => Err(e),
                }
            }
        };
        self.key_answered(h, keys, legacy, result, now)
    }

    /// One key's answer: a hit is kept in this VM under the token's key; a
    /// miss of the key goes on to the legacy key, if the token has one.
    fn key_answered(
        &mut self,
        h: &mut impl StreamHost,
        keys: TokenKeys,
        legacy: bool,
        result: Result<Option<Binding>, StoreError>,
        now: i64,
    ) -> Answer<Looked> {
        match &result {
            Ok(Some(b)) if legacy => self.remember_hit(&keys.key, b, now),
            Ok(None) if !legacy && keys.legacy.is_some() => return self.look_up_key(h, keys, true, now),
            _ => {}
        }
        Answer::Now(result.map_err(|e| e.to_string()))
    }

    /// Stores a token response's bindings: in the shared map at once, or in
    /// etcd (leases, then one put-if-absent transaction) while the answer stays held.
    pub fn bind(&mut self, h: &mut impl StreamHost, entries: Vec<ToBind>) -> Result<Answer<Stored>, NoClock> {
        let Some(config) = self.config.clone() else { return Ok(Answer::Now(Ok(()))) };
        let now = h.now().map_err(|_| NoClock)?;
        Ok(match &config.store {
            StoreConfig::SharedData { .. } => {
                let (filled, stored) = shared::put_all(h, self.table, &entries, now);
                if filled > 0 {
                    if let Some(used) = shared::adjust_slots_used(h, filled as i64) {
                        h.slots_used(used);
                    }
                }
                Answer::Now(stored.map_err(|e| bind_error(&e)))
            }
            StoreConfig::Etcd(cfg) => {
                let write = EtcdWrite::new(entries, cfg.lease_bucket_seconds, &cfg.key_prefix, |bucket_end| {
                    shared::cached_lease(h, bucket_end)
                });
                self.write_next(h, write)
            }
        })
    }

    /// Sends the next call of an etcd write (a lease grant, or the put-if-absent transaction).
    fn write_next(&mut self, h: &mut impl StreamHost, write: EtcdWrite) -> Answer<Stored> {
        let now = h.now().unwrap_or_default();
        let call = write.next(now);
        match self.send(h, call.path, call.body, Waiting::Write(Box::new(write))) {
            Ok(()) => Answer::Later,
            Err(e) => Answer::Now(Err(bind_error(&e))),
        }
    }

    /// An etcd callout answered: `answer` is the body of a 200, or why there is none.
    pub fn callout_done(&mut self, h: &mut impl StreamHost, id: u64, answer: Result<Vec<u8>, String>) -> Answered {
        let Some(pending) = self.pending.take() else { return Answered::Unexpected { waiting: None } };
        if pending.id != id {
            let waiting = Some(pending.id);
            self.pending = Some(pending);
            return Answered::Unexpected { waiting };
        }
        let answer = answer.map_err(StoreError::Etcd);
        let now = h.now().unwrap_or_default();
        // A lost connection or a timeout is tried once more (Envoy may pick another member).
        if answer.is_err() && !pending.retried {
            if let Some(cfg) = self.etcd() {
                if let Ok(id) = h.etcd_call(&cfg, pending.path, &pending.body) {
                    h.count(Counter::StoreRetries);
                    self.pending = Some(Pending { id, retried: true, ..pending });
                    return Answered::Later;
                }
            }
        }
        match pending.waiting {
            Waiting::Lookup { keys, legacy } => {
                let cache = self.cache();
                let key = if legacy { keys.legacy.clone().unwrap_or_default() } else { keys.key.clone() };
                let result = answer.and_then(|b| shared::etcd_read(h, &b, &key, cache, now));
                if let Ok(Some(b)) = &result {
                    self.remember_hit(&key, b, now);
                }
                match self.key_answered(h, keys, legacy, result, now) {
                    Answer::Now(r) => Answered::Lookup(r),
                    Answer::Later => Answered::Later,
                }
            }
            Waiting::Write(mut write) => {
                let step = match write.next(now).lease_for {
                    Some(bucket_end) => {
                        match answer.and_then(|b| write.lease_granted(bucket_end, &b).map_err(StoreError::Etcd)) {
                            Ok(id) => {
                                shared::remember_lease(h, bucket_end, Some(id));
                                self.write_next(h, *write)
                            }
                            Err(e) => Answer::Now(Err(bind_error(&e))),
                        }
                    }
                    None => match write.written(answer.as_deref().map_err(|e| e.to_string()), now) {
                        WriteOutcome::Stored => {
                            if let Some(cache) = self.cache() {
                                for e in &write.entries {
                                    shared::cache_put(h, cache, &e.key, &e.binding);
                                }
                            }
                            Answer::Now(Ok(()))
                        }
                        // The remembered leases expired or were revoked in etcd: grant new ones.
                        WriteOutcome::RetryWithNewLeases(forget) => {
                            for end in forget {
                                shared::remember_lease(h, end, None);
                            }
                            self.write_next(h, *write)
                        }
                        WriteOutcome::Conflict => Answer::Now(Err(bind_error(&StoreError::Conflict))),
                        WriteOutcome::Failed(why) => Answer::Now(Err(bind_error(&StoreError::Etcd(why)))),
                    },
                };
                match step {
                    Answer::Now(r) => Answered::Stored(r),
                    Answer::Later => Answered::Later,
                }
            }
        }
    }
}

/// A store failure as the token flow takes it.
fn bind_error(e: &StoreError) -> BindError {
    match e {
        StoreError::Full => BindError::Full,
        other => BindError::Failed(other.to_string()),
    }
}
