//! Host calls that can fail, each mapped to a value or an error the caller handles.

use super::store_calls::WasmShared;
use crate::config::EtcdConfig;
use crate::counter::Counter;
use crate::decision::{Decision, NAMESPACE};
use crate::error::Reason;
use crate::flow::{Body, Host, HostError};
use crate::shared::{SetError, SharedData};
use crate::stream::StreamHost;
use proxy_wasm::types::{BufferType, MapType};

#[link(wasm_import_module = "env")]
extern "C" {
    // The SDK's wrapper panics on any status but Ok/NotFound, and on a value
    // that is not UTF-8: one request with a Latin-1 byte in a header would
    // trap the VM. This binding maps every status to "no value".
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    // The SDK's buffer wrappers panic on statuses they do not expect.
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
}

/// A host status other than Ok, as a value (never a panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus(pub u32);

use super::abi::owned;

fn set_header(map: MapType, name: &str, value: Option<&str>) -> Result<(), HostStatus> {
    // SAFETY: pointers and lengths of live Rust strings; the host copies them.
    let status = unsafe {
        match value {
            Some(v) => proxy_replace_header_map_value(map as u32, name.as_ptr(), name.len(), v.as_ptr(), v.len()),
            None => proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()),
        }
    };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(HostStatus(status))
    }
}

/// An Envoy attribute; any status but Ok is "no value" for the caller to handle.
fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostStatus> {
    let serialized = path.join("\0");
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: as for header values; the host writes a buffer it allocated.
    let status = unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) };
    match status {
        STATUS_OK if data.is_null() => Ok(None),
        STATUS_OK => Ok(Some(owned(data, size))),
        STATUS_NOT_FOUND => Ok(None),
        other => Err(HostStatus(other)),
    }
}

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_INTERNAL_FAILURE: u32 = 10;

/// A header value; bytes that are not UTF-8 become U+FFFD, so they never match anything certbound accepts.
pub fn header_value(map: MapType, name: &str) -> Option<String> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated through the SDK's
    // proxy_on_memory_allocate (the Rust allocator) into data/size; we take
    // ownership of it exactly once, as the SDK's own wrapper does.
    let status = unsafe { proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size) };
    if status != STATUS_OK {
        return None;
    }
    Some(String::from_utf8_lossy(&owned(data, size)).into_owned())
}

pub fn request_header(name: &str) -> Option<String> {
    header_value(MapType::HttpRequestHeaders, name)
}

pub fn response_header(name: &str) -> Option<String> {
    header_value(MapType::HttpResponseHeaders, name)
}

pub fn set_request_header(name: &str, value: Option<&str>) -> Result<(), HostStatus> {
    set_header(MapType::HttpRequestHeaders, name, value)
}

pub fn set_response_header(name: &str, value: Option<&str>) -> Result<(), HostStatus> {
    set_header(MapType::HttpResponseHeaders, name, value)
}

/// The first `size` bytes of a body; a buffer the host does not have (NotFound) is empty.
pub fn body(buffer: BufferType, size: usize) -> Result<Vec<u8>, HostStatus> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut len: usize = 0;
    // SAFETY: as for header values; the host writes a buffer it allocated.
    let status = unsafe { proxy_get_buffer_bytes(buffer as u32, 0, size, &mut data, &mut len) };
    match status {
        STATUS_OK => Ok(owned(data, len)),
        STATUS_NOT_FOUND => Ok(Vec::new()),
        other => Err(HostStatus(other)),
    }
}

pub fn replace_body(buffer: BufferType, size: usize, data: &[u8]) -> Result<(), HostStatus> {
    // SAFETY: pointer and length of a live slice; the host copies it.
    let status = unsafe { proxy_set_buffer_bytes(buffer as u32, 0, size, data.as_ptr(), data.len()) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(HostStatus(status))
    }
}

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
    fn attribute(&mut self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        property(path).map_err(|s| HostError(s.0))
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

/// Unix seconds from the host clock.
pub fn now() -> Option<i64> {
    super::abi::now_nanos().ok().map(|n| (n / 1_000_000_000) as i64)
}

/// Every request header (name, value), repeated names kept.
pub fn request_headers() -> Vec<(String, String)> {
    // Values as bytes: the SDK's get_map panics on a value that is not UTF-8.
    super::abi::header_pairs(MapType::HttpRequestHeaders as u32)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// A string under `metadata.filter_metadata.certbound` of the matched Envoy route.
pub fn route_metadata(key: &str) -> Option<String> {
    string_property(vec!["xds", "route_metadata", "filter_metadata", "certbound", key])
}

fn string_property(path: Vec<&str>) -> Option<String> {
    let raw = property(&path).ok().flatten()?;
    String::from_utf8(raw).ok().filter(|s| !s.is_empty())
}
