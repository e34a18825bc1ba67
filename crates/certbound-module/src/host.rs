//! The core's host over one stream's Envoy filter: every callback's result
//! mapped to a value or an error the core decides on (never a panic).

use crate::abi::*;
use crate::{copy, memory, module_buffer, text_of, FilterConfig};
use certbound_core::config::EtcdConfig;
use certbound_core::counter::{Counter, Metric};
use certbound_core::decision::{Decision, NAMESPACE};
use certbound_core::error::{OAuthError, Reason};
use certbound_core::flow::{Attribute, Body, Host, HostError};
use certbound_core::shared::{SetError, SharedData};
use certbound_core::stream::StreamHost;

/// A host status for "Envoy said no" (the ABI reports booleans, not codes).
const FAILED: HostError = HostError(10);

/// The process-wide binding map as [`SharedData`].
pub struct SharedMemory;

impl SharedData for SharedMemory {
    fn shared_get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        memory::get(key)
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        memory::set(key, value, cas)
    }
}

pub struct ModuleHost<'a> {
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    config: &'a FilterConfig,
}

fn empty() -> envoy_dynamic_module_type_envoy_buffer {
    envoy_dynamic_module_type_envoy_buffer { ptr: std::ptr::null(), length: 0 }
}

impl<'a> ModuleHost<'a> {
    pub fn new(envoy: envoy_dynamic_module_type_http_filter_envoy_ptr, config: &'a FilterConfig) -> Self {
        ModuleHost { envoy, config }
    }

    fn header(&mut self, map: envoy_dynamic_module_type_http_header_type, name: &str) -> Option<String> {
        let mut out = empty();
        let mut count: usize = 0;
        // SAFETY: the live filter of the current hook; out-pointers are live locals; the value is copied at once.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.envoy,
                map,
                module_buffer(name.as_bytes()),
                &mut out,
                0,
                &mut count,
            )
        };
        if !found || out.ptr.is_null() || count == 0 {
            return None;
        }
        Some(text_of(out))
    }

    fn set_header(
        &mut self,
        map: envoy_dynamic_module_type_http_header_type,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), HostError> {
        let value = match value {
            Some(v) => module_buffer(v.as_bytes()),
            // A null value removes the header.
            None => envoy_dynamic_module_type_module_buffer { ptr: std::ptr::null(), length: 0 },
        };
        // SAFETY: the live filter; name and value are live for the call and copied by Envoy.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_set_header(self.envoy, map, module_buffer(name.as_bytes()), value)
        };
        if ok || value.ptr.is_null() {
            // Removing a header that is not there is not a failure.
            Ok(())
        } else {
            Err(FAILED)
        }
    }

    fn chunks(&mut self, body_type: envoy_dynamic_module_type_http_body_type) -> Vec<u8> {
        // SAFETY: the live filter; the vector has room for the count Envoy reported; slices are copied at once.
        unsafe {
            let n = envoy_dynamic_module_callback_http_get_body_chunks_size(self.envoy, body_type);
            if n == 0 {
                return Vec::new();
            }
            let mut slices = vec![empty(); n];
            if !envoy_dynamic_module_callback_http_get_body_chunks(self.envoy, body_type, slices.as_mut_ptr()) {
                return Vec::new();
            }
            let mut out = Vec::new();
            for s in slices {
                out.extend_from_slice(&copy(s));
            }
            out
        }
    }

    /// The body types holding what the stream has of a body: what Envoy
    /// buffered for this filter, then the chunk of the current hook (unless
    /// that chunk is the buffer itself, handed on by an earlier filter).
    fn body_types(&mut self, which: Body) -> &'static [envoy_dynamic_module_type_http_body_type] {
        // SAFETY: the live filter.
        match which {
            Body::Request => {
                if unsafe { envoy_dynamic_module_callback_http_received_buffered_request_body(self.envoy) } {
                    &[envoy_dynamic_module_type_http_body_type_ReceivedRequestBody]
                } else {
                    &[
                        envoy_dynamic_module_type_http_body_type_BufferedRequestBody,
                        envoy_dynamic_module_type_http_body_type_ReceivedRequestBody,
                    ]
                }
            }
            Body::Response => {
                if unsafe { envoy_dynamic_module_callback_http_received_buffered_response_body(self.envoy) } {
                    &[envoy_dynamic_module_type_http_body_type_ReceivedResponseBody]
                } else {
                    &[
                        envoy_dynamic_module_type_http_body_type_BufferedResponseBody,
                        envoy_dynamic_module_type_http_body_type_ReceivedResponseBody,
                    ]
                }
            }
        }
    }

    /// Bytes of a body the stream has so far.
    pub fn body_size(&mut self, which: Body) -> usize {
        let types = self.body_types(which);
        // SAFETY: the live filter.
        types.iter().map(|t| unsafe { envoy_dynamic_module_callback_http_get_body_size(self.envoy, *t) }).sum()
    }

    fn string_attribute(&mut self, id: envoy_dynamic_module_type_attribute_id) -> Option<Vec<u8>> {
        let mut out = empty();
        // SAFETY: the live filter; `out` is a live local; the value is copied at once.
        let found = unsafe { envoy_dynamic_module_callback_http_filter_get_attribute_string(self.envoy, id, &mut out) };
        if found && !out.ptr.is_null() {
            Some(copy(out))
        } else {
            None
        }
    }

    fn bump(&mut self, id: Option<usize>) {
        if let Some(id) = id {
            // SAFETY: the live filter; no labels.
            let _ = unsafe {
                envoy_dynamic_module_callback_http_filter_increment_counter(self.envoy, id, std::ptr::null_mut(), 0, 1)
            };
        }
    }
}

impl Host for ModuleHost<'_> {
    fn request_header(&mut self, name: &str) -> Option<String> {
        self.header(envoy_dynamic_module_type_http_header_type_RequestHeader, name)
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        self.set_header(envoy_dynamic_module_type_http_header_type_RequestHeader, name, value)
    }
    fn response_header(&mut self, name: &str) -> Option<String> {
        self.header(envoy_dynamic_module_type_http_header_type_ResponseHeader, name)
    }
    fn set_response_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        self.set_header(envoy_dynamic_module_type_http_header_type_ResponseHeader, name, value)
    }
    fn body(&mut self, which: Body, size: usize) -> Result<Vec<u8>, HostError> {
        let mut out = Vec::new();
        for t in self.body_types(which) {
            out.extend_from_slice(&self.chunks(*t));
        }
        out.truncate(size);
        Ok(out)
    }
    fn replace_body(&mut self, which: Body, _size: usize, data: &[u8]) -> Result<(), HostError> {
        let types = self.body_types(which);
        // SAFETY: the live filter; `data` is live for the call and copied by Envoy.
        unsafe {
            for t in types {
                envoy_dynamic_module_callback_http_drain_body(self.envoy, *t, usize::MAX);
            }
            // The new body goes where Envoy will send it from: the buffer when there is one.
            let target = *types.first().ok_or(FAILED)?;
            if envoy_dynamic_module_callback_http_append_body(self.envoy, target, module_buffer(data)) {
                return Ok(());
            }
            let received = *types.last().ok_or(FAILED)?;
            if envoy_dynamic_module_callback_http_append_body(self.envoy, received, module_buffer(data)) {
                Ok(())
            } else {
                Err(FAILED)
            }
        }
    }
    fn now(&mut self) -> Result<i64, HostError> {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .map_err(|_| FAILED)
    }
    fn attribute(&mut self, attribute: Attribute<'_>) -> Result<Option<Vec<u8>>, HostError> {
        let id = match attribute {
            Attribute::PeerCertificateDigest => {
                envoy_dynamic_module_type_attribute_id_ConnectionSha256PeerCertificateDigest
            }
            Attribute::SourceAddress => envoy_dynamic_module_type_attribute_id_SourceAddress,
            Attribute::PeerSubject => envoy_dynamic_module_type_attribute_id_ConnectionSubjectPeerCertificate,
            Attribute::PeerDnsSan => envoy_dynamic_module_type_attribute_id_ConnectionDnsSanPeerCertificate,
            // jwt_claims is refused at load: 1.40's ABI reads metadata one level deep.
            Attribute::JwtCnfX5t { .. } => return Ok(None),
        };
        Ok(self.string_attribute(id))
    }
    fn count(&mut self, counter: Counter) {
        let id = self.config.counters.get(Metric::Count(counter).index()).copied().flatten();
        self.bump(id);
    }
    fn log(&mut self, level: log::Level, message: &str) {
        if level <= log::max_level() {
            crate::log_line(level, message);
        }
    }
}

impl SharedData for ModuleHost<'_> {
    fn shared_get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        memory::get(key)
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        memory::set(key, value, cas)
    }
}

pub fn header_array(headers: &[(&str, &str)]) -> Vec<envoy_dynamic_module_type_module_http_header> {
    headers
        .iter()
        .map(|(k, v)| envoy_dynamic_module_type_module_http_header {
            key_ptr: k.as_ptr().cast(),
            key_length: k.len(),
            value_ptr: v.as_ptr().cast(),
            value_length: v.len(),
        })
        .collect()
}

impl StreamHost for ModuleHost<'_> {
    fn send_local_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
        send_response(self.envoy, status, headers, body);
        Ok(())
    }
    fn reset(&mut self) {
        // send_response cannot fail in this ABI; nothing else to do.
    }
    fn request_headers(&mut self) -> Vec<(String, String)> {
        // SAFETY: the live filter; the array has room for the count Envoy reported; copied at once.
        unsafe {
            let map = envoy_dynamic_module_type_http_header_type_RequestHeader;
            let n = envoy_dynamic_module_callback_http_get_headers_size(self.envoy, map);
            let blank = envoy_dynamic_module_type_envoy_http_header {
                key_ptr: std::ptr::null(),
                key_length: 0,
                value_ptr: std::ptr::null(),
                value_length: 0,
            };
            let mut all = vec![blank; n];
            if n == 0 || !envoy_dynamic_module_callback_http_get_headers(self.envoy, map, all.as_mut_ptr()) {
                return Vec::new();
            }
            all.into_iter()
                .map(|h| {
                    let k = envoy_dynamic_module_type_envoy_buffer { ptr: h.key_ptr, length: h.key_length };
                    let v = envoy_dynamic_module_type_envoy_buffer { ptr: h.value_ptr, length: h.value_length };
                    (text_of(k), text_of(v))
                })
                .collect()
        }
    }
    fn route_metadata(&mut self, key: &str) -> Option<String> {
        let mut out = empty();
        // SAFETY: the live filter; namespace and key live for the call; the value is copied at once.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_metadata_string(
                self.envoy,
                envoy_dynamic_module_type_metadata_source_Route,
                module_buffer(b"certbound"),
                module_buffer(key.as_bytes()),
                &mut out,
            )
        };
        if !found {
            return None;
        }
        String::from_utf8(copy(out)).ok().filter(|s| !s.is_empty())
    }
    fn etcd_call(&mut self, cfg: &EtcdConfig, path: &str, body: &[u8]) -> Result<u64, String> {
        let mut headers = header_array(&[
            (":method", "POST"),
            (":path", path),
            ("host", &cfg.authority),
            ("content-type", "application/json"),
        ]);
        let mut id: u64 = 0;
        // SAFETY: the live filter; every buffer is live for the call and copied by Envoy.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.envoy,
                &mut id,
                module_buffer(cfg.cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                module_buffer(body),
                cfg.timeout_ms,
            )
        };
        if result == envoy_dynamic_module_type_http_callout_init_result_Success {
            Ok(id)
        } else {
            Err(format!("cannot call cluster {}: callout result {result}", cfg.cluster))
        }
    }
    fn refused(&mut self, reason: Reason) {
        let id = self.config.counters.get(Metric::Refused(reason).index()).copied().flatten();
        self.bump(id);
    }
    fn reported(&mut self, reason: Reason) {
        let id = self.config.counters.get(Metric::Reported(reason).index()).copied().flatten();
        self.bump(id);
    }
    fn decided(&mut self, decision: &Decision) {
        // Dynamic metadata, namespace `certbound`, one string per member.
        let namespace = module_buffer(NAMESPACE.as_bytes());
        for (key, value) in decision.fields() {
            // SAFETY: the live filter of this hook; the buffers outlive the call, which copies them.
            unsafe {
                envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                    self.envoy,
                    namespace,
                    module_buffer(key.as_bytes()),
                    module_buffer(value.as_bytes()),
                )
            };
        }
    }
    fn slots_used(&mut self, used: u64) {
        if let Some(id) = self.config.slots_used {
            // SAFETY: the live filter; no labels.
            let _ = unsafe {
                envoy_dynamic_module_callback_http_filter_set_gauge(self.envoy, id, std::ptr::null_mut(), 0, used)
            };
        }
    }
    fn log_line(&mut self, level: log::Level, line: &str) {
        crate::log_line(level, line);
    }
}

/// A stream whose state is missing is answered 500, never passed on.
pub fn refuse_unconfigured(envoy: envoy_dynamic_module_type_http_filter_envoy_ptr) {
    let e = OAuthError::not_configured();
    let headers = e.headers();
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    send_response(envoy, e.status, &pairs, &e.body());
}

/// A request whose hook faulted (a panic caught at the hook) is answered 500 `server_error`,
/// never passed on.
pub fn refuse_fault(envoy: envoy_dynamic_module_type_http_filter_envoy_ptr) {
    let e = OAuthError::internal("certbound had an internal fault on this request; it was not passed on");
    let headers = e.headers();
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    send_response(envoy, e.status, &pairs, &e.body());
}

/// A stream whose response hook faulted is reset: part of the response may be downstream
/// already, so no local reply can replace it.
pub fn reset_stream(envoy: envoy_dynamic_module_type_http_filter_envoy_ptr) {
    // SAFETY: the live filter of the current hook; the details are copied by Envoy.
    unsafe {
        envoy_dynamic_module_callback_http_filter_reset_stream(
            envoy,
            envoy_dynamic_module_type_http_filter_stream_reset_reason_LocalReset,
            module_buffer(b"certbound_internal_fault"),
        )
    };
}

/// A local reply (Envoy copies everything; this ABI reports no failure).
fn send_response(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    status: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut array = header_array(headers);
    // SAFETY: the live filter of the current hook; every buffer lives for the call and is copied by Envoy.
    unsafe {
        envoy_dynamic_module_callback_http_send_response(
            envoy,
            status,
            array.as_mut_ptr(),
            array.len(),
            module_buffer(body),
            module_buffer(b"certbound"),
        )
    };
}

/// A callout's answer: the body of a 200, or why there is none.
pub unsafe fn callout_answer(
    result: envoy_dynamic_module_type_http_callout_result,
    headers: *mut envoy_dynamic_module_type_envoy_http_header,
    headers_size: usize,
    chunks: *mut envoy_dynamic_module_type_envoy_buffer,
    chunks_size: usize,
) -> Result<Vec<u8>, String> {
    if result != envoy_dynamic_module_type_http_callout_result_Success || headers.is_null() {
        return Err(format!("no answer (callout result {result})"));
    }
    // SAFETY: Envoy passes arrays of the given sizes, valid until the hook returns.
    let headers = unsafe { std::slice::from_raw_parts(headers, headers_size) };
    let status = headers
        .iter()
        .find(|h| copy(envoy_dynamic_module_type_envoy_buffer { ptr: h.key_ptr, length: h.key_length }) == b":status")
        .map(|h| copy(envoy_dynamic_module_type_envoy_buffer { ptr: h.value_ptr, length: h.value_length }));
    let mut body = Vec::new();
    if !chunks.is_null() {
        // SAFETY: as above.
        for c in unsafe { std::slice::from_raw_parts(chunks, chunks_size) } {
            body.extend_from_slice(&copy(*c));
        }
    }
    certbound_core::stream::callout_result(status.as_deref(), body)
}
