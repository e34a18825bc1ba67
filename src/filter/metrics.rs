//! Envoy counters for every decision (shown by Envoy as `wasmcustom.certbound.*`).

use crate::error::Reason;
use log::debug;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

#[derive(Debug, Default)]
pub struct Metrics {
    client_authenticated: Option<u32>,
    tokens_bound: Option<u32>,
    unbound_token_responses: Option<u32>,
    introspection_patched: Option<u32>,
    resource_allowed: Option<u32>,
    untrusted_header_removed: Option<u32>,
    store_errors: Option<u32>,
    metadata_patched: Option<u32>,
    metadata_unpatched: Option<u32>,
    store_retries: Option<u32>,
    certificate_conflicts: Option<u32>,
    resource_allowed_unbound: Option<u32>,
    introspection_unpatched: Option<u32>,
    refused: Vec<(Reason, Option<u32>)>,
}

fn counter(name: &str) -> Option<u32> {
    match hostcalls::define_metric(MetricType::Counter, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("certbound: cannot define counter {name}: {status:?}");
            None
        }
    }
}

fn bump(id: Option<u32>, by: i64) {
    if let Some(id) = id {
        if let Err(status) = hostcalls::increment_metric(id, by) {
            debug!("certbound: counter {id} not incremented: {status:?}");
        }
    }
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            client_authenticated: counter("certbound.client_authenticated"),
            tokens_bound: counter("certbound.tokens_bound"),
            unbound_token_responses: counter("certbound.unbound_token_responses"),
            introspection_patched: counter("certbound.introspection_patched"),
            resource_allowed: counter("certbound.resource_allowed"),
            untrusted_header_removed: counter("certbound.untrusted_header_removed"),
            store_errors: counter("certbound.store_errors"),
            metadata_patched: counter("certbound.metadata_patched"),
            metadata_unpatched: counter("certbound.metadata_unpatched"),
            store_retries: counter("certbound.store_retries"),
            certificate_conflicts: counter("certbound.certificate_conflicts"),
            resource_allowed_unbound: counter("certbound.resource_allowed_unbound"),
            introspection_unpatched: counter("certbound.introspection_unpatched"),
            refused: Reason::ALL.iter().map(|r| (*r, counter(&format!("certbound.refused.{}", r.as_str())))).collect(),
        }
    }

    pub fn client_authenticated(&self) {
        bump(self.client_authenticated, 1);
    }

    pub fn tokens_bound(&self, n: usize) {
        bump(self.tokens_bound, n as i64);
    }

    pub fn unbound_token_response(&self) {
        bump(self.unbound_token_responses, 1);
    }

    pub fn metadata_patched(&self) {
        bump(self.metadata_patched, 1);
    }

    pub fn metadata_unpatched(&self) {
        bump(self.metadata_unpatched, 1);
    }

    pub fn store_error(&self) {
        bump(self.store_errors, 1);
    }

    pub fn store_retry(&self) {
        bump(self.store_retries, 1);
    }

    pub fn untrusted_header_removed(&self) {
        bump(self.untrusted_header_removed, 1);
    }

    pub fn certificate_conflict(&self) {
        bump(self.certificate_conflicts, 1);
    }

    pub fn resource_allowed(&self) {
        bump(self.resource_allowed, 1);
    }

    pub fn resource_allowed_unbound(&self) {
        bump(self.resource_allowed_unbound, 1);
    }

    pub fn introspection_patched(&self) {
        bump(self.introspection_patched, 1);
    }

    pub fn introspection_unpatched(&self) {
        bump(self.introspection_unpatched, 1);
    }

    pub fn refused(&self, reason: Reason) {
        if let Some((_, id)) = self.refused.iter().find(|(r, _)| *r == reason) {
            bump(*id, 1);
        }
    }
}
