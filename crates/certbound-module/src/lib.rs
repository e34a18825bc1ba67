//! SMOKE SKELETON — to be replaced by the real certbound dynamic-module filter.
//!
//! This only proves that `abi.rs` links and loads in Envoy 1.40.0: program init returns the
//! ABI version, the config and each filter are dummy non-null pointers, request_headers
//! reads `:path` with get_header and logs it through Envoy's log callback, response_headers
//! sets one header; every other hook continues or does nothing. Every hook that Envoy 1.40
//! requires for an HTTP filter is exported (see ABI-NOTES.md), plus the optional
//! config-level ones we will use.
//!
//! Run it with `smoke.envoy.yaml` (see ABI-NOTES.md, "Smoke test").

#![allow(dead_code)]
#![allow(clippy::missing_safety_doc)]

mod abi;

use abi::*;
use std::ffi::c_void;

/// Non-null dummies: the skeleton has no state.
static DUMMY_CONFIG: u8 = 0;
static DUMMY_FILTER: u8 = 0;
static DUMMY_PER_ROUTE: u8 = 0;

fn module_buffer(bytes: &[u8]) -> envoy_dynamic_module_type_module_buffer {
    envoy_dynamic_module_type_module_buffer { ptr: bytes.as_ptr().cast(), length: bytes.len() }
}

fn log(level: envoy_dynamic_module_type_log_level, message: &str) {
    // SAFETY: the buffer points into `message`, alive for the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level, module_buffer(message.as_bytes())) }
}

/// First value of request header `key`, copied out of Envoy's buffer.
fn request_header(filter: envoy_dynamic_module_type_http_filter_envoy_ptr, key: &str) -> Option<Vec<u8>> {
    let mut out = envoy_dynamic_module_type_envoy_buffer { ptr: std::ptr::null(), length: 0 };
    let mut count: usize = 0;
    // SAFETY: `filter` is the live filter Envoy passed to the current hook; out-pointers are
    // valid locals; the result is copied before the hook returns.
    let ok = unsafe {
        envoy_dynamic_module_callback_http_get_header(
            filter,
            envoy_dynamic_module_type_http_header_type_RequestHeader,
            module_buffer(key.as_bytes()),
            &mut out,
            0,
            &mut count,
        )
    };
    if !ok || out.ptr.is_null() || count == 0 {
        return None;
    }
    // SAFETY: Envoy guarantees ptr..ptr+length is readable until the hook returns.
    Some(unsafe { std::slice::from_raw_parts(out.ptr.cast::<u8>(), out.length) }.to_vec())
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> envoy_dynamic_module_type_abi_version_module_ptr {
    ABI_VERSION.as_ptr().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    name: envoy_dynamic_module_type_envoy_buffer,
    config: envoy_dynamic_module_type_envoy_buffer,
) -> envoy_dynamic_module_type_http_filter_config_module_ptr {
    // SAFETY: both buffers are Envoy-owned and valid for this call.
    let (name, config) = unsafe {
        (
            String::from_utf8_lossy(std::slice::from_raw_parts(name.ptr.cast::<u8>(), name.length)).into_owned(),
            String::from_utf8_lossy(std::slice::from_raw_parts(config.ptr.cast::<u8>(), config.length)).into_owned(),
        )
    };
    log(
        envoy_dynamic_module_type_log_level_Info,
        &format!("certbound smoke: config_new filter_name={name} filter_config={config}"),
    );
    (&DUMMY_CONFIG as *const u8).cast::<c_void>()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: envoy_dynamic_module_type_envoy_buffer,
    _config: envoy_dynamic_module_type_envoy_buffer,
) -> envoy_dynamic_module_type_http_filter_per_route_config_module_ptr {
    (&DUMMY_PER_ROUTE as *const u8).cast::<c_void>()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_per_route_config_module_ptr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
) -> envoy_dynamic_module_type_http_filter_module_ptr {
    (&DUMMY_FILTER as *const u8).cast::<c_void>()
}

/// # Safety
/// Called by Envoy with the live filter of this stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_request_headers_status {
    let path = request_header(filter_envoy_ptr, ":path");
    let absent = request_header(filter_envoy_ptr, "x-certbound-absent");
    let path = path.map(|p| String::from_utf8_lossy(&p).into_owned());
    log(
        envoy_dynamic_module_type_log_level_Info,
        &format!(
            "certbound smoke: request_headers :path={path:?} end_of_stream={end_of_stream} absent_header={absent:?}"
        ),
    );
    envoy_dynamic_module_type_on_http_filter_request_headers_status_Continue
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_request_body_status {
    envoy_dynamic_module_type_on_http_filter_request_body_status_Continue
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
) -> envoy_dynamic_module_type_on_http_filter_request_trailers_status {
    envoy_dynamic_module_type_on_http_filter_request_trailers_status_Continue
}

/// # Safety
/// Called by Envoy with the live filter of this stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_response_headers_status {
    // SAFETY: live filter of the current hook; Envoy copies key and value.
    unsafe {
        envoy_dynamic_module_callback_http_set_header(
            filter_envoy_ptr,
            envoy_dynamic_module_type_http_header_type_ResponseHeader,
            module_buffer(b"x-certbound-smoke"),
            module_buffer(b"1"),
        );
    }
    envoy_dynamic_module_type_on_http_filter_response_headers_status_Continue
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_response_body_status {
    envoy_dynamic_module_type_on_http_filter_response_body_status_Continue
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
) -> envoy_dynamic_module_type_on_http_filter_response_trailers_status {
    envoy_dynamic_module_type_on_http_filter_response_trailers_status_Continue
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _callout_id: u64,
    _result: envoy_dynamic_module_type_http_callout_result,
    _headers: *mut envoy_dynamic_module_type_envoy_http_header,
    _headers_size: usize,
    _body_chunks: *mut envoy_dynamic_module_type_envoy_buffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _headers: *mut envoy_dynamic_module_type_envoy_http_header,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _data: *const envoy_dynamic_module_type_envoy_buffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _trailers: *mut envoy_dynamic_module_type_envoy_http_header,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _stream_id: u64,
    _reason: envoy_dynamic_module_type_http_stream_reset_reason,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    _filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _callout_id: u64,
    _result: envoy_dynamic_module_type_http_callout_result,
    _headers: *mut envoy_dynamic_module_type_envoy_http_header,
    _headers_size: usize,
    _body_chunks: *mut envoy_dynamic_module_type_envoy_buffer,
    _body_chunks_size: usize,
) {
}

// Compile-time check that each exported hook has exactly the signature of its abi.rs alias.
const _: OnProgramInit = envoy_dynamic_module_on_program_init;
const _: OnHttpFilterConfigNew = envoy_dynamic_module_on_http_filter_config_new;
const _: OnHttpFilterConfigDestroy = envoy_dynamic_module_on_http_filter_config_destroy;
const _: OnHttpFilterPerRouteConfigNew = envoy_dynamic_module_on_http_filter_per_route_config_new;
const _: OnHttpFilterPerRouteConfigDestroy = envoy_dynamic_module_on_http_filter_per_route_config_destroy;
const _: OnHttpFilterNew = envoy_dynamic_module_on_http_filter_new;
const _: OnHttpFilterRequestHeaders = envoy_dynamic_module_on_http_filter_request_headers;
const _: OnHttpFilterRequestBody = envoy_dynamic_module_on_http_filter_request_body;
const _: OnHttpFilterRequestTrailers = envoy_dynamic_module_on_http_filter_request_trailers;
const _: OnHttpFilterResponseHeaders = envoy_dynamic_module_on_http_filter_response_headers;
const _: OnHttpFilterResponseBody = envoy_dynamic_module_on_http_filter_response_body;
const _: OnHttpFilterResponseTrailers = envoy_dynamic_module_on_http_filter_response_trailers;
const _: OnHttpFilterStreamComplete = envoy_dynamic_module_on_http_filter_stream_complete;
const _: OnHttpFilterDestroy = envoy_dynamic_module_on_http_filter_destroy;
const _: OnHttpFilterHttpCalloutDone = envoy_dynamic_module_on_http_filter_http_callout_done;
const _: OnHttpFilterHttpStreamHeaders = envoy_dynamic_module_on_http_filter_http_stream_headers;
const _: OnHttpFilterHttpStreamData = envoy_dynamic_module_on_http_filter_http_stream_data;
const _: OnHttpFilterHttpStreamTrailers = envoy_dynamic_module_on_http_filter_http_stream_trailers;
const _: OnHttpFilterHttpStreamComplete = envoy_dynamic_module_on_http_filter_http_stream_complete;
const _: OnHttpFilterHttpStreamReset = envoy_dynamic_module_on_http_filter_http_stream_reset;
const _: OnHttpFilterScheduled = envoy_dynamic_module_on_http_filter_scheduled;
const _: OnHttpFilterDownstreamAboveWriteBufferHighWatermark =
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark;
const _: OnHttpFilterDownstreamBelowWriteBufferLowWatermark =
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark;
const _: OnHttpFilterConfigScheduled = envoy_dynamic_module_on_http_filter_config_scheduled;
const _: OnHttpFilterConfigHttpCalloutDone = envoy_dynamic_module_on_http_filter_config_http_callout_done;
