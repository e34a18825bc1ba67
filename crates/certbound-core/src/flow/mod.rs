//! The endpoint flows as state machines over a narrow [`Host`]: the shell
//! turns each Envoy callback into a call here and carries out the [`Step`]
//! it returns. A flow never calls the host for a decision it could get
//! wrong: every host call returns a value, and a failed one is decided on.
//!
//! The four flows: [`token`], [`introspection`], [`resource`], [`discovery`].
//! [`crate::stream::Stream`] carries out their steps for every shell; store
//! lookups and writes are steps it serves from shared data or etcd.

use std::borrow::Cow;
pub mod discovery;
pub mod introspection;
pub mod resource;
pub mod token;

use crate::counter::Counter;
use crate::error::OAuthError;

/// What the shell does next with the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Let what was received go on.
    Continue,
    /// Hold it (and what follows) until a later event decides.
    Pause,
    /// Answer with this error instead (a local reply); the stream is decided.
    Reply(OAuthError),
    /// Answer a protected-resource request with this RFC 6750 error.
    RefuseResource(crate::resource::ResourceError),
    /// A report-only route would refuse the request with this error: count,
    /// log and record it, and let the request go on as if allowed.
    Report(crate::resource::ResourceError),
    /// Hold the stream and look this token's binding up in the store (its
    /// key, then its legacy key when that finds nothing); the answer goes
    /// back to the flow that asked (`looked_up`).
    Lookup(crate::token_key::TokenKeys),
    /// Hold the stream and store these bindings (put-if-absent); the outcome
    /// goes back to the flow that asked (`stored`).
    Bind(Vec<crate::binding::ToBind>),
}

/// Why bindings could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindError {
    /// No free or expired slot where a new binding may go: live bindings are never evicted.
    Full,
    /// The store failed or refused (a conflict, etcd down, a host status), and why.
    Failed(String),
}

/// What the shell asks of every flow: whether it holds the request or the
/// response until its end (so trailers can end it).
pub trait Held {
    fn awaiting_request_end(&self) -> bool {
        false
    }
    fn awaiting_response_end(&self) -> bool {
        false
    }
}

/// Which body a host call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Request,
    Response,
}

/// The Envoy attributes certbound reads: each shell maps every one to its
/// host's own names (a match without a wildcard, so a new one is not forgotten).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute<'a> {
    /// `connection.sha256_peer_certificate_digest`: the client certificate Envoy's TLS saw.
    PeerCertificateDigest,
    /// `connection.subject_peer_certificate`: the downstream proxy's subject (header trust).
    PeerSubject,
    /// `connection.dns_san_peer_certificate`: its first DNS SAN.
    PeerDnsSan,
    /// `source.address`: the TCP peer.
    SourceAddress,
    /// `cnf.x5t#S256` of the JWT payload `jwt_authn` verified into dynamic metadata.
    JwtCnfX5t { namespace: &'a str, payload_key: &'a str },
}

impl Attribute<'_> {
    /// The attribute's path as proxy-wasm's `get_property` takes it: its segments joined by NUL.
    /// The fixed ones are constants, so the request path (one digest read per request) builds none.
    pub fn path(&self) -> Cow<'static, str> {
        match self {
            Attribute::PeerCertificateDigest => Cow::Borrowed("connection\0sha256_peer_certificate_digest"),
            Attribute::PeerSubject => Cow::Borrowed("connection\0subject_peer_certificate"),
            Attribute::PeerDnsSan => Cow::Borrowed("connection\0dns_san_peer_certificate"),
            Attribute::SourceAddress => Cow::Borrowed("source\0address"),
            Attribute::JwtCnfX5t { namespace, payload_key } => {
                Cow::Owned(["metadata", "filter_metadata", namespace, payload_key, "cnf", "x5t#S256"].join("\0"))
            }
        }
    }
}

/// A host status other than Ok, as a value (never a panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

/// What a flow may ask of the host.
pub trait Host {
    fn request_header(&mut self, name: &str) -> Option<String>;
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError>;
    fn response_header(&mut self, name: &str) -> Option<String>;
    fn set_response_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError>;
    fn body(&mut self, which: Body, size: usize) -> Result<Vec<u8>, HostError>;
    fn replace_body(&mut self, which: Body, size: usize, data: &[u8]) -> Result<(), HostError>;
    /// Unix seconds from the host clock.
    fn now(&mut self) -> Result<i64, HostError>;
    /// An Envoy attribute; `Ok(None)` when it has no value.
    fn attribute(&mut self, attribute: Attribute<'_>) -> Result<Option<Vec<u8>>, HostError>;
    fn count(&mut self, counter: Counter);
    /// A log line about this stream (the shell prefixes the stream's ids).
    fn log(&mut self, level: log::Level, message: &str);
    /// The client this request is about, once the flow knows it (for the decision record).
    fn client(&mut self, _client_id: &str) {}
}

/// The token and introspection endpoints are judged on their form body: an
/// OAuth parameter in the query, or a body in an encoding certbound does not
/// read, could be read by the AS and never by certbound.
pub fn body_endpoint_check(host: &mut impl Host) -> Result<(), OAuthError> {
    let path = host.request_header(":path").unwrap_or_default();
    let content_type = if path.contains('?') { host.request_header("content-type") } else { None };
    endpoint_query_check(&path, content_type.as_deref())?;
    if crate::form::is_encoded(host.request_header("content-encoding").as_deref()) {
        return Err(OAuthError::invalid_request(
            crate::error::Reason::BadRequest,
            "an encoded request body cannot be judged",
        ));
    }
    Ok(())
}

/// The query of the token or introspection endpoint: no OAuth body
/// parameter under any reading, and no query beside a `Content-Type` whose
/// charset is not ASCII-transparent (Django and Tomcat's
/// `useBodyEncodingForURI` decode the query with it).
pub fn endpoint_query_check(path: &str, content_type: Option<&str>) -> Result<(), OAuthError> {
    if let Some(name) = crate::form::body_only_parameter_in_query(path) {
        return Err(OAuthError::invalid_request(
            crate::error::Reason::BadRequest,
            format!("parameter {name} is accepted in the request body only"),
        ));
    }
    if path.split_once('?').is_some_and(|(_, q)| !q.is_empty()) {
        crate::params::check_charset(content_type)
            .map_err(|e| OAuthError::invalid_request(e.reason(), e.to_string()))?;
    }
    Ok(())
}

/// Replaces a held response's body with a patched one and sets its
/// `Content-Length`; a half-applied patch becomes an error reply, never a
/// body with the wrong length.
pub fn replace_response_body(host: &mut impl Host, size: usize, patched: &[u8]) -> Result<(), OAuthError> {
    host.replace_body(Body::Response, size, patched)
        .and_then(|_| host.set_response_header("content-length", Some(&patched.len().to_string())))
        .map_err(|s| OAuthError::internal(format!("the response could not be completed (host status {})", s.0)))
}

#[cfg(test)]
pub mod mock {
    //! A host in memory: headers, bodies, counters, and any host status on demand.
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[derive(Debug, Default)]
    pub struct MockHost {
        pub request_headers: HashMap<String, String>,
        pub response_headers: HashMap<String, String>,
        pub request_body: Vec<u8>,
        pub response_body: Vec<u8>,
        pub counted: Vec<Counter>,
        pub logged: Vec<(log::Level, String)>,
        /// Host calls (by name) that answer with a failure status.
        pub failing: HashSet<&'static str>,
        /// Envoy attributes by their path joined with '.'.
        pub attributes: HashMap<String, Vec<u8>>,
        pub now: i64,
    }

    impl MockHost {
        fn fail(&self, call: &'static str) -> Result<(), HostError> {
            if self.failing.contains(call) {
                Err(HostError(2))
            } else {
                Ok(())
            }
        }

        pub fn counted(&self, c: Counter) -> usize {
            self.counted.iter().filter(|x| x.name() == c.name()).count()
        }
    }

    impl Host for MockHost {
        fn request_header(&mut self, name: &str) -> Option<String> {
            self.request_headers.get(name).cloned()
        }
        fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
            self.fail("set_request_header")?;
            match value {
                Some(v) => self.request_headers.insert(name.into(), v.into()),
                None => self.request_headers.remove(name),
            };
            Ok(())
        }
        fn response_header(&mut self, name: &str) -> Option<String> {
            self.response_headers.get(name).cloned()
        }
        fn set_response_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
            self.fail("set_response_header")?;
            match value {
                Some(v) => self.response_headers.insert(name.into(), v.into()),
                None => self.response_headers.remove(name),
            };
            Ok(())
        }
        fn body(&mut self, which: Body, size: usize) -> Result<Vec<u8>, HostError> {
            self.fail("body")?;
            let b = if which == Body::Request { &self.request_body } else { &self.response_body };
            Ok(b.get(..size.min(b.len())).unwrap_or_default().to_vec())
        }
        fn replace_body(&mut self, which: Body, _size: usize, data: &[u8]) -> Result<(), HostError> {
            self.fail("replace_body")?;
            match which {
                Body::Request => self.request_body = data.to_vec(),
                Body::Response => self.response_body = data.to_vec(),
            }
            Ok(())
        }
        fn now(&mut self) -> Result<i64, HostError> {
            self.fail("now")?;
            Ok(self.now)
        }
        fn attribute(&mut self, attribute: Attribute<'_>) -> Result<Option<Vec<u8>>, HostError> {
            self.fail("attribute")?;
            Ok(self.attributes.get(&attribute.path().replace('\0', ".")).cloned())
        }
        fn count(&mut self, counter: Counter) {
            self.counted.push(counter);
        }
        fn log(&mut self, level: log::Level, message: &str) {
            self.logged.push((level, message.to_string()));
        }
    }
}
