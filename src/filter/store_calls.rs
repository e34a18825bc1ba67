//! What the binding store needs of the proxy-wasm host: Envoy's shared data
//! as the core's [`SharedData`], and etcd callouts through
//! `dispatch_http_call`. Every decision is in `crate::shared` and `crate::stream`.

use super::abi;
use super::abi::HostStatus;
use crate::config::EtcdConfig;
use crate::flow::HostError;
use crate::shared::{SetError, SharedData};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};
use std::time::Duration;

/// Envoy's shared data (one map per `vm_id`, shared by every worker's VM).
pub struct WasmShared;

impl SharedData for WasmShared {
    fn shared_get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        abi::shared_get(key).map_err(|s| HostError(s.0))
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        match abi::shared_set(key, value, cas) {
            Ok(()) => Ok(()),
            Err(HostStatus(abi::CAS_MISMATCH)) => Err(SetError::CasMismatch),
            Err(s) => Err(SetError::Host(HostError(s.0))),
        }
    }
}

/// Sends one request to etcd's JSON gateway through the configured cluster
/// (through the SDK: its dispatcher keeps the callout registry that routes the answer here).
pub fn etcd_call(cfg: &EtcdConfig, path: &str, body: &[u8]) -> Result<u32, String> {
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
    .map_err(|s| format!("cannot call cluster {}: {s:?}", cfg.cluster))
}

/// The answer to a dispatched call: its body, or why there is none.
pub fn callout_answer(num_headers: usize, body_size: usize) -> Result<Vec<u8>, String> {
    if num_headers == 0 {
        return Err("no answer (timeout or connection failure)".into());
    }
    let status = super::abi::header_value(MapType::HttpCallResponseHeaders, ":status");
    let body = super::abi::body(BufferType::HttpCallResponseBody, body_size).unwrap_or_default();
    crate::stream::callout_result(status.as_deref().map(str::as_bytes), body)
}
