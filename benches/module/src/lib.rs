//! A dynamic module whose HTTP filter does nothing: every hook Envoy requires, each returning
//! at once (Continue where a status is asked for). `make bench` loads it as the `noop_module`
//! reference of the module's scenarios.

// Envoy calls every hook; their safety contract is the ABI header's, and none of them reads a pointer.
#![allow(clippy::missing_safety_doc)]

#[path = "../../../crates/certbound-module/src/abi.rs"]
mod abi;

use abi::*;

/// What the config and filter pointers point at: nothing is kept, but Envoy wants them non-null.
static SOMETHING: u8 = 0;

fn something<T>() -> *const T {
    std::ptr::addr_of!(SOMETHING).cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> envoy_dynamic_module_type_abi_version_module_ptr {
    ABI_VERSION.as_ptr().cast()
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    _name: envoy_dynamic_module_type_envoy_buffer,
    _config: envoy_dynamic_module_type_envoy_buffer,
) -> envoy_dynamic_module_type_http_filter_config_module_ptr {
    something()
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _event_id: u64,
) {
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
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

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    _filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    _filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
) -> envoy_dynamic_module_type_http_filter_module_ptr {
    something()
}

type Filter = envoy_dynamic_module_type_http_filter_envoy_ptr;
type Module = envoy_dynamic_module_type_http_filter_module_ptr;

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _e: Filter,
    _m: Module,
    _end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_request_headers_status {
    envoy_dynamic_module_type_on_http_filter_request_headers_status_Continue
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _e: Filter,
    _m: Module,
    _end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_request_body_status {
    envoy_dynamic_module_type_on_http_filter_request_body_status_Continue
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _e: Filter,
    _m: Module,
) -> envoy_dynamic_module_type_on_http_filter_request_trailers_status {
    envoy_dynamic_module_type_on_http_filter_request_trailers_status_Continue
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _e: Filter,
    _m: Module,
    _end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_response_headers_status {
    envoy_dynamic_module_type_on_http_filter_response_headers_status_Continue
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _e: Filter,
    _m: Module,
    _end_of_stream: bool,
) -> envoy_dynamic_module_type_on_http_filter_response_body_status {
    envoy_dynamic_module_type_on_http_filter_response_body_status_Continue
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _e: Filter,
    _m: Module,
) -> envoy_dynamic_module_type_on_http_filter_response_trailers_status {
    envoy_dynamic_module_type_on_http_filter_response_trailers_status_Continue
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_e: Filter, _m: Module) {}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_m: Module) {}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _e: Filter,
    _m: Module,
    _callout_id: u64,
    _result: envoy_dynamic_module_type_http_callout_result,
    _headers: *mut envoy_dynamic_module_type_envoy_http_header,
    _headers_size: usize,
    _body_chunks: *mut envoy_dynamic_module_type_envoy_buffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _e: Filter,
    _m: Module,
    _stream_id: u64,
    _headers: *mut envoy_dynamic_module_type_envoy_http_header,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _e: Filter,
    _m: Module,
    _stream_id: u64,
    _data: *const envoy_dynamic_module_type_envoy_buffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _e: Filter,
    _m: Module,
    _stream_id: u64,
    _trailers: *mut envoy_dynamic_module_type_envoy_http_header,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(_e: Filter, _m: Module, _id: u64) {}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _e: Filter,
    _m: Module,
    _stream_id: u64,
    _reason: envoy_dynamic_module_type_http_stream_reset_reason,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_e: Filter, _m: Module, _event_id: u64) {}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _e: Filter,
    _m: Module,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _e: Filter,
    _m: Module,
) {
}

// The hooks' signatures are Envoy's (checked as certbound-module checks its own).
crate::hook_signatures!();
