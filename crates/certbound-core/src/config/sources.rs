//! `certificate_sources`: where the client certificate comes from, and whom to believe.

use super::{from_value, ConfigError};
use crate::cert_header::{ForwardFormat, HeaderFormat, XfccElement};
use crate::cert_source::{Cidr, Forward, HeaderSource, Prefer, Sources, Trust};
use crate::header;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSources {
    connection: Option<bool>,
    connection_chain_verified: Option<bool>,
    #[serde(default)]
    headers: Vec<Value>,
    prefer: Option<String>,
    max_header_bytes: Option<usize>,
    forward: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaderSource {
    name: String,
    format: Option<String>,
    xfcc_element: Option<String>,
    trust: Value,
    chain_verified: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrust {
    always: Option<bool>,
    #[serde(default)]
    source_cidrs: Vec<String>,
    #[serde(default)]
    peer_subjects: Vec<String>,
    #[serde(default)]
    peer_dns_sans: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForward {
    name: String,
    format: String,
}

pub(super) fn compile_sources(raw: RawSources) -> Result<Sources, ConfigError> {
    let d = Sources::default();
    let mut headers = Vec::new();
    for (i, v) in raw.headers.into_iter().enumerate() {
        let field = format!("certificate_sources.headers[{i}]");
        let h: RawHeaderSource = from_value(v, &field)?;
        if !header::is_configurable(&h.name) {
            return Err(ConfigError::new(format!("{field}.name"), header::refusal(&h.name)));
        }
        let format = match h.format.as_deref() {
            None => HeaderFormat::Auto,
            Some(f) => HeaderFormat::parse(f).ok_or_else(|| {
                ConfigError::new(
                    format!("{field}.format"),
                    format!("{f:?}: expected auto, pem, url_encoded_pem, base64_der, rfc9440, xfcc or traefik"),
                )
            })?,
        };
        let xfcc_element = match h.xfcc_element.as_deref() {
            None | Some("last") => XfccElement::Last,
            Some("first") => XfccElement::First,
            Some(o) => {
                return Err(ConfigError::new(format!("{field}.xfcc_element"), format!("{o:?}: expected last or first")))
            }
        };
        let tf = format!("{field}.trust");
        let t: RawTrust = from_value(h.trust, &tf)?;
        let mut trust = Trust { always: t.always.unwrap_or(false), ..Trust::default() };
        for (j, c) in t.source_cidrs.iter().enumerate() {
            trust.source_cidrs.push(
                Cidr::parse(c).ok_or_else(|| {
                    ConfigError::new(format!("{tf}.source_cidrs[{j}]"), format!("{c:?} is not a CIDR"))
                })?,
            );
        }
        for (j, s) in t.peer_subjects.iter().enumerate() {
            trust.peer_subjects.push(
                crate::dn::parse(s).map_err(|e| ConfigError::new(format!("{tf}.peer_subjects[{j}]"), e.to_string()))?,
            );
        }
        trust.peer_dns_sans = t.peer_dns_sans;
        if trust == Trust::default() {
            return Err(ConfigError::new(
                tf,
                "names no trusted sender: set always, source_cidrs, peer_subjects or peer_dns_sans",
            ));
        }
        if headers.iter().any(|x: &HeaderSource| x.name == h.name) {
            return Err(ConfigError::new(format!("{field}.name"), "the same header is listed twice"));
        }
        headers.push(HeaderSource {
            name: h.name,
            format,
            xfcc_element,
            trust,
            chain_verified: h.chain_verified.unwrap_or(false),
        });
    }
    let prefer = match raw.prefer.as_deref() {
        None | Some("connection") => Prefer::Connection,
        Some("header") => Prefer::Header,
        Some(o) => {
            return Err(ConfigError::new("certificate_sources.prefer", format!("{o:?}: expected connection or header")))
        }
    };
    let max_header_bytes = raw.max_header_bytes.unwrap_or(d.max_header_bytes);
    if max_header_bytes == 0 || max_header_bytes > 64 * 1024 {
        return Err(ConfigError::new("certificate_sources.max_header_bytes", "must be between 1 and 65536"));
    }
    let forward = match raw.forward {
        None => None,
        Some(v) => {
            let f: RawForward = from_value(v, "certificate_sources.forward")?;
            if !header::is_configurable(&f.name) {
                return Err(ConfigError::new("certificate_sources.forward.name", header::refusal(&f.name)));
            }
            let format = ForwardFormat::parse(&f.format).ok_or_else(|| {
                ConfigError::new(
                    "certificate_sources.forward.format",
                    format!("{:?}: expected pem, url_encoded_pem, base64_der or rfc9440", f.format),
                )
            })?;
            Some(Forward { name: f.name, format })
        }
    };
    let connection_chain_verified = raw.connection_chain_verified.unwrap_or(false);
    if !connection_chain_verified {
        // A listener that accepts any certificate (ACCEPT_UNTRUSTED) lets anyone present the proxy's subject or SAN.
        for (i, h) in headers.iter().enumerate() {
            let peer_field = if !h.trust.peer_subjects.is_empty() {
                "peer_subjects"
            } else if !h.trust.peer_dns_sans.is_empty() {
                "peer_dns_sans"
            } else {
                continue;
            };
            return Err(ConfigError::new(
                format!("certificate_sources.headers[{i}].trust.{peer_field}"),
                "trusts the certificate of the connection, but certificate_sources.connection_chain_verified is \
                 false: on a listener that does not verify client chains anyone can present that subject or SAN",
            ));
        }
    }
    let connection = raw.connection.unwrap_or(true);
    if !connection && headers.is_empty() {
        return Err(ConfigError::new("certificate_sources", "no certificate source is enabled"));
    }
    Ok(Sources { connection, connection_chain_verified, headers, prefer, max_header_bytes, forward })
}
