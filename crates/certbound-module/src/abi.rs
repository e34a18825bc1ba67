//! Raw FFI to Envoy's dynamic-modules C ABI: the part an HTTP filter needs.
//!
//! Hand-written (no bindgen) from `source/extensions/dynamic_modules/abi/abi.h` in
//! envoyproxy/envoy at commit 0199da4a13cb999df12ad32db7d03942cfbf9abb (that header says
//! `ENVOY_DYNAMIC_MODULES_ABI_VERSION "v0.1.0"`). Every `envoy_dynamic_module_callback_*`
//! declared below was checked with `nm -D` against the dynamic symbols of the Envoy 1.40.0
//! binary we run (commit 9e5580933739775e8bce696a57a2e1bc99368f23), and every hook named in
//! the hook section is among the `envoy_dynamic_module_on_*` strings of that binary.
//! Envoy 1.40.0 itself carries ABI version "v0.2.0" (see `ABI_VERSION` and ABI-NOTES.md):
//! it is a newer ABI than the header read; the header's comment promises that v0.1.y is
//! compatible with v0.2.x, and the 1.40 binary exports a superset of the header's HTTP
//! callbacks.
//!
//! Conventions:
//! * C enums are `int`-sized; each is a `pub type X = u32` with `pub const` values in the
//!   header's declaration order (0, 1, 2, ...).
//! * `*_envoy_ptr` are Envoy-owned objects (`*mut c_void`); `*_module_ptr` are ours
//!   (`*const c_void`, as the header's `const void*`), except the scheduler pointers, which
//!   Envoy allocates and we free (`void*` in the header).
//! * `bool` is C `_Bool` (Rust `bool` is ABI-compatible); `size_t` is `usize`.
//!
//! The event hooks are not declared here as functions: the module defines them itself as
//! `#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_...`. Their exact signatures are
//! given as `pub type On... = unsafe extern "C" fn(...)` aliases, named after the hook, so an
//! implementation can be checked against them with
//! `const _: abi::OnHttpFilterNew = envoy_dynamic_module_on_http_filter_new;`.

#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case)]
#![allow(dead_code)]

use std::ffi::{c_char, c_void};

// =============================================================================
// ABI version
// =============================================================================

/// The string `envoy_dynamic_module_on_program_init` returns (NUL-terminated).
/// Envoy 1.40.0 compares it with its own `ENVOY_DYNAMIC_MODULES_ABI_VERSION`, "v0.2.0" in
/// that binary: on a match it logs "Dynamic module ABI version v0.2.0 matched." (info); on
/// a mismatch it only logs a warning ("... is deprecated. Please recompile ...") and loads
/// the module anyway. Returning null unloads the module and fails the config.
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";
/// The version the header we transcribed declares (for reference only).
pub const ABI_VERSION_OF_HEADER_READ: &[u8] = b"v0.1.0\0";

// =============================================================================
// Common types
// =============================================================================

/// `envoy_dynamic_module_type_abi_version_module_ptr` (`const char*`, NUL-terminated; must
/// stay valid until on_program_init returns — use a static).
pub type envoy_dynamic_module_type_abi_version_module_ptr = *const c_char;
/// `envoy_dynamic_module_type_buffer_module_ptr` (`const char*`).
pub type envoy_dynamic_module_type_buffer_module_ptr = *const c_char;
/// `envoy_dynamic_module_type_buffer_envoy_ptr` (`const char*`).
pub type envoy_dynamic_module_type_buffer_envoy_ptr = *const c_char;

/// A byte range owned by Envoy (header value, body slice, config bytes...).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct envoy_dynamic_module_type_envoy_buffer {
    pub ptr: envoy_dynamic_module_type_buffer_envoy_ptr,
    pub length: usize,
}

/// A byte range owned by the module, lent to Envoy for the duration of one callback.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct envoy_dynamic_module_type_module_buffer {
    pub ptr: envoy_dynamic_module_type_buffer_module_ptr,
    pub length: usize,
}

/// A header (key, value) whose bytes the module owns (send_response, callouts).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct envoy_dynamic_module_type_module_http_header {
    pub key_ptr: envoy_dynamic_module_type_buffer_module_ptr,
    pub key_length: usize,
    pub value_ptr: envoy_dynamic_module_type_buffer_module_ptr,
    pub value_length: usize,
}

/// A header (key, value) whose bytes Envoy owns (get_headers, callout responses).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct envoy_dynamic_module_type_envoy_http_header {
    pub key_ptr: envoy_dynamic_module_type_buffer_envoy_ptr,
    pub key_length: usize,
    pub value_ptr: envoy_dynamic_module_type_buffer_envoy_ptr,
    pub value_length: usize,
}

/// `envoy_dynamic_module_type_metadata_source`: where a metadata getter looks.
pub type envoy_dynamic_module_type_metadata_source = u32;
pub const envoy_dynamic_module_type_metadata_source_Dynamic: u32 = 0;
pub const envoy_dynamic_module_type_metadata_source_Route: u32 = 1;

/// `envoy_dynamic_module_type_http_header_type`: which header map a header callback uses.
pub type envoy_dynamic_module_type_http_header_type = u32;
pub const envoy_dynamic_module_type_http_header_type_RequestHeader: u32 = 0;
pub const envoy_dynamic_module_type_http_header_type_RequestTrailer: u32 = 1;
pub const envoy_dynamic_module_type_http_header_type_ResponseHeader: u32 = 2;
pub const envoy_dynamic_module_type_http_header_type_ResponseTrailer: u32 = 3;

/// `envoy_dynamic_module_type_log_level` (Envoy's spdlog levels).
pub type envoy_dynamic_module_type_log_level = u32;
pub const envoy_dynamic_module_type_log_level_Trace: u32 = 0;
pub const envoy_dynamic_module_type_log_level_Debug: u32 = 1;
pub const envoy_dynamic_module_type_log_level_Info: u32 = 2;
pub const envoy_dynamic_module_type_log_level_Warn: u32 = 3;
pub const envoy_dynamic_module_type_log_level_Error: u32 = 4;
pub const envoy_dynamic_module_type_log_level_Critical: u32 = 5;
pub const envoy_dynamic_module_type_log_level_Off: u32 = 6;

/// `envoy_dynamic_module_type_http_callout_init_result`: return of the *_http_callout calls.
pub type envoy_dynamic_module_type_http_callout_init_result = u32;
pub const envoy_dynamic_module_type_http_callout_init_result_Success: u32 = 0;
pub const envoy_dynamic_module_type_http_callout_init_result_MissingRequiredHeaders: u32 = 1;
pub const envoy_dynamic_module_type_http_callout_init_result_ClusterNotFound: u32 = 2;
pub const envoy_dynamic_module_type_http_callout_init_result_DuplicateCalloutId: u32 = 3;
pub const envoy_dynamic_module_type_http_callout_init_result_CannotCreateRequest: u32 = 4;

/// `envoy_dynamic_module_type_http_callout_result`: argument of the *_http_callout_done hooks.
pub type envoy_dynamic_module_type_http_callout_result = u32;
pub const envoy_dynamic_module_type_http_callout_result_Success: u32 = 0;
pub const envoy_dynamic_module_type_http_callout_result_Reset: u32 = 1;
pub const envoy_dynamic_module_type_http_callout_result_ExceedResponseBufferLimit: u32 = 2;

/// `envoy_dynamic_module_type_http_stream_reset_reason`: argument of the (required)
/// on_http_filter_http_stream_reset hook (streamed callouts, which we do not use).
pub type envoy_dynamic_module_type_http_stream_reset_reason = u32;
pub const envoy_dynamic_module_type_http_stream_reset_reason_ConnectionFailure: u32 = 0;
pub const envoy_dynamic_module_type_http_stream_reset_reason_ConnectionTermination: u32 = 1;
pub const envoy_dynamic_module_type_http_stream_reset_reason_LocalReset: u32 = 2;
pub const envoy_dynamic_module_type_http_stream_reset_reason_LocalRefusedStreamReset: u32 = 3;
pub const envoy_dynamic_module_type_http_stream_reset_reason_Overflow: u32 = 4;
pub const envoy_dynamic_module_type_http_stream_reset_reason_RemoteReset: u32 = 5;
pub const envoy_dynamic_module_type_http_stream_reset_reason_RemoteRefusedStreamReset: u32 = 6;
pub const envoy_dynamic_module_type_http_stream_reset_reason_ProtocolError: u32 = 7;

/// `envoy_dynamic_module_type_http_filter_stream_reset_reason`: why a filter resets its own
/// (downstream) stream with `envoy_dynamic_module_callback_http_filter_reset_stream`. Not in
/// the header read above; taken from envoyproxy/envoy's abi.h and
/// `source/extensions/filters/http/dynamic_modules/abi_impl.cc` of the 1.40 line, where
/// LocalReset maps to `Http::StreamResetReason::LocalReset` (any other value does too).
pub type envoy_dynamic_module_type_http_filter_stream_reset_reason = u32;
pub const envoy_dynamic_module_type_http_filter_stream_reset_reason_LocalReset: u32 = 0;
pub const envoy_dynamic_module_type_http_filter_stream_reset_reason_LocalRefusedStreamReset: u32 = 1;

/// `envoy_dynamic_module_type_metrics_result`: return of every metrics callback.
pub type envoy_dynamic_module_type_metrics_result = u32;
pub const envoy_dynamic_module_type_metrics_result_Success: u32 = 0;
pub const envoy_dynamic_module_type_metrics_result_MetricNotFound: u32 = 1;
pub const envoy_dynamic_module_type_metrics_result_InvalidLabels: u32 = 2;
pub const envoy_dynamic_module_type_metrics_result_Frozen: u32 = 3;

/// `envoy_dynamic_module_type_attribute_id` (the whole enum, header order). Names are the
/// CEL attribute names of Envoy's "attributes" doc; not every id is implemented for every
/// getter (string/int/bool): an unimplemented or absent one makes the getter return false.
pub type envoy_dynamic_module_type_attribute_id = u32;
pub const envoy_dynamic_module_type_attribute_id_RequestPath: u32 = 0; // request.path
pub const envoy_dynamic_module_type_attribute_id_RequestUrlPath: u32 = 1; // request.url_path
pub const envoy_dynamic_module_type_attribute_id_RequestHost: u32 = 2; // request.host
pub const envoy_dynamic_module_type_attribute_id_RequestScheme: u32 = 3; // request.scheme
pub const envoy_dynamic_module_type_attribute_id_RequestMethod: u32 = 4; // request.method
pub const envoy_dynamic_module_type_attribute_id_RequestHeaders: u32 = 5; // request.headers
pub const envoy_dynamic_module_type_attribute_id_RequestReferer: u32 = 6; // request.referer
pub const envoy_dynamic_module_type_attribute_id_RequestUserAgent: u32 = 7; // request.useragent
pub const envoy_dynamic_module_type_attribute_id_RequestTime: u32 = 8; // request.time
pub const envoy_dynamic_module_type_attribute_id_RequestId: u32 = 9; // request.id
pub const envoy_dynamic_module_type_attribute_id_RequestProtocol: u32 = 10; // request.protocol
pub const envoy_dynamic_module_type_attribute_id_RequestQuery: u32 = 11; // request.query
pub const envoy_dynamic_module_type_attribute_id_RequestDuration: u32 = 12; // request.duration
pub const envoy_dynamic_module_type_attribute_id_RequestSize: u32 = 13; // request.size
pub const envoy_dynamic_module_type_attribute_id_RequestTotalSize: u32 = 14; // request.total_size
pub const envoy_dynamic_module_type_attribute_id_ResponseCode: u32 = 15; // response.code
pub const envoy_dynamic_module_type_attribute_id_ResponseCodeDetails: u32 = 16; // response.code_details
pub const envoy_dynamic_module_type_attribute_id_ResponseFlags: u32 = 17; // response.flags
pub const envoy_dynamic_module_type_attribute_id_ResponseGrpcStatus: u32 = 18; // response.grpc_status
pub const envoy_dynamic_module_type_attribute_id_ResponseHeaders: u32 = 19; // response.headers
pub const envoy_dynamic_module_type_attribute_id_ResponseTrailers: u32 = 20; // response.trailers
pub const envoy_dynamic_module_type_attribute_id_ResponseSize: u32 = 21; // response.size
pub const envoy_dynamic_module_type_attribute_id_ResponseTotalSize: u32 = 22; // response.total_size
pub const envoy_dynamic_module_type_attribute_id_ResponseBackendLatency: u32 = 23; // response.backend_latency
pub const envoy_dynamic_module_type_attribute_id_SourceAddress: u32 = 24; // source.address
pub const envoy_dynamic_module_type_attribute_id_SourcePort: u32 = 25; // source.port
pub const envoy_dynamic_module_type_attribute_id_DestinationAddress: u32 = 26; // destination.address
pub const envoy_dynamic_module_type_attribute_id_DestinationPort: u32 = 27; // destination.port
pub const envoy_dynamic_module_type_attribute_id_ConnectionId: u32 = 28; // connection.id
pub const envoy_dynamic_module_type_attribute_id_ConnectionMtls: u32 = 29; // connection.mtls
pub const envoy_dynamic_module_type_attribute_id_ConnectionRequestedServerName: u32 = 30; // connection.requested_server_name
pub const envoy_dynamic_module_type_attribute_id_ConnectionTlsVersion: u32 = 31; // connection.tls_version
pub const envoy_dynamic_module_type_attribute_id_ConnectionSubjectLocalCertificate: u32 = 32; // connection.subject_local_certificate
pub const envoy_dynamic_module_type_attribute_id_ConnectionSubjectPeerCertificate: u32 = 33; // connection.subject_peer_certificate
pub const envoy_dynamic_module_type_attribute_id_ConnectionDnsSanLocalCertificate: u32 = 34; // connection.dns_san_local_certificate
pub const envoy_dynamic_module_type_attribute_id_ConnectionDnsSanPeerCertificate: u32 = 35; // connection.dns_san_peer_certificate
pub const envoy_dynamic_module_type_attribute_id_ConnectionUriSanLocalCertificate: u32 = 36; // connection.uri_san_local_certificate
pub const envoy_dynamic_module_type_attribute_id_ConnectionUriSanPeerCertificate: u32 = 37; // connection.uri_san_peer_certificate
pub const envoy_dynamic_module_type_attribute_id_ConnectionSha256PeerCertificateDigest: u32 = 38; // connection.sha256_peer_certificate_digest
pub const envoy_dynamic_module_type_attribute_id_ConnectionTransportFailureReason: u32 = 39; // connection.transport_failure_reason
pub const envoy_dynamic_module_type_attribute_id_ConnectionTerminationDetails: u32 = 40; // connection.termination_details
pub const envoy_dynamic_module_type_attribute_id_UpstreamAddress: u32 = 41; // upstream.address
pub const envoy_dynamic_module_type_attribute_id_UpstreamPort: u32 = 42; // upstream.port
pub const envoy_dynamic_module_type_attribute_id_UpstreamTlsVersion: u32 = 43; // upstream.tls_version
pub const envoy_dynamic_module_type_attribute_id_UpstreamSubjectLocalCertificate: u32 = 44; // upstream.subject_local_certificate
pub const envoy_dynamic_module_type_attribute_id_UpstreamSubjectPeerCertificate: u32 = 45; // upstream.subject_peer_certificate
pub const envoy_dynamic_module_type_attribute_id_UpstreamDnsSanLocalCertificate: u32 = 46; // upstream.dns_san_local_certificate
pub const envoy_dynamic_module_type_attribute_id_UpstreamDnsSanPeerCertificate: u32 = 47; // upstream.dns_san_peer_certificate
pub const envoy_dynamic_module_type_attribute_id_UpstreamUriSanLocalCertificate: u32 = 48; // upstream.uri_san_local_certificate
pub const envoy_dynamic_module_type_attribute_id_UpstreamUriSanPeerCertificate: u32 = 49; // upstream.uri_san_peer_certificate
pub const envoy_dynamic_module_type_attribute_id_UpstreamSha256PeerCertificateDigest: u32 = 50; // upstream.sha256_peer_certificate_digest
pub const envoy_dynamic_module_type_attribute_id_UpstreamLocalAddress: u32 = 51; // upstream.local_address
pub const envoy_dynamic_module_type_attribute_id_UpstreamTransportFailureReason: u32 = 52; // upstream.transport_failure_reason
pub const envoy_dynamic_module_type_attribute_id_UpstreamRequestAttemptCount: u32 = 53; // upstream.request_attempt_count
pub const envoy_dynamic_module_type_attribute_id_UpstreamCxPoolReadyDuration: u32 = 54; // upstream.cx_pool_ready_duration
pub const envoy_dynamic_module_type_attribute_id_UpstreamLocality: u32 = 55; // upstream.locality
pub const envoy_dynamic_module_type_attribute_id_XdsNode: u32 = 56; // xds.node
pub const envoy_dynamic_module_type_attribute_id_XdsClusterName: u32 = 57; // xds.cluster_name
pub const envoy_dynamic_module_type_attribute_id_XdsClusterMetadata: u32 = 58; // xds.cluster_metadata
pub const envoy_dynamic_module_type_attribute_id_XdsListenerDirection: u32 = 59; // xds.listener_direction
pub const envoy_dynamic_module_type_attribute_id_XdsListenerMetadata: u32 = 60; // xds.listener_metadata
pub const envoy_dynamic_module_type_attribute_id_XdsRouteName: u32 = 61; // xds.route_name
pub const envoy_dynamic_module_type_attribute_id_XdsRouteMetadata: u32 = 62; // xds.route_metadata
pub const envoy_dynamic_module_type_attribute_id_XdsVirtualHostName: u32 = 63; // xds.virtual_host_name
pub const envoy_dynamic_module_type_attribute_id_XdsVirtualHostMetadata: u32 = 64; // xds.virtual_host_metadata
pub const envoy_dynamic_module_type_attribute_id_XdsUpstreamHostMetadata: u32 = 65; // xds.upstream_host_metadata
pub const envoy_dynamic_module_type_attribute_id_XdsFilterChainName: u32 = 66; // xds.filter_chain_name
pub const envoy_dynamic_module_type_attribute_id_HealthCheck: u32 = 67; // health_check

// =============================================================================
// HTTP filter types
// =============================================================================

/// Envoy's DynamicModuleHttpFilterConfig (one per filter config; lives until
/// on_http_filter_config_destroy).
pub type envoy_dynamic_module_type_http_filter_config_envoy_ptr = *mut c_void;
/// Our filter config, returned by on_http_filter_config_new; freed in
/// on_http_filter_config_destroy. Shared by all worker threads.
pub type envoy_dynamic_module_type_http_filter_config_module_ptr = *const c_void;
/// Our per-route config (on_http_filter_per_route_config_new / _destroy).
pub type envoy_dynamic_module_type_http_filter_per_route_config_module_ptr = *const c_void;
/// Envoy's DynamicModuleHttpFilter (one per stream; valid until on_http_filter_destroy).
pub type envoy_dynamic_module_type_http_filter_envoy_ptr = *mut c_void;
/// Our per-stream filter, returned by on_http_filter_new; freed in on_http_filter_destroy.
pub type envoy_dynamic_module_type_http_filter_module_ptr = *const c_void;
/// Allocated by Envoy in http_filter_scheduler_new; the module must free it with
/// http_filter_scheduler_delete.
pub type envoy_dynamic_module_type_http_filter_scheduler_module_ptr = *mut c_void;
/// Allocated by Envoy in http_filter_config_scheduler_new; the module must free it with
/// http_filter_config_scheduler_delete.
pub type envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr = *mut c_void;

/// `envoy_dynamic_module_type_http_body_type`: which body the body callbacks address.
/// Received* = the chunk of the current body hook only; Buffered* = what Envoy has buffered
/// for this filter so far (after StopIterationAndBuffer).
pub type envoy_dynamic_module_type_http_body_type = u32;
pub const envoy_dynamic_module_type_http_body_type_ReceivedRequestBody: u32 = 0;
pub const envoy_dynamic_module_type_http_body_type_BufferedRequestBody: u32 = 1;
pub const envoy_dynamic_module_type_http_body_type_ReceivedResponseBody: u32 = 2;
pub const envoy_dynamic_module_type_http_body_type_BufferedResponseBody: u32 = 3;

/// Return of on_http_filter_request_headers (= Envoy's FilterHeadersStatus, cast as is).
pub type envoy_dynamic_module_type_on_http_filter_request_headers_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_request_headers_status_Continue: u32 = 0;
pub const envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration: u32 = 1;
pub const envoy_dynamic_module_type_on_http_filter_request_headers_status_ContinueAndDontEndStream: u32 = 2;
pub const envoy_dynamic_module_type_on_http_filter_request_headers_status_StopAllIterationAndBuffer: u32 = 3;
pub const envoy_dynamic_module_type_on_http_filter_request_headers_status_StopAllIterationAndWatermark: u32 = 4;

/// Return of on_http_filter_request_body (= Envoy's FilterDataStatus).
pub type envoy_dynamic_module_type_on_http_filter_request_body_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_request_body_status_Continue: u32 = 0;
pub const envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationAndBuffer: u32 = 1;
pub const envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationAndWatermark: u32 = 2;
pub const envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationNoBuffer: u32 = 3;

/// Return of on_http_filter_request_trailers (= Envoy's FilterTrailersStatus).
pub type envoy_dynamic_module_type_on_http_filter_request_trailers_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_request_trailers_status_Continue: u32 = 0;
pub const envoy_dynamic_module_type_on_http_filter_request_trailers_status_StopIteration: u32 = 1;

/// Return of on_http_filter_response_headers (= Envoy's FilterHeadersStatus).
pub type envoy_dynamic_module_type_on_http_filter_response_headers_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_response_headers_status_Continue: u32 = 0;
pub const envoy_dynamic_module_type_on_http_filter_response_headers_status_StopIteration: u32 = 1;
pub const envoy_dynamic_module_type_on_http_filter_response_headers_status_ContinueAndDontEndStream: u32 = 2;
pub const envoy_dynamic_module_type_on_http_filter_response_headers_status_StopAllIterationAndBuffer: u32 = 3;
pub const envoy_dynamic_module_type_on_http_filter_response_headers_status_StopAllIterationAndWatermark: u32 = 4;

/// Return of on_http_filter_response_body (= Envoy's FilterDataStatus).
pub type envoy_dynamic_module_type_on_http_filter_response_body_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_response_body_status_Continue: u32 = 0;
pub const envoy_dynamic_module_type_on_http_filter_response_body_status_StopIterationAndBuffer: u32 = 1;
pub const envoy_dynamic_module_type_on_http_filter_response_body_status_StopIterationAndWatermark: u32 = 2;
pub const envoy_dynamic_module_type_on_http_filter_response_body_status_StopIterationNoBuffer: u32 = 3;

/// Return of on_http_filter_response_trailers (= Envoy's FilterTrailersStatus).
pub type envoy_dynamic_module_type_on_http_filter_response_trailers_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_response_trailers_status_Continue: u32 = 0;
pub const envoy_dynamic_module_type_on_http_filter_response_trailers_status_StopIteration: u32 = 1;

/// Return of the optional on_http_filter_local_reply hook (= Envoy's LocalErrorStatus).
pub type envoy_dynamic_module_type_on_http_filter_local_reply_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_local_reply_status_Continue: u32 = 0;
pub const envoy_dynamic_module_type_on_http_filter_local_reply_status_ContinueAndResetStream: u32 = 1;

// =============================================================================
// Event hooks (defined by the module; signatures only)
// =============================================================================
//
// REQUIRED by Envoy 1.40 for an HTTP filter config (a missing symbol rejects the config):
//   on_program_init, on_http_filter_config_new, on_http_filter_config_destroy,
//   on_http_filter_new, on_http_filter_request_{headers,body,trailers},
//   on_http_filter_response_{headers,body,trailers}, on_http_filter_stream_complete,
//   on_http_filter_destroy, on_http_filter_http_callout_done,
//   on_http_filter_http_stream_{headers,data,trailers,complete,reset},
//   on_http_filter_scheduled,
//   on_http_filter_downstream_{above_write_buffer_high,below_write_buffer_low}_watermark.
// OPTIONAL (looked up, used if present): on_http_filter_config_scheduled,
//   on_http_filter_config_http_callout_done, on_http_filter_config_http_stream_*,
//   on_http_filter_local_reply.
// ONLY WHEN A DynamicModuleFilterPerRoute config is used: on_http_filter_per_route_config_new
//   and on_http_filter_per_route_config_destroy.
// (See ABI-NOTES.md for how this was established.)

/// `envoy_dynamic_module_on_program_init(void) -> abi_version_module_ptr` (main thread, once
/// per dlopen). Return `ABI_VERSION.as_ptr()`; null = refuse to load.
pub type OnProgramInit = unsafe extern "C" fn() -> envoy_dynamic_module_type_abi_version_module_ptr;

/// `envoy_dynamic_module_on_http_filter_config_new(filter_config_envoy_ptr, name, config)`
/// (main thread). `name` = filter_name, `config` = the unwrapped filter_config bytes; both
/// Envoy-owned, valid only during the call (copy them). Null = config rejected.
pub type OnHttpFilterConfigNew = unsafe extern "C" fn(
    filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    name: envoy_dynamic_module_type_envoy_buffer,
    config: envoy_dynamic_module_type_envoy_buffer,
) -> envoy_dynamic_module_type_http_filter_config_module_ptr;

/// `envoy_dynamic_module_on_http_filter_config_destroy(filter_config_ptr)` (main thread).
pub type OnHttpFilterConfigDestroy =
    unsafe extern "C" fn(filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr);

/// `envoy_dynamic_module_on_http_filter_per_route_config_new(name, config)` (main thread).
pub type OnHttpFilterPerRouteConfigNew =
    unsafe extern "C" fn(
        name: envoy_dynamic_module_type_envoy_buffer,
        config: envoy_dynamic_module_type_envoy_buffer,
    ) -> envoy_dynamic_module_type_http_filter_per_route_config_module_ptr;

/// `envoy_dynamic_module_on_http_filter_per_route_config_destroy(filter_config_ptr)`.
pub type OnHttpFilterPerRouteConfigDestroy =
    unsafe extern "C" fn(filter_config_ptr: envoy_dynamic_module_type_http_filter_per_route_config_module_ptr);

/// `envoy_dynamic_module_on_http_filter_new(filter_config_ptr, filter_envoy_ptr)` (worker
/// thread, once per stream). Null = the stream is closed.
pub type OnHttpFilterNew = unsafe extern "C" fn(
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
) -> envoy_dynamic_module_type_http_filter_module_ptr;

/// `envoy_dynamic_module_on_http_filter_request_headers(filter_envoy_ptr, filter_module_ptr,
/// end_of_stream)`.
pub type OnHttpFilterRequestHeaders =
    unsafe extern "C" fn(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
        end_of_stream: bool,
    ) -> envoy_dynamic_module_type_on_http_filter_request_headers_status;

/// `envoy_dynamic_module_on_http_filter_request_body(filter_envoy_ptr, filter_module_ptr,
/// end_of_stream)`. The chunk is not passed: read it as ReceivedRequestBody.
pub type OnHttpFilterRequestBody = unsafe extern "C" fn(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    end_of_stream: bool,
)
    -> envoy_dynamic_module_type_on_http_filter_request_body_status;

/// `envoy_dynamic_module_on_http_filter_request_trailers(filter_envoy_ptr, filter_module_ptr)`.
pub type OnHttpFilterRequestTrailers =
    unsafe extern "C" fn(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    ) -> envoy_dynamic_module_type_on_http_filter_request_trailers_status;

/// `envoy_dynamic_module_on_http_filter_response_headers(filter_envoy_ptr, filter_module_ptr,
/// end_of_stream)`.
pub type OnHttpFilterResponseHeaders =
    unsafe extern "C" fn(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
        end_of_stream: bool,
    ) -> envoy_dynamic_module_type_on_http_filter_response_headers_status;

/// `envoy_dynamic_module_on_http_filter_response_body(filter_envoy_ptr, filter_module_ptr,
/// end_of_stream)`. The chunk is not passed: read it as ReceivedResponseBody.
pub type OnHttpFilterResponseBody =
    unsafe extern "C" fn(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
        end_of_stream: bool,
    ) -> envoy_dynamic_module_type_on_http_filter_response_body_status;

/// `envoy_dynamic_module_on_http_filter_response_trailers(filter_envoy_ptr, filter_module_ptr)`.
pub type OnHttpFilterResponseTrailers =
    unsafe extern "C" fn(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    ) -> envoy_dynamic_module_type_on_http_filter_response_trailers_status;

/// `envoy_dynamic_module_on_http_filter_stream_complete(filter_envoy_ptr, filter_module_ptr)`:
/// before on_http_filter_destroy and before access logs are flushed.
pub type OnHttpFilterStreamComplete = unsafe extern "C" fn(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
);

/// `envoy_dynamic_module_on_http_filter_destroy(filter_module_ptr)`: free the filter here.
pub type OnHttpFilterDestroy =
    unsafe extern "C" fn(filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr);

/// `envoy_dynamic_module_on_http_filter_http_callout_done(filter_envoy_ptr, filter_module_ptr,
/// callout_id, result, headers, headers_size, body_chunks, body_chunks_size)`. headers and
/// body_chunks are Envoy-owned, valid until the hook returns; null/0 on failure.
pub type OnHttpFilterHttpCalloutDone = unsafe extern "C" fn(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    callout_id: u64,
    result: envoy_dynamic_module_type_http_callout_result,
    headers: *mut envoy_dynamic_module_type_envoy_http_header,
    headers_size: usize,
    body_chunks: *mut envoy_dynamic_module_type_envoy_buffer,
    body_chunks_size: usize,
);

/// `envoy_dynamic_module_on_http_filter_http_stream_headers(filter_envoy_ptr,
/// filter_module_ptr, stream_id, headers, headers_size, end_stream)` (streamed callouts;
/// required symbol, may be a no-op).
pub type OnHttpFilterHttpStreamHeaders = unsafe extern "C" fn(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    stream_id: u64,
    headers: *mut envoy_dynamic_module_type_envoy_http_header,
    headers_size: usize,
    end_stream: bool,
);

/// `envoy_dynamic_module_on_http_filter_http_stream_data(filter_envoy_ptr, filter_module_ptr,
/// stream_id, data, data_count, end_stream)` (required symbol, may be a no-op).
pub type OnHttpFilterHttpStreamData = unsafe extern "C" fn(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    stream_id: u64,
    data: *const envoy_dynamic_module_type_envoy_buffer,
    data_count: usize,
    end_stream: bool,
);

/// `envoy_dynamic_module_on_http_filter_http_stream_trailers(filter_envoy_ptr,
/// filter_module_ptr, stream_id, trailers, trailers_size)` (required symbol, may be a no-op).
pub type OnHttpFilterHttpStreamTrailers = unsafe extern "C" fn(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    stream_id: u64,
    trailers: *mut envoy_dynamic_module_type_envoy_http_header,
    trailers_size: usize,
);

/// `envoy_dynamic_module_on_http_filter_http_stream_complete(filter_envoy_ptr,
/// filter_module_ptr, stream_id)` (required symbol, may be a no-op).
pub type OnHttpFilterHttpStreamComplete = unsafe extern "C" fn(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    stream_id: u64,
);

/// `envoy_dynamic_module_on_http_filter_http_stream_reset(filter_envoy_ptr, filter_module_ptr,
/// stream_id, reason)` (required symbol, may be a no-op).
pub type OnHttpFilterHttpStreamReset = unsafe extern "C" fn(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    stream_id: u64,
    reason: envoy_dynamic_module_type_http_stream_reset_reason,
);

/// `envoy_dynamic_module_on_http_filter_scheduled(filter_envoy_ptr, filter_module_ptr,
/// event_id)`: on the stream's worker thread, after http_filter_scheduler_commit.
pub type OnHttpFilterScheduled = unsafe extern "C" fn(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    event_id: u64,
);

/// `envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
/// filter_envoy_ptr, filter_module_ptr)` (required symbol, may be a no-op).
pub type OnHttpFilterDownstreamAboveWriteBufferHighWatermark = unsafe extern "C" fn(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
);

/// `envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
/// filter_envoy_ptr, filter_module_ptr)` (required symbol, may be a no-op).
pub type OnHttpFilterDownstreamBelowWriteBufferLowWatermark = unsafe extern "C" fn(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
);

/// Optional: `envoy_dynamic_module_on_http_filter_local_reply(filter_envoy_ptr,
/// filter_module_ptr, response_code, details, reset_imminent)`.
pub type OnHttpFilterLocalReply = unsafe extern "C" fn(
    filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    filter_module_ptr: envoy_dynamic_module_type_http_filter_module_ptr,
    response_code: u32,
    details: envoy_dynamic_module_type_envoy_buffer,
    reset_imminent: bool,
) -> envoy_dynamic_module_type_on_http_filter_local_reply_status;

/// Optional: `envoy_dynamic_module_on_http_filter_config_scheduled(filter_config_envoy_ptr,
/// filter_config_ptr, event_id)`: on the MAIN thread, after
/// http_filter_config_scheduler_commit.
pub type OnHttpFilterConfigScheduled = unsafe extern "C" fn(
    filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    event_id: u64,
);

/// Optional (needed if we use http_filter_config_http_callout):
/// `envoy_dynamic_module_on_http_filter_config_http_callout_done(filter_config_envoy_ptr,
/// filter_config_ptr, callout_id, result, headers, headers_size, body_chunks,
/// body_chunks_size)`. Without this symbol the config-level callout's answer is dropped.
pub type OnHttpFilterConfigHttpCalloutDone = unsafe extern "C" fn(
    filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    filter_config_ptr: envoy_dynamic_module_type_http_filter_config_module_ptr,
    callout_id: u64,
    result: envoy_dynamic_module_type_http_callout_result,
    headers: *mut envoy_dynamic_module_type_envoy_http_header,
    headers_size: usize,
    body_chunks: *mut envoy_dynamic_module_type_envoy_buffer,
    body_chunks_size: usize,
);

// =============================================================================
// Callbacks (implemented by Envoy; each checked in the 1.40.0 binary with nm -D)
// =============================================================================

extern "C" {
    // ------------------------------ logging ---------------------------------

    /// Logs `message` under Envoy's `dynamic_modules` logger id at `level`.
    pub fn envoy_dynamic_module_callback_log(
        level: envoy_dynamic_module_type_log_level,
        message: envoy_dynamic_module_type_module_buffer,
    );

    /// Whether `level` is enabled for the `dynamic_modules` logger (cheap).
    pub fn envoy_dynamic_module_callback_log_enabled(level: envoy_dynamic_module_type_log_level) -> bool;

    /// Number of worker threads (--concurrency). Main thread only (program init / config new).
    pub fn envoy_dynamic_module_callback_get_concurrency() -> u32;

    // --------------------------- headers / trailers ---------------------------

    /// Value number `index` of header `key` in map `header_type`. Writes a null buffer
    /// (ptr null, length 0) when absent or index out of range; `optional_size` (may be null)
    /// receives the number of values of `key`. Result valid until the hook returns or a
    /// setter is called.
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        header_type: envoy_dynamic_module_type_http_header_type,
        key: envoy_dynamic_module_type_module_buffer,
        result_buffer: *mut envoy_dynamic_module_type_envoy_buffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;

    /// All values of `key` into `result_buffer`, which must have room for the count that
    /// get_header reports in `optional_size`.
    pub fn envoy_dynamic_module_callback_http_get_header_values(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        header_type: envoy_dynamic_module_type_http_header_type,
        key: envoy_dynamic_module_type_module_buffer,
        result_buffer: *mut envoy_dynamic_module_type_envoy_buffer,
    ) -> bool;

    /// Number of entries in map `header_type` (0 if none or not available yet).
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        header_type: envoy_dynamic_module_type_http_header_type,
    ) -> usize;

    /// Every entry of map `header_type` into `result_headers` (room for get_headers_size).
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        header_type: envoy_dynamic_module_type_http_header_type,
        result_headers: *mut envoy_dynamic_module_type_envoy_http_header,
    ) -> bool;

    /// Appends a value to header `key` (keeps the existing values). Envoy copies the bytes.
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        header_type: envoy_dynamic_module_type_http_header_type,
        key: envoy_dynamic_module_type_module_buffer,
        value: envoy_dynamic_module_type_module_buffer,
    ) -> bool;

    /// Replaces all values of `key` with `value`; a `value` whose ptr is null REMOVES the
    /// header (there is no separate remove callback). Envoy copies the bytes.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        header_type: envoy_dynamic_module_type_http_header_type,
        key: envoy_dynamic_module_type_module_buffer,
        value: envoy_dynamic_module_type_module_buffer,
    ) -> bool;

    // ------------------------------ local reply -------------------------------

    /// Local reply (Envoy's sendLocalReply): status, extra headers, body, and response code
    /// details (may be a null buffer). Everything is copied during the call.
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        status_code: u32,
        headers_vector: *mut envoy_dynamic_module_type_module_http_header,
        headers_vector_size: usize,
        body: envoy_dynamic_module_type_module_buffer,
        details: envoy_dynamic_module_type_module_buffer,
    );

    /// Resets the stream (Envoy's `decoder_callbacks->resetStream(reason, details)`): the
    /// downstream gets a reset (HTTP/2 RST_STREAM, HTTP/1 a closed connection), whatever part
    /// of the response it already has. Not in the header read above; exported by the 1.40.0
    /// binary (`nm -D`), signature from envoyproxy/envoy's abi_impl.cc of that line; seen to
    /// reset a stream in tests/e2e/test_faults.py. A no-op after the stream was destroyed.
    pub fn envoy_dynamic_module_callback_http_filter_reset_stream(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        reason: envoy_dynamic_module_type_http_filter_stream_reset_reason,
        details: envoy_dynamic_module_type_module_buffer,
    );

    // --------------------------------- body -----------------------------------

    /// Total bytes of the body `body_type` (0 if unavailable or empty).
    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        body_type: envoy_dynamic_module_type_http_body_type,
    ) -> usize;

    /// The slices of the body `body_type` into `result_buffer_vector` (room for
    /// get_body_chunks_size). Valid until the hook returns or the body is modified.
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        body_type: envoy_dynamic_module_type_http_body_type,
        result_buffer_vector: *mut envoy_dynamic_module_type_envoy_buffer,
    ) -> bool;

    /// Number of slices of the body `body_type`.
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        body_type: envoy_dynamic_module_type_http_body_type,
    ) -> usize;

    /// Appends `data` (copied) to the body `body_type`. False if that body is unavailable.
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        body_type: envoy_dynamic_module_type_http_body_type,
        data: envoy_dynamic_module_type_module_buffer,
    ) -> bool;

    /// Drains `number_of_bytes` from the front of the body `body_type` (all if larger).
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        body_type: envoy_dynamic_module_type_http_body_type,
        number_of_bytes: usize,
    ) -> bool;

    /// True if the request body just "received" is in fact a body an earlier filter buffered
    /// and released (so Received and Buffered are the same data).
    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    ) -> bool;

    /// Same as above for the response body.
    pub fn envoy_dynamic_module_callback_http_received_buffered_response_body(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    ) -> bool;

    /// Per-stream buffer limit in bytes (0 = no limit).
    pub fn envoy_dynamic_module_callback_http_get_buffer_limit(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    ) -> u64;

    /// Sets the per-stream buffer limit (prefer raising only).
    pub fn envoy_dynamic_module_callback_http_set_buffer_limit(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        limit: u64,
    );

    // ----------------------------- stream control ------------------------------

    /// Resumes the request path after a Stop* status (no-op if not stopped).
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    );

    /// Resumes the response path after a Stop* status (no-op if not stopped).
    pub fn envoy_dynamic_module_callback_http_filter_continue_encoding(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    );

    /// Index of the worker thread running this stream (0..concurrency).
    pub fn envoy_dynamic_module_callback_http_filter_get_worker_index(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    ) -> u32;

    // ------------------------------- attributes --------------------------------

    /// String attribute; `result` is Envoy-owned, valid until the hook returns.
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        attribute_id: envoy_dynamic_module_type_attribute_id,
        result: *mut envoy_dynamic_module_type_envoy_buffer,
    ) -> bool;

    /// Integer attribute.
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        attribute_id: envoy_dynamic_module_type_attribute_id,
        result: *mut u64,
    ) -> bool;

    /// Boolean attribute (e.g. ConnectionMtls).
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_bool(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        attribute_id: envoy_dynamic_module_type_attribute_id,
        result: *mut bool,
    ) -> bool;

    // -------------------------------- metadata ----------------------------------

    /// A string under `namespace`/`key` of the metadata `source` (0 dynamic, 1 route, ...);
    /// false when absent or not a string. The result is Envoy-owned, valid until the hook
    /// returns. (Signature of the header after v0.1.0; the module buffers are passed by value,
    /// which on x86-64 and aarch64 is the same as the (ptr, length) pairs of older headers.)
    pub fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        metadata_source: envoy_dynamic_module_type_metadata_source,
        namespace: envoy_dynamic_module_type_module_buffer,
        key: envoy_dynamic_module_type_module_buffer,
        result: *mut envoy_dynamic_module_type_envoy_buffer,
    ) -> bool;

    /// Sets a string under `namespace`/`key` of the stream's dynamic metadata (overwriting it).
    /// (Envoy 1.40 exports it; the module buffers are passed by value, as for get_metadata_string.)
    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        namespace: envoy_dynamic_module_type_module_buffer,
        key: envoy_dynamic_module_type_module_buffer,
        value: envoy_dynamic_module_type_module_buffer,
    );

    // -------------------------------- callouts ----------------------------------

    /// One-shot HTTP request to `cluster_name` from a stream. `headers` must include
    /// `:method`, `:path` and `host`; body may be empty. Envoy writes the callout id to
    /// `callout_id_out` on Success; the answer comes to on_http_filter_http_callout_done.
    pub fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        callout_id_out: *mut u64,
        cluster_name: envoy_dynamic_module_type_module_buffer,
        headers: *mut envoy_dynamic_module_type_module_http_header,
        headers_size: usize,
        body: envoy_dynamic_module_type_module_buffer,
        timeout_milliseconds: u64,
    ) -> envoy_dynamic_module_type_http_callout_init_result;

    /// Same, tied to the filter config instead of a stream (main thread); the answer comes
    /// to on_http_filter_config_http_callout_done (on the main thread).
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        callout_id_out: *mut u64,
        cluster_name: envoy_dynamic_module_type_module_buffer,
        headers: *mut envoy_dynamic_module_type_module_http_header,
        headers_size: usize,
        body: envoy_dynamic_module_type_module_buffer,
        timeout_milliseconds: u64,
    ) -> envoy_dynamic_module_type_http_callout_init_result;

    // --------------------------------- metrics -----------------------------------
    // Define in on_http_filter_config_new only (afterwards Envoy answers Frozen).
    // Names get the prefix "<metrics_namespace>." (default "dynamicmodulescustom").
    // label_names / label_values may be null when their length is 0; the number of
    // label_values must equal the number of label_names given at definition.

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        name: envoy_dynamic_module_type_module_buffer,
        label_names: *mut envoy_dynamic_module_type_module_buffer,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> envoy_dynamic_module_type_metrics_result;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        name: envoy_dynamic_module_type_module_buffer,
        label_names: *mut envoy_dynamic_module_type_module_buffer,
        label_names_length: usize,
        gauge_id_ptr: *mut usize,
    ) -> envoy_dynamic_module_type_metrics_result;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        name: envoy_dynamic_module_type_module_buffer,
        label_names: *mut envoy_dynamic_module_type_module_buffer,
        label_names_length: usize,
        histogram_id_ptr: *mut usize,
    ) -> envoy_dynamic_module_type_metrics_result;

    /// Filter-level (per stream, worker thread) updates of metrics defined on its config.
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        id: usize,
        label_values: *mut envoy_dynamic_module_type_module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> envoy_dynamic_module_type_metrics_result;

    pub fn envoy_dynamic_module_callback_http_filter_increment_gauge(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        id: usize,
        label_values: *mut envoy_dynamic_module_type_module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> envoy_dynamic_module_type_metrics_result;

    pub fn envoy_dynamic_module_callback_http_filter_decrement_gauge(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        id: usize,
        label_values: *mut envoy_dynamic_module_type_module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> envoy_dynamic_module_type_metrics_result;

    pub fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        id: usize,
        label_values: *mut envoy_dynamic_module_type_module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> envoy_dynamic_module_type_metrics_result;

    pub fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        id: usize,
        label_values: *mut envoy_dynamic_module_type_module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> envoy_dynamic_module_type_metrics_result;

    /// Config-level updates (no stream needed, e.g. from a scheduled/callout-done hook).
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        id: usize,
        label_values: *mut envoy_dynamic_module_type_module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> envoy_dynamic_module_type_metrics_result;

    pub fn envoy_dynamic_module_callback_http_filter_config_increment_gauge(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        id: usize,
        label_values: *mut envoy_dynamic_module_type_module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> envoy_dynamic_module_type_metrics_result;

    pub fn envoy_dynamic_module_callback_http_filter_config_decrement_gauge(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        id: usize,
        label_values: *mut envoy_dynamic_module_type_module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> envoy_dynamic_module_type_metrics_result;

    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        id: usize,
        label_values: *mut envoy_dynamic_module_type_module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> envoy_dynamic_module_type_metrics_result;

    pub fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        id: usize,
        label_values: *mut envoy_dynamic_module_type_module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> envoy_dynamic_module_type_metrics_result;

    // -------------------------------- schedulers ----------------------------------

    /// Creates a scheduler bound to this stream's worker thread (call it on that thread,
    /// inside a hook). Free it with http_filter_scheduler_delete.
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    ) -> envoy_dynamic_module_type_http_filter_scheduler_module_ptr;

    /// From ANY thread: run on_http_filter_scheduled(event_id) on the stream's worker.
    /// No-op once the filter is destroyed.
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler_module_ptr: envoy_dynamic_module_type_http_filter_scheduler_module_ptr,
        event_id: u64,
    );

    pub fn envoy_dynamic_module_callback_http_filter_scheduler_delete(
        scheduler_module_ptr: envoy_dynamic_module_type_http_filter_scheduler_module_ptr,
    );

    /// Creates a scheduler that posts to the MAIN thread for this filter config.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    ) -> envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr;

    /// From ANY thread: run on_http_filter_config_scheduled(event_id) on the main thread.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler_module_ptr: envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr,
        event_id: u64,
    );

    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler_module_ptr: envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr,
    );
}

/// Checks at compile time that the crate's hooks (at its root, beside `mod abi`) have the
/// signatures of the aliases above: every hook a certbound module defines. Used by
/// certbound-module and by make bench's no-op module (benches/module), one list for both.
#[macro_export]
macro_rules! hook_signatures {
    () => {
        const _: $crate::abi::OnProgramInit = $crate::envoy_dynamic_module_on_program_init;
        const _: $crate::abi::OnHttpFilterConfigNew = $crate::envoy_dynamic_module_on_http_filter_config_new;
        const _: $crate::abi::OnHttpFilterConfigDestroy = $crate::envoy_dynamic_module_on_http_filter_config_destroy;
        const _: $crate::abi::OnHttpFilterNew = $crate::envoy_dynamic_module_on_http_filter_new;
        const _: $crate::abi::OnHttpFilterRequestHeaders = $crate::envoy_dynamic_module_on_http_filter_request_headers;
        const _: $crate::abi::OnHttpFilterRequestBody = $crate::envoy_dynamic_module_on_http_filter_request_body;
        const _: $crate::abi::OnHttpFilterRequestTrailers =
            $crate::envoy_dynamic_module_on_http_filter_request_trailers;
        const _: $crate::abi::OnHttpFilterResponseHeaders =
            $crate::envoy_dynamic_module_on_http_filter_response_headers;
        const _: $crate::abi::OnHttpFilterResponseBody = $crate::envoy_dynamic_module_on_http_filter_response_body;
        const _: $crate::abi::OnHttpFilterResponseTrailers =
            $crate::envoy_dynamic_module_on_http_filter_response_trailers;
        const _: $crate::abi::OnHttpFilterStreamComplete = $crate::envoy_dynamic_module_on_http_filter_stream_complete;
        const _: $crate::abi::OnHttpFilterDestroy = $crate::envoy_dynamic_module_on_http_filter_destroy;
        const _: $crate::abi::OnHttpFilterHttpCalloutDone =
            $crate::envoy_dynamic_module_on_http_filter_http_callout_done;
        const _: $crate::abi::OnHttpFilterHttpStreamHeaders =
            $crate::envoy_dynamic_module_on_http_filter_http_stream_headers;
        const _: $crate::abi::OnHttpFilterHttpStreamData = $crate::envoy_dynamic_module_on_http_filter_http_stream_data;
        const _: $crate::abi::OnHttpFilterHttpStreamTrailers =
            $crate::envoy_dynamic_module_on_http_filter_http_stream_trailers;
        const _: $crate::abi::OnHttpFilterHttpStreamComplete =
            $crate::envoy_dynamic_module_on_http_filter_http_stream_complete;
        const _: $crate::abi::OnHttpFilterHttpStreamReset =
            $crate::envoy_dynamic_module_on_http_filter_http_stream_reset;
        const _: $crate::abi::OnHttpFilterScheduled = $crate::envoy_dynamic_module_on_http_filter_scheduled;
        const _: $crate::abi::OnHttpFilterDownstreamAboveWriteBufferHighWatermark =
            $crate::envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark;
        const _: $crate::abi::OnHttpFilterConfigScheduled =
            $crate::envoy_dynamic_module_on_http_filter_config_scheduled;
        const _: $crate::abi::OnHttpFilterConfigHttpCalloutDone =
            $crate::envoy_dynamic_module_on_http_filter_config_http_callout_done;
        const _: $crate::abi::OnHttpFilterDownstreamBelowWriteBufferLowWatermark =
            $crate::envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark;
    };
}
