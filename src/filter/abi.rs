//! Our own bindings of the proxy-wasm host calls certbound makes: every
//! status is a value (`HostStatus`), never a panic, where the SDK's wrappers
//! panic on any status they do not expect and trap the VM for every later
//! request. The SDK stays for `dispatch_http_call` only: its dispatcher
//! owns the callout registry that routes answers to their context.

use crate::header;
use proxy_wasm::types::{BufferType, MapType};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(metric_type: u32, name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_set_property(path_data: *const u8, path_size: usize, value_data: *const u8, value_size: usize) -> u32;
}

pub const OK: u32 = 0;
pub const NOT_FOUND: u32 = 1;
pub const CAS_MISMATCH: u32 = 8;

fn result(status: u32) -> Result<(), HostStatus> {
    if status == OK {
        Ok(())
    } else {
        Err(HostStatus(status))
    }
}

/// Takes ownership of a buffer the host allocated for a return value.
pub fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host allocated `size` bytes through the SDK's
    // proxy_on_memory_allocate (the Rust allocator); we own them once.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// A shared-data value and its version (for compare-and-swap); `(None, None)` when absent.
pub fn shared_get(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostStatus> {
    let (mut data, mut size, mut cas) = (std::ptr::null_mut(), 0usize, 0u32);
    // SAFETY: pointers to live locals; the host writes a buffer it allocated.
    let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        OK => Ok(((!data.is_null()).then(|| owned(data, size)), (cas > 0).then_some(cas))),
        NOT_FOUND => Ok((None, None)),
        other => Err(HostStatus(other)),
    }
}

/// Writes a shared-data value; with `cas`, only over that version (`CAS_MISMATCH` otherwise).
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostStatus> {
    // SAFETY: pointers and lengths of live slices; the host copies them.
    result(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas.unwrap_or(0)) })
}

const METRIC_COUNTER: u32 = 0;
const METRIC_GAUGE: u32 = 1;

fn define_metric(kind: u32, name: &str) -> Result<u32, HostStatus> {
    let mut id = 0u32;
    // SAFETY: as above.
    result(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) }).map(|_| id)
}

pub fn define_counter(name: &str) -> Result<u32, HostStatus> {
    define_metric(METRIC_COUNTER, name)
}

/// A gauge: one per name in the Envoy process, whichever VM defines it.
pub fn define_gauge(name: &str) -> Result<u32, HostStatus> {
    define_metric(METRIC_GAUGE, name)
}

/// Sets a gauge.
pub fn record(id: u32, value: u64) -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    result(unsafe { proxy_record_metric(id, value) })
}

pub fn increment(id: u32, by: i64) -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    result(unsafe { proxy_increment_metric(id, by) })
}

/// Sets a property of the stream: Envoy stores it as filter state under
/// `wasm.<path>` (Envoy's proxy-wasm cannot write dynamic metadata).
pub fn set_property(path: &str, value: &[u8]) -> Result<(), HostStatus> {
    // SAFETY: pointers and lengths of live slices; the host copies them.
    result(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// Nanoseconds since the Unix epoch, from the host clock.
pub fn now_nanos() -> Result<u64, HostStatus> {
    let mut t = 0u64;
    // SAFETY: a pointer to a live local.
    result(unsafe { proxy_get_current_time_nanoseconds(&mut t) }).map(|_| t)
}

const HTTP_REQUEST: u32 = 0;
const HTTP_RESPONSE: u32 = 1;

pub fn resume(response_phase: bool) -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    result(unsafe { proxy_continue_stream(if response_phase { HTTP_RESPONSE } else { HTTP_REQUEST }) })
}

pub fn reset_request() -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    result(unsafe { proxy_close_stream(HTTP_REQUEST) })
}

/// The proxy-wasm map encoding: a count, each pair's lengths, then each key and value NUL-terminated.
fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn deserialize_map(bytes: &[u8]) -> Vec<(String, String)> {
    let u32_at = |i: usize| bytes.get(i..i + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let Some(n) = u32_at(0) else { return Vec::new() };
    let mut out = Vec::with_capacity((n as usize).min(bytes.len() / 8));
    let mut data = 4 + 8 * n as usize;
    for i in 0..n as usize {
        let (Some(kl), Some(vl)) = (u32_at(4 + 8 * i), u32_at(8 + 8 * i)) else { break };
        let (kl, vl) = (kl as usize, vl as usize);
        let (Some(k), Some(v)) = (bytes.get(data..data + kl), bytes.get(data + kl + 1..data + kl + 1 + vl)) else {
            break;
        };
        out.push((header::text(k), header::text(v)));
        data += kl + vl + 2;
    }
    out
}

pub fn send_local_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostStatus> {
    let map = serialize_map(headers);
    // SAFETY: pointers and lengths of live buffers; the host copies them.
    result(unsafe {
        proxy_send_local_response(status, std::ptr::null(), 0, body.as_ptr(), body.len(), map.as_ptr(), map.len(), -1)
    })
}

pub fn set_tick_period_ms(ms: u32) -> Result<(), HostStatus> {
    // SAFETY: no pointers.
    result(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// Every header of a map (name, value), repeats kept.
pub fn header_pairs(map_type: u32) -> Result<Vec<(String, String)>, HostStatus> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as for shared data.
    result(unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) })?;
    Ok(deserialize_map(&owned(data, size)))
}

/// The host's log level, as proxy-wasm numbers it (0 trace .. 5 critical).
pub fn host_log_level() -> Result<u32, HostStatus> {
    let mut level = 0u32;
    // SAFETY: a pointer to a live local.
    result(unsafe { proxy_get_log_level(&mut level) }).map(|_| level)
}

pub fn log(level: u32, message: &str) {
    // SAFETY: pointer and length of a live string; a log line the host refuses is dropped.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// `log` records go to the host's log, at the host's level (read when the VM starts), so
/// lines Envoy would drop cost nothing.
pub struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                log::Level::Trace => 0,
                log::Level::Debug => 1,
                log::Level::Info => 2,
                log::Level::Warn => 3,
                log::Level::Error => 4,
            };
            log(level, &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// The `log` level matching the host's.
pub fn level_filter(host_level: u32) -> log::LevelFilter {
    match host_level {
        0 => log::LevelFilter::Trace,
        1 => log::LevelFilter::Debug,
        2 => log::LevelFilter::Info,
        3 => log::LevelFilter::Warn,
        4 | 5 => log::LevelFilter::Error,
        _ => log::LevelFilter::Info,
    }
}

// ---------------------------------------------------------------- headers, bodies, properties

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

/// An Envoy attribute by its path, segments joined by NUL; any status but Ok is "no value" for
/// the caller to handle.
pub fn property(serialized: &str) -> Result<Option<Vec<u8>>, HostStatus> {
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
pub const STATUS_INTERNAL_FAILURE: u32 = 10;

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
    Some(header::text(&owned(data, size)))
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

/// Unix seconds from the host clock.
pub fn now() -> Option<i64> {
    now_nanos().ok().map(|n| (n / 1_000_000_000) as i64)
}

/// Every request header (name, value), repeated names kept. Values as bytes first: the SDK's
/// get_map panics on a value that is not UTF-8.
pub fn request_headers() -> Vec<(String, String)> {
    header_pairs(MapType::HttpRequestHeaders as u32).unwrap_or_default()
}

/// A string under `metadata.filter_metadata.certbound` of the matched Envoy route.
pub fn route_metadata(key: &str) -> Option<String> {
    let raw = property(&format!("xds\0route_metadata\0filter_metadata\0certbound\0{key}")).ok().flatten()?;
    String::from_utf8(raw).ok().filter(|s| !s.is_empty())
}
