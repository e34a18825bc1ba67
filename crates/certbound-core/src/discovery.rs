//! Response patched: AS metadata (RFC 8414 `/.well-known/oauth-authorization-server`,
//! OpenID `/.well-known/openid-configuration`) advertises what certbound adds
//! (RFC 8705 §3.3, §2.1.1, §2.2.1, §5).

use crate::introspection::{Patch, Unchanged};
use serde_json::{Map, Value};

/// RFC 8705 §5: the endpoints that get an mTLS alias when an mTLS host is configured.
const ALIASED: [&str; 6] = [
    "token_endpoint",
    "introspection_endpoint",
    "revocation_endpoint",
    "userinfo_endpoint",
    "pushed_authorization_request_endpoint",
    "device_authorization_endpoint",
];

const METHODS: [&str; 2] = ["tls_client_auth", "self_signed_tls_client_auth"];

/// `https://as.example/oauth2/token` with host `mtls.example` -> `https://mtls.example/oauth2/token`.
fn with_host(url: &str, host: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let path = rest.find('/').map(|i| rest.get(i..).unwrap_or_default()).unwrap_or("");
    Some(format!("{scheme}://{host}{path}"))
}

/// Adds RFC 8705 metadata to a metadata document; `None` when it is not a JSON object.
pub fn patch_metadata(body: &[u8], mtls_host: Option<&str>) -> Patch {
    let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(body) else {
        return Patch::Unchanged(Unchanged::NotJsonObject);
    };
    if crate::introspection::has_duplicate_keys(body) {
        return Patch::Unchanged(Unchanged::DuplicateKeys);
    }
    m.insert("tls_client_certificate_bound_access_tokens".into(), Value::Bool(true));
    let methods = m
        .entry("token_endpoint_auth_methods_supported")
        .or_insert_with(|| Value::Array(vec![Value::String("client_secret_basic".into())]));
    if let Value::Array(list) = methods {
        for method in METHODS {
            if !list.iter().any(|v| v.as_str() == Some(method)) {
                list.push(Value::String(method.into()));
            }
        }
    }
    if let Some(host) = mtls_host {
        let mut aliases = Map::new();
        for name in ALIASED {
            if let Some(alias) = m.get(name).and_then(Value::as_str).and_then(|u| with_host(u, host)) {
                aliases.insert(name.into(), Value::String(alias));
            }
        }
        if !aliases.is_empty() {
            m.insert("mtls_endpoint_aliases".into(), Value::Object(aliases));
        }
    }
    Patch::Patched(Value::Object(m).to_string().into_bytes())
}

/// AS metadata documents certbound patches (RFC 8414, OpenID Discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub paths: Vec<String>,
    /// Host of the mTLS endpoint aliases (RFC 8705 §5); none: no aliases.
    pub mtls_host: Option<String>,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            paths: vec!["/.well-known/openid-configuration".into(), "/.well-known/oauth-authorization-server".into()],
            mtls_host: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patched(body: &str, host: Option<&str>) -> Value {
        match patch_metadata(body.as_bytes(), host) {
            Patch::Patched(b) => serde_json::from_slice(&b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn metadata_advertises_bound_tokens_and_mtls_client_auth() {
        let v = patched(
            r#"{"issuer":"https://as","token_endpoint":"https://as/t","token_endpoint_auth_methods_supported":["client_secret_basic","tls_client_auth"]}"#,
            None,
        );
        assert_eq!(v["tls_client_certificate_bound_access_tokens"], true);
        assert_eq!(
            v["token_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "tls_client_auth", "self_signed_tls_client_auth"])
        );
        assert!(v.get("mtls_endpoint_aliases").is_none());
        assert_eq!(v["issuer"], "https://as");
    }

    #[test]
    fn aliases_appear_only_when_an_mtls_host_is_configured() {
        let v = patched(
            r#"{"token_endpoint":"https://as.example/oauth2/token","introspection_endpoint":"https://as.example:8443/oauth2/introspect","jwks_uri":"https://as.example/jwks"}"#,
            Some("mtls.example"),
        );
        assert_eq!(
            v["mtls_endpoint_aliases"],
            serde_json::json!({"token_endpoint":"https://mtls.example/oauth2/token","introspection_endpoint":"https://mtls.example/oauth2/introspect"})
        );
    }

    #[test]
    fn non_json_metadata_passes_unchanged() {
        assert_eq!(patch_metadata(b"<html>", None), Patch::Unchanged(Unchanged::NotJsonObject));
        assert_eq!(patch_metadata(b"[]", None), Patch::Unchanged(Unchanged::NotJsonObject));
    }
}
