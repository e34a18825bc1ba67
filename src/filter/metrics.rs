//! Envoy counters for every decision, and the gauges of the shared-data
//! store (shown by Envoy as `wasmcustom.certbound.*`).

use super::abi;
use crate::counter::{metrics, Counter, Metric};
use crate::error::Reason;
use log::debug;

/// Metric ids, defined once at configure time and looked up by position.
#[derive(Debug, Default)]
pub struct Metrics {
    /// By [`Metric::index`]: the decisions, refusals and report-only refusals (the core's table).
    counters: Vec<Option<u32>>,
    /// `certbound.store_slots_used`: slots of the shared-data table holding a
    /// binding (live, or expired and not yet swept); a mirror of the count kept
    /// in shared data, so every worker (and a reloaded configuration) shows one number.
    slots_used: Option<u32>,
    /// `certbound.store_slots_capacity`: slots of the table (0 with etcd).
    slots_capacity: Option<u32>,
}

fn define(name: &str) -> Option<u32> {
    match abi::define_counter(name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("certbound: cannot define counter {name}: {status:?}");
            None
        }
    }
}

fn define_gauge(name: &str) -> Option<u32> {
    match abi::define_gauge(name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("certbound: cannot define gauge {name}: {status:?}");
            None
        }
    }
}

fn record(id: Option<u32>, value: u64) {
    if let Some(id) = id {
        if let Err(status) = abi::record(id, value) {
            debug!("certbound: gauge {id} not recorded: {status:?}");
        }
    }
}

fn bump(id: Option<u32>, by: i64) {
    if let Some(id) = id {
        if let Err(status) = abi::increment(id, by) {
            debug!("certbound: counter {id} not incremented: {status:?}");
        }
    }
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            counters: metrics().map(|m| define(&m.name())).collect(),
            slots_used: define_gauge("certbound.store_slots_used"),
            slots_capacity: define_gauge("certbound.store_slots_capacity"),
        }
    }

    pub fn slots_used(&self, used: u64) {
        record(self.slots_used, used);
    }

    pub fn slots_capacity(&self, slots: u64) {
        record(self.slots_capacity, slots);
    }

    fn bump(&self, metric: Metric, n: usize) {
        bump(self.counters.get(metric.index()).copied().flatten(), n as i64);
    }

    pub fn add(&self, counter: Counter, n: usize) {
        self.bump(Metric::Count(counter), n);
    }

    pub fn count(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn refused(&self, reason: Reason) {
        self.bump(Metric::Refused(reason), 1);
    }

    pub fn reported(&self, reason: Reason) {
        self.bump(Metric::Reported(reason), 1);
    }
}
