//! The core's [`StreamHost`] over this stream's host calls (every `extern "C"` is in `abi.rs`).

use super::abi::{
    body, now, property, replace_body, request_header, request_headers, response_header, route_metadata,
    set_request_header, set_response_header, STATUS_INTERNAL_FAILURE,
};
use super::store_calls::WasmShared;
use crate::config::EtcdConfig;
use crate::counter::Counter;
use crate::decision::{Decision, NAMESPACE};
use crate::error::Reason;
use crate::flow::{Attribute, Body, Host, HostError};
use crate::shared::{SetError, SharedData};
use crate::stream::StreamHost;
use proxy_wasm::types::BufferType;

/// The core's [`Host`] over this stream's host calls.
pub struct WasmHost<'a> {
    pub metrics: &'a super::metrics::Metrics,
}

fn buffer_of(which: Body) -> BufferType {
    match which {
        Body::Request => BufferType::HttpRequestBody,
        Body::Response => BufferType::HttpResponseBody,
    }
}

impl Host for WasmHost<'_> {
    fn request_header(&mut self, name: &str) -> Option<String> {
        request_header(name)
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        set_request_header(name, value).map_err(|s| HostError(s.0))
    }
    fn response_header(&mut self, name: &str) -> Option<String> {
        response_header(name)
    }
    fn set_response_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        set_response_header(name, value).map_err(|s| HostError(s.0))
    }
    fn body(&mut self, which: Body, size: usize) -> Result<Vec<u8>, HostError> {
        body(buffer_of(which), size).map_err(|s| HostError(s.0))
    }
    fn replace_body(&mut self, which: Body, size: usize, data: &[u8]) -> Result<(), HostError> {
        replace_body(buffer_of(which), size, data).map_err(|s| HostError(s.0))
    }
    fn now(&mut self) -> Result<i64, HostError> {
        // The SDK's clock read reports no status of its own.
        now().ok_or(HostError(STATUS_INTERNAL_FAILURE))
    }
    fn attribute(&mut self, attribute: Attribute<'_>) -> Result<Option<Vec<u8>>, HostError> {
        // proxy-wasm names every attribute by its path.
        property(&attribute.path()).map_err(|s| HostError(s.0))
    }
    fn count(&mut self, counter: Counter) {
        self.metrics.count(counter);
    }
    fn log(&mut self, level: log::Level, message: &str) {
        log::log!(level, "{message}");
    }
}

impl SharedData for WasmHost<'_> {
    fn shared_get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        WasmShared.shared_get(key)
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        WasmShared.shared_set(key, value, cas)
    }
}

impl StreamHost for WasmHost<'_> {
    fn send_local_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
        super::abi::send_local_response(status, headers, body).map_err(|s| HostError(s.0))
    }
    fn reset(&mut self) {
        let _ = super::abi::reset_request();
    }
    fn request_headers(&mut self) -> Vec<(String, String)> {
        request_headers()
    }
    fn route_metadata(&mut self, key: &str) -> Option<String> {
        route_metadata(key)
    }
    fn etcd_call(&mut self, cfg: &EtcdConfig, path: &str, body: &[u8]) -> Result<u64, String> {
        super::store_calls::etcd_call(cfg, path, body).map(u64::from)
    }
    fn refused(&mut self, reason: Reason) {
        self.metrics.refused(reason);
    }
    fn reported(&mut self, reason: Reason) {
        self.metrics.reported(reason);
    }
    fn decided(&mut self, decision: &Decision) {
        // One filter state value, `wasm.certbound` (a JSON object): Envoy's proxy-wasm
        // writes filter state only, and one host call costs less than one per member.
        if let Err(s) = super::abi::set_property(NAMESPACE, decision.json().as_bytes()) {
            log::debug!("certbound: the decision was not written to filter state: host status {}", s.0);
        }
    }
    fn slots_used(&mut self, used: u64) {
        self.metrics.slots_used(used);
    }
    fn log_line(&mut self, level: log::Level, line: &str) {
        log::log!(level, "{line}");
    }
}
