//! The discovery flow: a GET of an AS metadata document (RFC 8414, OpenID
//! Discovery) whose JSON response gains RFC 8705's members (see
//! [`crate::discovery::patch_metadata`]). Anything that is not a readable
//! 200 JSON document passes unchanged and is counted.

use super::{replace_response_body, Body, Host, Step};
use crate::counter::Counter;
use crate::discovery::patch_metadata;
use crate::introspection::Patch;
use log::Level;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// The request went upstream; the response is not seen yet.
    Requested,
    /// The response is held until its end, to be patched.
    Held,
    /// Decided: whatever follows passes.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryFlow {
    state: State,
    max_body_bytes: usize,
    mtls_host: Option<String>,
}

impl DiscoveryFlow {
    /// A request for a metadata document: only a GET is patched, and its
    /// response must come unencoded to be read.
    pub fn start(
        host: &mut impl Host,
        method: Option<&str>,
        max_body_bytes: usize,
        mtls_host: Option<String>,
    ) -> Option<DiscoveryFlow> {
        if method != Some("GET") {
            return None;
        }
        let _ = host.set_request_header("accept-encoding", None);
        Some(DiscoveryFlow { state: State::Requested, max_body_bytes, mtls_host })
    }

    /// The response is held and must be decided at its end (its last body chunk or its trailers).
    pub fn awaiting_end(&self) -> bool {
        self.state == State::Held
    }

    fn pass_unchanged(&mut self, host: &mut impl Host, why: &str) -> Step {
        if !why.is_empty() {
            host.log(Level::Debug, &format!("certbound: metadata response left unpatched: {why}"));
        }
        host.count(Counter::MetadataUnpatched);
        self.state = State::Done;
        Step::Continue
    }

    pub fn response_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Step {
        if self.state != State::Requested {
            return Step::Continue;
        }
        if host.response_header(":status").as_deref() != Some("200") || end_of_stream {
            return self.pass_unchanged(host, "not a 200 with a body");
        }
        if !host.response_header("content-type").is_some_and(|c| c.contains("json")) {
            return self.pass_unchanged(host, "not JSON");
        }
        if host.response_header("content-encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
            return self.pass_unchanged(host, "encoded");
        }
        self.state = State::Held;
        Step::Pause
    }

    pub fn response_body(&mut self, host: &mut impl Host, body_size: usize, end_of_stream: bool) -> Step {
        if self.state != State::Held {
            return Step::Continue;
        }
        if body_size > self.max_body_bytes {
            host.log(Level::Warn, "certbound: metadata over max_body_bytes left unpatched");
            return self.pass_unchanged(host, "");
        }
        if !end_of_stream {
            return Step::Pause;
        }
        let body = match host.body(Body::Response, body_size) {
            Ok(b) => b,
            Err(s) => return self.pass_unchanged(host, &format!("cannot read it (host status {})", s.0)),
        };
        self.state = State::Done;
        match patch_metadata(&body, self.mtls_host.as_deref()) {
            Patch::Patched(patched) => {
                if let Err(e) = replace_response_body(host, body_size, &patched) {
                    return Step::Reply(e);
                }
                host.count(Counter::MetadataPatched);
                Step::Continue
            }
            Patch::Unchanged(why) => self.pass_unchanged(host, &format!("{why:?}")),
        }
    }

    /// Trailers end the response: a held document is decided here.
    pub fn response_trailers(&mut self, host: &mut impl Host, body_size: usize) -> Step {
        self.response_body(host, body_size, true)
    }
}

impl super::Held for DiscoveryFlow {
    fn awaiting_response_end(&self) -> bool {
        self.awaiting_end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::mock::MockHost;

    const DOC: &[u8] = br#"{"issuer":"https://as.example","token_endpoint":"https://as.example/token"}"#;

    fn host(status: &str, content_type: &str, body: &[u8]) -> MockHost {
        let mut h = MockHost::default();
        h.request_headers.insert("accept-encoding".into(), "gzip".into());
        h.response_headers.insert(":status".into(), status.into());
        h.response_headers.insert("content-type".into(), content_type.into());
        h.response_body = body.to_vec();
        h
    }

    fn flow(h: &mut MockHost) -> DiscoveryFlow {
        DiscoveryFlow::start(h, Some("GET"), 1024, None).unwrap()
    }

    fn patched(h: &MockHost) -> serde_json::Value {
        serde_json::from_slice(&h.response_body).unwrap()
    }

    #[test]
    fn a_get_asks_for_an_unencoded_response_and_other_methods_are_not_patched() {
        let mut h = host("200", "application/json", DOC);
        assert!(DiscoveryFlow::start(&mut h, Some("POST"), 1024, None).is_none());
        assert!(h.request_headers.contains_key("accept-encoding"));
        flow(&mut h);
        assert!(!h.request_headers.contains_key("accept-encoding"));
    }

    #[test]
    fn a_document_in_one_chunk_is_patched_with_its_length() {
        let mut h = host("200", "application/json; charset=utf-8", DOC);
        let mut f = flow(&mut h);
        assert_eq!(f.response_headers(&mut h, false), Step::Pause);
        assert!(f.awaiting_end());
        assert_eq!(f.response_body(&mut h, DOC.len(), true), Step::Continue);
        assert_eq!(patched(&h)["tls_client_certificate_bound_access_tokens"], true);
        assert_eq!(h.response_headers["content-length"], h.response_body.len().to_string());
        assert_eq!(h.counted(Counter::MetadataPatched), 1);
        assert!(!f.awaiting_end());
    }

    #[test]
    fn a_document_in_many_chunks_is_held_until_its_end() {
        let mut h = host("200", "application/json", DOC);
        let mut f = flow(&mut h);
        f.response_headers(&mut h, false);
        for size in [5, 20, 40] {
            assert_eq!(f.response_body(&mut h, size, false), Step::Pause);
        }
        assert_eq!(f.response_body(&mut h, DOC.len(), true), Step::Continue);
        assert_eq!(h.counted(Counter::MetadataPatched), 1);
    }

    #[test]
    fn a_document_ended_by_trailers_is_patched_there() {
        let mut h = host("200", "application/json", DOC);
        let mut f = flow(&mut h);
        f.response_headers(&mut h, false);
        assert_eq!(f.response_body(&mut h, DOC.len(), false), Step::Pause);
        assert_eq!(f.response_trailers(&mut h, DOC.len()), Step::Continue);
        assert_eq!(patched(&h)["tls_client_certificate_bound_access_tokens"], true);
        // Trailers after a decision change nothing.
        assert_eq!(f.response_trailers(&mut h, DOC.len()), Step::Continue);
        assert_eq!(h.counted(Counter::MetadataPatched), 1);
    }

    #[test]
    fn error_non_json_encoded_and_empty_responses_pass_unchanged_and_are_counted() {
        for (status, ct, encoding, eos) in [
            ("404", "application/json", None, false),
            ("200", "text/html", None, false),
            ("200", "application/json", Some("gzip"), false),
            ("200", "application/json", None, true),
        ] {
            let mut h = host(status, ct, DOC);
            if let Some(e) = encoding {
                h.response_headers.insert("content-encoding".into(), e.into());
            }
            let mut f = flow(&mut h);
            assert_eq!(f.response_headers(&mut h, eos), Step::Continue, "{status} {ct} {encoding:?}");
            assert_eq!(f.response_body(&mut h, DOC.len(), true), Step::Continue);
            assert_eq!(h.response_body, DOC);
            assert_eq!(h.counted(Counter::MetadataUnpatched), 1);
        }
    }

    #[test]
    fn a_document_over_the_limit_passes_unchanged() {
        let mut h = host("200", "application/json", DOC);
        let mut f = DiscoveryFlow::start(&mut h, Some("GET"), 10, None).unwrap();
        f.response_headers(&mut h, false);
        assert_eq!(f.response_body(&mut h, DOC.len(), false), Step::Continue);
        assert_eq!(h.response_body, DOC);
        assert_eq!(h.counted(Counter::MetadataUnpatched), 1);
    }

    #[test]
    fn a_body_the_host_will_not_give_passes_unchanged() {
        let mut h = host("200", "application/json", DOC);
        h.failing.insert("body");
        let mut f = flow(&mut h);
        f.response_headers(&mut h, false);
        assert_eq!(f.response_body(&mut h, DOC.len(), true), Step::Continue);
        assert_eq!(h.counted(Counter::MetadataUnpatched), 1);
    }

    #[test]
    fn a_patch_the_host_cannot_apply_whole_becomes_an_error_reply() {
        for failing in ["replace_body", "set_response_header"] {
            let mut h = host("200", "application/json", DOC);
            h.failing.insert(failing);
            let mut f = flow(&mut h);
            f.response_headers(&mut h, false);
            let Step::Reply(e) = f.response_body(&mut h, DOC.len(), true) else { panic!("{failing}: no reply") };
            assert_eq!(e.status, 500, "{failing}");
            assert_eq!(h.counted(Counter::MetadataPatched), 0);
        }
    }

    #[test]
    fn a_json_document_that_is_not_an_object_passes_unchanged() {
        let mut h = host("200", "application/json", b"[1,2]");
        let mut f = flow(&mut h);
        f.response_headers(&mut h, false);
        assert_eq!(f.response_body(&mut h, 5, true), Step::Continue);
        assert_eq!(h.response_body, b"[1,2]");
        assert_eq!(h.counted(Counter::MetadataUnpatched), 1);
    }
}
