//! Clients registered by JWK Set (RFC 8705 §2.2 with RFC 7591's `jwks` and
//! `jwks_uri`): a `self_signed_tls_client_auth` client's certificates are the
//! first certificate of each key's `x5c` (RFC 7517 §4.7), so a client rotates
//! its certificate by publishing a new key set.

use crate::cert::{base64_lenient, parse_der, ClientCert};
use serde_json::Value;

/// The certificates of a JWK Set document. Keys without `x5c` are skipped
/// (they cannot authenticate a TLS client); a malformed `x5c` is an error
/// naming the key.
pub fn certificates(doc: &Value) -> Result<Vec<ClientCert>, String> {
    let keys = doc.get("keys").and_then(Value::as_array).ok_or("a JWK Set needs a \"keys\" array")?;
    let mut out = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let Some(x5c) = key.get("x5c") else { continue };
        let first = x5c
            .as_array()
            .and_then(|chain| chain.first())
            .and_then(Value::as_str)
            .ok_or(format!("keys[{i}].x5c must be a non-empty array of base64 certificates"))?;
        // RFC 7517 §4.7: standard base64 of the DER, not base64url.
        let der = base64_lenient(first).ok_or(format!("keys[{i}].x5c[0] is not base64"))?;
        out.push(parse_der(&der).map_err(|e| format!("keys[{i}].x5c[0]: {e}"))?);
    }
    Ok(out)
}

/// Parses a fetched JWK Set.
pub fn parse_document(body: &[u8]) -> Result<Vec<ClientCert>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    certificates(&doc)
}

/// Where a `jwks_uri` is fetched: the `:authority` and `:path` of a GET
/// through the configured Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksUri {
    pub authority: String,
    pub path: String,
}

pub fn parse_uri(uri: &str) -> Result<JwksUri, String> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| format!("{uri:?} must be an https:// (or http://) URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains(['@', ' ', '?', '#']) {
        return Err(format!("{uri:?} has no usable host"));
    }
    let path = path.split('#').next().unwrap_or("/");
    Ok(JwksUri { authority: authority.to_string(), path: path.to_string() })
}

/// How clients' `jwks_uri` documents are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksFetch {
    /// The Envoy cluster that reaches the clients' JWK Set hosts.
    pub cluster: String,
    pub refresh_seconds: u64,
    pub timeout_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde_json::json;

    fn der() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["c".to_string()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_first_x5c_certificate_of_each_key_is_registered() {
        let (a, b) = (der(), der());
        let doc = json!({"keys": [
            {"kty": "EC", "x5c": [STANDARD.encode(&a), STANDARD.encode(&b)]},
            {"kty": "RSA", "n": "x", "e": "AQAB"},
            {"kty": "EC", "x5c": [STANDARD.encode(&b)]},
        ]});
        let certs = certificates(&doc).unwrap();
        let thumbs: Vec<_> = certs.iter().map(|c| c.thumbprint).collect();
        assert_eq!(thumbs, vec![crate::cert::Thumbprint::of_der(&a), crate::cert::Thumbprint::of_der(&b)]);
    }

    #[test]
    fn a_malformed_key_set_is_refused_naming_the_key() {
        assert!(certificates(&json!({"nokeys": []})).is_err());
        assert!(certificates(&json!({"keys": [{"x5c": []}]})).unwrap_err().contains("keys[0].x5c"));
        assert!(certificates(&json!({"keys": [{"x5c": ["!!"]}]})).unwrap_err().contains("keys[0].x5c[0]"));
        assert!(certificates(&json!({"keys": [{}, {"x5c": ["AAAA"]}]})).unwrap_err().contains("keys[1].x5c[0]"));
        assert!(parse_document(b"<html>").is_err());
    }

    #[test]
    fn a_jwks_uri_names_the_authority_and_path_to_fetch() {
        assert_eq!(
            parse_uri("https://client.example:8443/.well-known/jwks.json?v=1").unwrap(),
            JwksUri { authority: "client.example:8443".into(), path: "/.well-known/jwks.json?v=1".into() }
        );
        assert_eq!(parse_uri("http://c.example").unwrap().path, "/");
        assert!(parse_uri("ftp://c.example/x").is_err());
        assert!(parse_uri("https:///x").is_err());
        assert!(parse_uri("https://user@c.example/x").is_err());
    }
}
