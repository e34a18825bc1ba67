//! Plugin configuration: JSON as Envoy and Istio hand it over, validated and
//! compiled once. Every error names the field it is about.

pub use crate::binding::BindingPolicy;
use crate::cert_source::Sources;
pub use crate::client_auth::{Client, ClientAuthMethod, Pin, Secret, TlsClientAuthRule, UpstreamCredentials};
pub use crate::discovery::Discovery;
use crate::header;
pub use crate::jwks::JwksFetch;
use crate::path::Endpoints;
pub use crate::resource::JwtClaims;
use crate::resource::{Enforcement, MissingTokenPolicy, OtherSchemes, ProtectedRoute, UnboundPolicy};
pub use crate::store::{EtcdConfig, StoreConfig};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

mod clients;
mod sources;
mod store;

use clients::client_from_value;
pub use clients::parse_client;
use sources::compile_sources;
use store::compile_store;

pub const DEFAULT_TOKEN_PATH: &str = "/oauth2/token";
pub const DEFAULT_INTROSPECTION_PATH: &str = "/oauth2/introspect";
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Removed from every request even when no route names it: the demo's and the docs' thumbprint header.
pub const DEFAULT_THUMBPRINT_HEADER: &str = "x-certbound-x5t";
const MAX_MAX_BODY_BYTES: usize = 1024 * 1024;

/// A config error: the field (a JSON path such as `clients[0].thumbprints[1]`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config field {}: {}", self.field, self.message)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    token_path: Option<String>,
    introspection_path: Option<String>,
    max_body_bytes: Option<usize>,
    binding: Option<Value>,
    #[serde(default)]
    clients: Vec<Value>,
    #[serde(default)]
    protected_routes: Vec<Value>,
    jwt_claims: Option<Value>,
    certificate_sources: Option<Value>,
    store: Option<Value>,
    discovery: Option<Value>,
    route_metadata: Option<bool>,
    thumbprint_headers: Option<Vec<String>>,
    introspection: Option<Value>,
    jwks_fetch: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntrospection {
    wso2_x5t_sha256: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    paths: Option<Vec<String>>,
    mtls_host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path_prefix: String,
    unbound_tokens: Option<String>,
    missing_token: Option<String>,
    other_schemes: Option<String>,
    thumbprint_header: Option<String>,
    enforcement: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwtClaims {
    metadata_namespace: Option<String>,
    payload_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    default_ttl_seconds: Option<u64>,
    max_ttl_seconds: Option<u64>,
    refresh_token_ttl_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwksFetch {
    cluster: String,
    refresh_seconds: Option<u64>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub token_path: String,
    pub introspection_path: String,
    pub max_body_bytes: usize,
    pub binding: BindingPolicy,
    pub clients: HashMap<String, Client>,
    /// Shared by `Rc` with the streams they apply to (no copy per request).
    pub protected_routes: Vec<Rc<ProtectedRoute>>,
    /// Where Envoy's `jwt_authn` leaves verified JWT payloads; `None`: JWT claims are not read.
    pub jwt_claims: Option<JwtClaims>,
    pub sources: Sources,
    pub store: StoreConfig,
    /// Entries of each VM's cache of store hits (`store.vm_cache_entries`); 0: no cache.
    pub vm_cache_entries: usize,
    pub discovery: Discovery,
    /// Also protect routes whose Envoy route config carries
    /// `metadata.filter_metadata.certbound.unbound_tokens`.
    pub route_metadata: bool,
    /// The paths certbound acts on, matched by one path model.
    pub endpoints: Endpoints,
    /// Headers that only certbound may write (the verified thumbprint):
    /// removed from every request, whatever its route.
    pub thumbprint_headers: Vec<String>,
    /// Also write the thumbprint under WSO2 IS's `cnf.x5t#SHA256`.
    pub introspection_wso2_member: bool,
    /// How `jwks_uri` documents are fetched; required when a client has one.
    pub jwks_fetch: Option<JwksFetch>,
}

/// Where registered clients live in etcd: `<key_prefix>certbound/clients/<client_id>`,
/// each value a client object as in `clients[]`.
pub use crate::keys::CLIENTS_PREFIX as ETCD_CLIENTS;

pub const DEFAULT_STORE_CAPACITY: u64 = 100_000;

impl Config {
    pub fn client(&self, client_id: &str) -> Option<&Client> {
        self.clients.get(client_id)
    }
}

fn from_value<T: serde::de::DeserializeOwned>(v: Value, field: &str) -> Result<T, ConfigError> {
    serde_json::from_value(v).map_err(|e| ConfigError::new(field, e.to_string()))
}

fn path_field(v: Option<String>, default: &str, field: &str) -> Result<String, ConfigError> {
    let p = v.unwrap_or_else(|| default.to_string());
    if !p.starts_with('/') || p.contains('?') || p.contains('#') {
        return Err(ConfigError::new(field, format!("{p:?} must be a path starting with '/', without query")));
    }
    Ok(p)
}

/// Parses and validates the plugin configuration.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ConfigError::new("(root)", "configuration is empty; expected a JSON object"));
    }
    let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| ConfigError::new("(root)", e.to_string()))?;

    let token_path = path_field(raw.token_path, DEFAULT_TOKEN_PATH, "token_path")?;
    let introspection_path = path_field(raw.introspection_path, DEFAULT_INTROSPECTION_PATH, "introspection_path")?;
    if token_path == introspection_path {
        return Err(ConfigError::new("introspection_path", "must differ from token_path"));
    }

    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 || max_body_bytes > MAX_MAX_BODY_BYTES {
        return Err(ConfigError::new("max_body_bytes", format!("must be between 1 and {MAX_MAX_BODY_BYTES}")));
    }

    let binding = match raw.binding {
        None => BindingPolicy::default(),
        Some(v) => compile_binding(from_value(v, "binding")?)?,
    };

    let mut clients = HashMap::new();
    for (i, v) in raw.clients.into_iter().enumerate() {
        let field = format!("clients[{i}]");
        let client = client_from_value(v, &field)?;
        if clients.contains_key(&client.client_id) {
            return Err(ConfigError::new(
                format!("{field}.client_id"),
                format!("client {:?} is registered more than once", client.client_id),
            ));
        }
        clients.insert(client.client_id.clone(), client);
    }

    let mut protected_routes: Vec<Rc<ProtectedRoute>> = Vec::new();
    for (i, v) in raw.protected_routes.into_iter().enumerate() {
        let field = format!("protected_routes[{i}]");
        let route = compile_route(from_value(v, &field)?, &field)?;
        for endpoint in [&token_path, &introspection_path] {
            if endpoint.to_ascii_lowercase().starts_with(&route.path_prefix.to_ascii_lowercase()) {
                return Err(ConfigError::new(
                    format!("{field}.path_prefix"),
                    format!("{:?} would cover the AS endpoint {endpoint}", route.path_prefix),
                ));
            }
        }
        if protected_routes.iter().any(|r| r.path_prefix == route.path_prefix) {
            return Err(ConfigError::new(format!("{field}.path_prefix"), "the same prefix is listed twice"));
        }
        protected_routes.push(Rc::new(route));
    }

    let jwt_claims = match raw.jwt_claims {
        None => None,
        Some(v) => {
            let r: RawJwtClaims = from_value(v, "jwt_claims")?;
            let c = JwtClaims {
                metadata_namespace: r.metadata_namespace.unwrap_or_else(|| "envoy.filters.http.jwt_authn".into()),
                payload_key: r.payload_key.unwrap_or_else(|| "jwt_payload".into()),
            };
            if c.metadata_namespace.is_empty() || c.payload_key.is_empty() {
                return Err(ConfigError::new("jwt_claims", "metadata_namespace and payload_key must not be empty"));
            }
            Some(c)
        }
    };

    let sources = match raw.certificate_sources {
        None => Sources::default(),
        Some(v) => compile_sources(from_value(v, "certificate_sources")?)?,
    };

    let (store, vm_cache_entries) = match raw.store {
        None => (StoreConfig::SharedData { capacity: DEFAULT_STORE_CAPACITY }, crate::vm_cache::DEFAULT_ENTRIES),
        Some(v) => compile_store(from_value(v, "store")?)?,
    };

    let discovery = match raw.discovery {
        None => Discovery::default(),
        Some(v) => {
            let d: RawDiscovery = from_value(v, "discovery")?;
            let paths = d.paths.unwrap_or_else(|| Discovery::default().paths);
            for (i, p) in paths.iter().enumerate() {
                if !p.starts_with('/') {
                    return Err(ConfigError::new(format!("discovery.paths[{i}]"), "must start with '/'"));
                }
            }
            if let Some(h) = &d.mtls_host {
                if h.is_empty() || h.contains('/') || h.contains(' ') {
                    return Err(ConfigError::new("discovery.mtls_host", format!("{h:?} must be a host[:port]")));
                }
            }
            Discovery { paths, mtls_host: d.mtls_host }
        }
    };

    let mut thumbprint_headers = vec![DEFAULT_THUMBPRINT_HEADER.to_string()];
    for (i, h) in raw.thumbprint_headers.unwrap_or_default().into_iter().enumerate() {
        if !header::is_configurable(&h) {
            return Err(ConfigError::new(format!("thumbprint_headers[{i}]"), header::refusal(&h)));
        }
        thumbprint_headers.push(h);
    }
    thumbprint_headers.extend(protected_routes.iter().filter_map(|r| r.thumbprint_header.clone()));
    thumbprint_headers.sort();
    thumbprint_headers.dedup();
    let endpoints = Endpoints {
        token: token_path.clone(),
        introspection: introspection_path.clone(),
        discovery: discovery.paths.clone(),
        protected: protected_routes.clone(),
    };

    let jwks_fetch = match raw.jwks_fetch {
        None => None,
        Some(v) => {
            let j: RawJwksFetch = from_value(v, "jwks_fetch")?;
            if j.cluster.is_empty() {
                return Err(ConfigError::new("jwks_fetch.cluster", "must not be empty"));
            }
            let refresh_seconds = j.refresh_seconds.unwrap_or(300);
            if refresh_seconds == 0 {
                return Err(ConfigError::new("jwks_fetch.refresh_seconds", "must be greater than 0"));
            }
            let timeout_ms = j.timeout_ms.unwrap_or(2000);
            if timeout_ms == 0 {
                return Err(ConfigError::new("jwks_fetch.timeout_ms", "must be greater than 0"));
            }
            Some(JwksFetch { cluster: j.cluster, refresh_seconds, timeout_ms })
        }
    };
    if jwks_fetch.is_none() {
        if let Some(c) = clients.values().find(|c| c.jwks_uri.is_some()) {
            return Err(ConfigError::new(
                "jwks_fetch",
                format!(
                    "client {:?} has a jwks_uri: set jwks_fetch.cluster, the Envoy cluster to fetch it through",
                    c.client_id
                ),
            ));
        }
    }

    let introspection_wso2_member = match raw.introspection {
        None => false,
        Some(v) => from_value::<RawIntrospection>(v, "introspection")?.wso2_x5t_sha256.unwrap_or(false),
    };

    Ok(Config {
        endpoints,
        thumbprint_headers,
        introspection_wso2_member,
        jwks_fetch,
        token_path,
        introspection_path,
        max_body_bytes,
        binding,
        clients,
        protected_routes,
        jwt_claims,
        sources,
        store,
        vm_cache_entries,
        discovery,
        route_metadata: raw.route_metadata.unwrap_or(false),
    })
}

/// A setting with two spellings: absent or the first gives the first value, the second the second;
/// anything else is refused, naming the field.
fn two_way<T>(
    value: Option<&str>,
    field: impl FnOnce() -> String,
    (default, first): (&str, T),
    (other, second): (&str, T),
) -> Result<T, ConfigError> {
    match value {
        None => Ok(first),
        Some(v) if v == default => Ok(first),
        Some(v) if v == other => Ok(second),
        Some(o) => Err(ConfigError::new(field(), format!("{o:?}: expected \"{default}\" or \"{other}\""))),
    }
}

fn compile_route(raw: RawRoute, field: &str) -> Result<ProtectedRoute, ConfigError> {
    if !raw.path_prefix.starts_with('/') {
        return Err(ConfigError::new(format!("{field}.path_prefix"), "must start with '/'"));
    }
    let unbound_tokens = two_way(
        raw.unbound_tokens.as_deref(),
        || format!("{field}.unbound_tokens"),
        ("require_binding", UnboundPolicy::RequireBinding),
        ("allow", UnboundPolicy::Allow),
    )?;
    let missing_token = two_way(
        raw.missing_token.as_deref(),
        || format!("{field}.missing_token"),
        ("reject", MissingTokenPolicy::Reject),
        ("pass", MissingTokenPolicy::Pass),
    )?;
    let other_schemes = two_way(
        raw.other_schemes.as_deref(),
        || format!("{field}.other_schemes"),
        ("reject", OtherSchemes::Reject),
        ("pass", OtherSchemes::Pass),
    )?;
    let enforcement = two_way(
        raw.enforcement.as_deref(),
        || format!("{field}.enforcement"),
        ("enforce", Enforcement::Enforce),
        ("report", Enforcement::Report),
    )?;
    if let Some(h) = &raw.thumbprint_header {
        if !header::is_configurable(h) {
            return Err(ConfigError::new(format!("{field}.thumbprint_header"), header::refusal(h)));
        }
    }
    Ok(ProtectedRoute {
        path_prefix: raw.path_prefix,
        unbound_tokens,
        missing_token,
        other_schemes,
        thumbprint_header: raw.thumbprint_header,
        enforcement,
    })
}

fn compile_binding(raw: RawBinding) -> Result<BindingPolicy, ConfigError> {
    let d = BindingPolicy::default();
    let p = BindingPolicy {
        default_ttl_seconds: raw.default_ttl_seconds.unwrap_or(d.default_ttl_seconds),
        max_ttl_seconds: raw.max_ttl_seconds.unwrap_or(d.max_ttl_seconds),
        refresh_token_ttl_seconds: raw.refresh_token_ttl_seconds.unwrap_or(d.refresh_token_ttl_seconds),
    };
    for (name, v) in [
        ("binding.default_ttl_seconds", p.default_ttl_seconds),
        ("binding.max_ttl_seconds", p.max_ttl_seconds),
        ("binding.refresh_token_ttl_seconds", p.refresh_token_ttl_seconds),
    ] {
        if v == 0 {
            return Err(ConfigError::new(name, "must be greater than 0"));
        }
    }
    for (name, v) in [
        ("binding.default_ttl_seconds", p.default_ttl_seconds),
        ("binding.refresh_token_ttl_seconds", p.refresh_token_ttl_seconds),
    ] {
        if v > p.max_ttl_seconds {
            return Err(ConfigError::new(
                name,
                "must not exceed binding.max_ttl_seconds: every token of that lifetime would be refused",
            ));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::Thumbprint;
    use crate::cert_header::{ForwardFormat, HeaderFormat};
    use crate::cert_source::Prefer;
    use serde_json::json;

    fn pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["c".to_string()]).unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    fn thumb() -> String {
        Thumbprint::of_der(b"x").x5t_s256()
    }

    fn err(v: Value) -> ConfigError {
        parse(v.to_string().as_bytes()).unwrap_err()
    }

    #[test]
    fn a_minimal_config_gets_the_wso2_paths_and_defaults() {
        let c = parse(br#"{"clients":[]}"#).unwrap();
        assert_eq!(c.token_path, "/oauth2/token");
        assert_eq!(c.introspection_path, "/oauth2/introspect");
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.binding, BindingPolicy::default());
    }

    #[test]
    fn a_full_client_compiles_with_certificates_and_thumbprints() {
        let c = parse(
            json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
                "certificates":[pem()],"thumbprints":[thumb()],"upstream":{"client_secret":"s"}}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let client = c.client("a").unwrap();
        let ClientAuthMethod::SelfSignedTlsClientAuth { pins } = &client.method else { panic!() };
        assert_eq!(pins.len(), 2);
        assert!(pins[0].validity.is_some());
        assert!(pins[1].validity.is_none());
        assert_eq!(client.upstream.as_ref().unwrap().client_secret.expose(), "s");
    }

    #[test]
    fn empty_config_is_refused() {
        assert_eq!(parse(b"").unwrap_err().field, "(root)");
    }

    #[test]
    fn config_that_is_not_json_is_refused() {
        assert_eq!(parse(b"{clients").unwrap_err().field, "(root)");
    }

    #[test]
    fn unknown_top_level_field_is_refused_by_name() {
        let e = err(json!({"clients":[],"token_pth":"/x"}));
        assert_eq!(e.field, "(root)");
        assert!(e.message.contains("token_pth"), "{e}");
    }

    #[test]
    fn a_route_is_enforced_by_default_and_report_only_when_asked() {
        let c = parse(br#"{"protected_routes":[{"path_prefix":"/a/"},{"path_prefix":"/b/","enforcement":"report"}]}"#)
            .unwrap();
        let modes: Vec<_> = c.endpoints.protected.iter().map(|r| r.enforcement).collect();
        assert_eq!(modes, vec![Enforcement::Enforce, Enforcement::Report]);
        let e = err(json!({"protected_routes":[{"path_prefix":"/a/","enforcement":"shadow"}]}));
        assert_eq!(e.field, "protected_routes[0].enforcement");
    }

    #[test]
    fn unknown_client_field_is_refused_by_name() {
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
            "thumbprints":[thumb()],"secret":"x"}]}));
        assert_eq!(e.field, "clients[0]");
        assert!(e.message.contains("secret"), "{e}");
    }

    #[test]
    fn unknown_upstream_field_is_refused_by_name() {
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
            "thumbprints":[thumb()],"upstream":{"client_secret":"s","password":"p"}}]}));
        assert_eq!(e.field, "clients[0].upstream");
        assert!(e.message.contains("password"), "{e}");
    }

    #[test]
    fn bad_pem_is_refused_naming_the_certificate() {
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
            "certificates":[pem(), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]}]}));
        assert_eq!(e.field, "clients[0].certificates[1]");
    }

    #[test]
    fn bad_thumbprint_is_refused_naming_it() {
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
            "thumbprints":[thumb(), "not-a-thumbprint"]}]}));
        assert_eq!(e.field, "clients[0].thumbprints[1]");
    }

    #[test]
    fn duplicate_client_is_refused() {
        let c =
            json!({"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth","thumbprints":[thumb()]});
        let e = err(json!({"clients":[c.clone(), c]}));
        assert_eq!(e.field, "clients[1].client_id");
        assert!(e.message.contains("more than once"));
    }

    #[test]
    fn client_without_any_registered_certificate_is_refused() {
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth"}]}));
        assert_eq!(e.field, "clients[0].certificates");
    }

    #[test]
    fn non_certificate_auth_method_is_refused() {
        let e = err(
            json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"client_secret_basic","thumbprints":[thumb()]}]}),
        );
        assert_eq!(e.field, "clients[0].token_endpoint_auth_method");
    }

    #[test]
    fn public_client_defaults_to_unbound_tokens_without_a_certificate() {
        let c = parse(br#"{"clients":[{"client_id":"spa","token_endpoint_auth_method":"none"}]}"#).unwrap();
        assert_eq!(c.client("spa").unwrap().method, ClientAuthMethod::None { require_certificate: false });
        let c = parse(
            br#"{"clients":[{"client_id":"spa","token_endpoint_auth_method":"none","tls_client_certificate_bound_access_tokens":true}]}"#,
        )
        .unwrap();
        assert_eq!(c.client("spa").unwrap().method, ClientAuthMethod::None { require_certificate: true });
    }

    #[test]
    fn public_client_with_pins_or_upstream_credentials_is_refused() {
        let e =
            err(json!({"clients":[{"client_id":"spa","token_endpoint_auth_method":"none","thumbprints":[thumb()]}]}));
        assert_eq!(e.field, "clients[0].certificates");
        let e = err(
            json!({"clients":[{"client_id":"spa","token_endpoint_auth_method":"none","upstream":{"client_secret":"s"}}]}),
        );
        assert_eq!(e.field, "clients[0].upstream");
    }

    #[test]
    fn certificate_client_cannot_opt_out_of_bound_tokens() {
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
            "thumbprints":[thumb()],"tls_client_certificate_bound_access_tokens":false}]}));
        assert_eq!(e.field, "clients[0].tls_client_certificate_bound_access_tokens");
    }

    #[test]
    fn tls_client_auth_with_pinned_certificates_is_refused() {
        let e = err(
            json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"tls_client_auth","thumbprints":[thumb()]}]}),
        );
        assert_eq!(e.field, "clients[0].certificates");
    }

    #[test]
    fn tls_client_auth_needs_exactly_one_field() {
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"tls_client_auth"}]}));
        assert_eq!(e.field, "clients[0].token_endpoint_auth_method");
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"tls_client_auth",
            "tls_client_auth_san_dns":"a.example","tls_client_auth_san_uri":"spiffe://x"}]}));
        assert_eq!(e.field, "clients[0].token_endpoint_auth_method");
        let c = parse(br#"{"clients":[{"client_id":"a","token_endpoint_auth_method":"tls_client_auth","tls_client_auth_subject_dn":"CN=a, O=b"}]}"#).unwrap();
        assert_eq!(
            c.client("a").unwrap().method,
            ClientAuthMethod::TlsClientAuth {
                rule: TlsClientAuthRule::SubjectDn(crate::dn::parse("CN=a,O=b").unwrap())
            }
        );
    }

    #[test]
    fn tls_client_auth_fields_are_validated() {
        let e = err(
            json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_ip":"10.0.0.300"}]}),
        );
        assert_eq!(e.field, "clients[0].tls_client_auth_san_ip");
        let e = err(
            json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"tls_client_auth","tls_client_auth_subject_dn":"CN"}]}),
        );
        assert_eq!(e.field, "clients[0].tls_client_auth_subject_dn");
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
            "thumbprints":[thumb()],"tls_client_auth_san_dns":"x"}]}));
        assert_eq!(e.field, "clients[0].token_endpoint_auth_method");
    }

    #[test]
    fn certificate_sources_compile() {
        let c = parse(
            br#"{"certificate_sources":{"headers":[{"name":"x-wso2-mtls-cert","format":"pem","trust":{"source_cidrs":["10.0.0.0/8"]},"chain_verified":true}],
                "prefer":"header","forward":{"name":"x-wso2-mtls-cert","format":"pem"}}}"#,
        )
        .unwrap();
        assert_eq!(c.sources.headers[0].format, HeaderFormat::Pem);
        assert!(c.sources.headers[0].chain_verified);
        assert_eq!(c.sources.prefer, Prefer::Header);
        assert_eq!(c.sources.forward.as_ref().unwrap().format, ForwardFormat::PemOneLine);
        assert!(c.sources.connection);
    }

    #[test]
    fn certificate_source_errors_name_the_field() {
        let f = |v: Value| err(json!({ "certificate_sources": v })).field;
        assert_eq!(
            f(json!({"headers":[{"name":"X-Cert","trust":{"always":true}}]})),
            "certificate_sources.headers[0].name"
        );
        assert_eq!(
            f(json!({"headers":[{"name":"x-cert","format":"der","trust":{"always":true}}]})),
            "certificate_sources.headers[0].format"
        );
        assert_eq!(f(json!({"headers":[{"name":"x-cert","trust":{}}]})), "certificate_sources.headers[0].trust");
        assert_eq!(
            f(json!({"headers":[{"name":"x-cert","trust":{"source_cidrs":["10.0.0.0/40"]}}]})),
            "certificate_sources.headers[0].trust.source_cidrs[0]"
        );
        assert_eq!(
            f(json!({"headers":[{"name":"x-cert","xfcc_element":"middle","trust":{"always":true}}]})),
            "certificate_sources.headers[0].xfcc_element"
        );
        assert_eq!(f(json!({"prefer":"newest"})), "certificate_sources.prefer");
        assert_eq!(f(json!({"forward":{"name":"x-cert","format":"json"}})), "certificate_sources.forward.format");
        assert_eq!(f(json!({"connection":false})), "certificate_sources");
        assert_eq!(
            f(json!({"headers":[{"name":"x-cert","trust":{"always":true}},{"name":"x-cert","trust":{"always":true}}]})),
            "certificate_sources.headers[1].name"
        );
    }

    #[test]
    fn trust_by_the_peer_certificate_needs_a_listener_that_verifies_chains() {
        for trust in [json!({"peer_subjects":["CN=edge,O=x"]}), json!({"peer_dns_sans":["edge.example"]})] {
            let e = err(json!({"certificate_sources":{"headers":[{"name":"x-forwarded-client-cert","trust":trust}]}}));
            let which = if trust.get("peer_subjects").is_some() { "peer_subjects" } else { "peer_dns_sans" };
            assert_eq!(e.field, format!("certificate_sources.headers[0].trust.{which}"));
            assert!(e.message.contains("connection_chain_verified"), "{}", e.message);
        }
        let ok = json!({"certificate_sources":{"connection_chain_verified":true,
            "headers":[{"name":"x-forwarded-client-cert","trust":{"peer_subjects":["CN=edge,O=x"]}}]}});
        assert!(parse(ok.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn thumbprint_headers_are_removed_on_every_route_and_include_the_routes_own() {
        let c = parse(
            br#"{"thumbprint_headers":["x-client-x5t"],"protected_routes":[{"path_prefix":"/api/","thumbprint_header":"x-api-x5t"}]}"#,
        )
        .unwrap();
        assert_eq!(c.thumbprint_headers, vec!["x-api-x5t", "x-certbound-x5t", "x-client-x5t"]);
        assert_eq!(err(json!({"thumbprint_headers":["Host"]})).field, "thumbprint_headers[0]");
        assert_eq!(err(json!({"thumbprint_headers":["authorization"]})).field, "thumbprint_headers[0]");
    }

    #[test]
    fn every_configured_header_name_follows_one_rule() {
        let c = |v: Value| err(json!({ "certificate_sources": v })).field;
        assert_eq!(c(json!({"forward":{"name":"host","format":"pem"}})), "certificate_sources.forward.name");
        assert_eq!(
            c(json!({"headers":[{"name":"content-length","trust":{"always":true}}]})),
            "certificate_sources.headers[0].name"
        );
        assert_eq!(err(json!({"thumbprint_headers":["cookie"]})).field, "thumbprint_headers[0]");
        let e = err(json!({"protected_routes":[{"path_prefix":"/a/","thumbprint_header":"te"}]}));
        assert_eq!(e.field, "protected_routes[0].thumbprint_header");
    }

    #[test]
    fn wso2s_introspection_member_is_off_by_default() {
        assert!(!parse(b"{}").unwrap().introspection_wso2_member);
        assert!(parse(br#"{"introspection":{"wso2_x5t_sha256":true}}"#).unwrap().introspection_wso2_member);
        assert_eq!(err(json!({"introspection":{"wso2":true}})).field, "introspection");
    }

    fn x5c() -> String {
        use base64::Engine;
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["c".to_string()]).unwrap();
        base64::engine::general_purpose::STANDARD.encode(params.self_signed(&key).unwrap().der())
    }

    #[test]
    fn a_client_registered_by_jwks_pins_its_x5c_certificates() {
        let c = parse(
            json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
                "jwks":{"keys":[{"kty":"EC","x5c":[x5c()]},{"kty":"EC","x5c":[x5c()]}]}}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let ClientAuthMethod::SelfSignedTlsClientAuth { pins } = &c.client("a").unwrap().method else { panic!() };
        assert_eq!(pins.len(), 2);
        assert!(pins.iter().all(|p| p.validity.is_some()));
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
            "jwks":{"keys":[{"x5c":["!"]}]}}]}));
        assert_eq!(e.field, "clients[0].jwks");
    }

    #[test]
    fn a_client_registered_by_jwks_uri_needs_a_cluster_to_fetch_it() {
        let client = json!({"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
            "jwks_uri":"https://a.example/jwks.json"});
        assert_eq!(err(json!({"clients":[client.clone()]})).field, "jwks_fetch");
        let c = parse(json!({"clients":[client],"jwks_fetch":{"cluster":"jwks"}}).to_string().as_bytes()).unwrap();
        let uri = c.client("a").unwrap().jwks_uri.clone().unwrap();
        assert_eq!((uri.authority.as_str(), uri.path.as_str()), ("a.example", "/jwks.json"));
        assert_eq!(c.jwks_fetch.unwrap().refresh_seconds, 300);
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
            "jwks_uri":"a.example/jwks"}],"jwks_fetch":{"cluster":"jwks"}}));
        assert_eq!(e.field, "clients[0].jwks_uri");
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"tls_client_auth",
            "tls_client_auth_san_dns":"a.example","jwks_uri":"https://a.example/j"}],"jwks_fetch":{"cluster":"jwks"}}));
        assert_eq!(e.field, "clients[0].jwks_uri");
    }

    #[test]
    fn the_as_registration_can_be_pasted_its_other_metadata_ignored() {
        let c = parse(
            json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
                "thumbprints":[thumb()],"grant_types":["client_credentials"],"redirect_uris":[],
                "client_name":"A","tls_client_certificate_bound_access_tokens":true}]})
            .to_string()
            .as_bytes(),
        );
        assert!(c.is_ok(), "{c:?}");
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
            "thumbprints":[thumb()],"client_secret":"s"}]}));
        assert_eq!(e.field, "clients[0].client_secret");
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
            "thumbprints":[thumb()],"grant_typo":["x"]}]}));
        assert_eq!(e.field, "clients[0]");
    }

    #[test]
    fn other_schemes_policy_defaults_to_reject() {
        let c = parse(br#"{"protected_routes":[{"path_prefix":"/a/"},{"path_prefix":"/b/","other_schemes":"pass"}]}"#)
            .unwrap();
        assert_eq!(c.protected_routes[0].other_schemes, OtherSchemes::Reject);
        assert_eq!(c.protected_routes[1].other_schemes, OtherSchemes::Pass);
        let e = err(json!({"protected_routes":[{"path_prefix":"/a/","other_schemes":"maybe"}]}));
        assert_eq!(e.field, "protected_routes[0].other_schemes");
    }

    #[test]
    fn a_binding_lifetime_above_the_maximum_is_refused() {
        let e =
            err(json!({"binding":{"max_ttl_seconds":600,"default_ttl_seconds":300,"refresh_token_ttl_seconds":1200}}));
        assert_eq!(e.field, "binding.refresh_token_ttl_seconds");
        let e = err(json!({"binding":{"max_ttl_seconds":600}}));
        assert_eq!(e.field, "binding.default_ttl_seconds");
    }

    #[test]
    fn a_protected_prefix_covering_an_endpoint_in_another_case_is_refused() {
        let e = err(json!({"protected_routes":[{"path_prefix":"/OAuth2/"}]}));
        assert_eq!(e.field, "protected_routes[0].path_prefix");
    }

    #[test]
    fn missing_client_id_is_refused() {
        let e = err(
            json!({"clients":[{"token_endpoint_auth_method":"self_signed_tls_client_auth","thumbprints":[thumb()]}]}),
        );
        assert_eq!(e.field, "clients[0]");
        assert!(e.message.contains("client_id"));
    }

    #[test]
    fn empty_client_id_is_refused() {
        let e = err(
            json!({"clients":[{"client_id":"","token_endpoint_auth_method":"self_signed_tls_client_auth","thumbprints":[thumb()]}]}),
        );
        assert_eq!(e.field, "clients[0].client_id");
    }

    #[test]
    fn empty_upstream_secret_is_refused() {
        let e = err(json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
            "thumbprints":[thumb()],"upstream":{"client_secret":""}}]}));
        assert_eq!(e.field, "clients[0].upstream.client_secret");
    }

    #[test]
    fn path_must_be_absolute_without_query() {
        assert_eq!(err(json!({"token_path":"oauth2/token"})).field, "token_path");
        assert_eq!(err(json!({"introspection_path":"/i?x=1"})).field, "introspection_path");
    }

    #[test]
    fn token_and_introspection_paths_must_differ() {
        assert_eq!(err(json!({"token_path":"/t","introspection_path":"/t"})).field, "introspection_path");
    }

    #[test]
    fn body_limit_must_be_bounded() {
        assert_eq!(err(json!({"max_body_bytes":0})).field, "max_body_bytes");
        assert_eq!(err(json!({"max_body_bytes":10_000_000})).field, "max_body_bytes");
    }

    #[test]
    fn zero_binding_lifetime_is_refused() {
        assert_eq!(err(json!({"binding":{"max_ttl_seconds":0}})).field, "binding.max_ttl_seconds");
        assert_eq!(err(json!({"binding":{"ttl":5}})).field, "binding");
    }

    #[test]
    fn secret_is_hidden_from_debug() {
        let c = parse(
            json!({"clients":[{"client_id":"a","token_endpoint_auth_method":"self_signed_tls_client_auth",
                "thumbprints":[thumb()],"upstream":{"client_secret":"hunter2"}}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn protected_routes_default_to_the_strict_policies() {
        let c = parse(br#"{"protected_routes":[{"path_prefix":"/api/"}],"jwt_claims":{}}"#).unwrap();
        let r = &c.protected_routes[0];
        assert_eq!((r.unbound_tokens, r.missing_token), (UnboundPolicy::RequireBinding, MissingTokenPolicy::Reject));
        let j = c.jwt_claims.unwrap();
        assert_eq!(
            (j.metadata_namespace.as_str(), j.payload_key.as_str()),
            ("envoy.filters.http.jwt_authn", "jwt_payload")
        );
    }

    #[test]
    fn unknown_route_policy_is_refused_by_field() {
        assert_eq!(
            err(json!({"protected_routes":[{"path_prefix":"/api/","unbound_tokens":"maybe"}]})).field,
            "protected_routes[0].unbound_tokens"
        );
        assert_eq!(
            err(json!({"protected_routes":[{"path_prefix":"/api/","missing_token":"drop"}]})).field,
            "protected_routes[0].missing_token"
        );
        assert_eq!(
            err(json!({"protected_routes":[{"path_prefix":"/api/","prefix":"/x"}]})).field,
            "protected_routes[0]"
        );
    }

    #[test]
    fn protected_route_over_the_token_endpoint_is_refused() {
        assert_eq!(
            err(json!({"protected_routes":[{"path_prefix":"/oauth2/"}]})).field,
            "protected_routes[0].path_prefix"
        );
        assert_eq!(err(json!({"protected_routes":[{"path_prefix":"api"}]})).field, "protected_routes[0].path_prefix");
    }

    #[test]
    fn duplicate_protected_prefix_is_refused() {
        let e = err(json!({"protected_routes":[{"path_prefix":"/api/"},{"path_prefix":"/api/"}]}));
        assert_eq!(e.field, "protected_routes[1].path_prefix");
    }

    #[test]
    fn thumbprint_header_must_be_a_plain_header_name() {
        for bad in ["Authorization", "authorization", "x y", ""] {
            let e = err(json!({"protected_routes":[{"path_prefix":"/api/","thumbprint_header":bad}]}));
            assert_eq!(e.field, "protected_routes[0].thumbprint_header", "{bad}");
        }
    }

    #[test]
    fn store_defaults_to_bounded_shared_data() {
        assert_eq!(parse(b"{}").unwrap().store, StoreConfig::SharedData { capacity: DEFAULT_STORE_CAPACITY });
        assert_eq!(parse(br#"{"store":{"capacity":10}}"#).unwrap().store, StoreConfig::SharedData { capacity: 10 });
        assert_eq!(parse(b"{}").unwrap().vm_cache_entries, 4096);
        assert_eq!(parse(br#"{"store":{"vm_cache_entries":0}}"#).unwrap().vm_cache_entries, 0);
        let etcd = br#"{"store":{"backend":"etcd","vm_cache_entries":10,"etcd":{"cluster":"e"}}}"#;
        assert_eq!(parse(etcd).unwrap().vm_cache_entries, 10);
    }

    #[test]
    fn etcd_store_compiles_with_defaults() {
        let c = parse(br#"{"store":{"backend":"etcd","etcd":{"cluster":"etcd"}}}"#).unwrap();
        let StoreConfig::Etcd(e) = c.store else { panic!() };
        assert_eq!(
            (e.authority.as_str(), e.timeout_ms, e.fail_closed, e.lease_bucket_seconds),
            ("etcd", 1000, true, 60)
        );
    }

    #[test]
    fn a_client_registration_from_etcd_parses_like_a_config_entry() {
        let c = parse_client(
            json!({"client_id":"x","token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_dns":"x.example"})
                .to_string()
                .as_bytes(),
            "etcd:certbound/clients/x",
        )
        .unwrap();
        assert_eq!(c.client_id, "x");
        let e = parse_client(br#"{"client_id":"x"}"#, "etcd:certbound/clients/x").unwrap_err();
        assert_eq!(e.field, "etcd:certbound/clients/x");
    }

    #[test]
    fn discovery_defaults_to_both_metadata_documents() {
        let c = parse(b"{}").unwrap();
        assert_eq!(c.discovery, Discovery::default());
        assert_eq!(err(json!({"discovery":{"mtls_host":"https://x"}})).field, "discovery.mtls_host");
        assert_eq!(err(json!({"discovery":{"paths":["x"]}})).field, "discovery.paths[0]");
    }

    #[test]
    fn store_errors_name_the_field() {
        let f = |v: Value| err(json!({ "store": v })).field;
        assert_eq!(f(json!({"backend":"redis"})), "store.backend");
        assert_eq!(f(json!({"capacity":0})), "store.capacity");
        assert_eq!(f(json!({"vm_cache_entries":-1})), "store");
        assert_eq!(f(json!({"vm_cache_entries":2_000_000})), "store.vm_cache_entries");
        assert_eq!(f(json!({"backend":"etcd"})), "store.etcd");
        assert_eq!(f(json!({"backend":"etcd","etcd":{"cluster":""}})), "store.etcd.cluster");
        assert_eq!(
            f(json!({"backend":"etcd","etcd":{"cluster":"e","on_unavailable":"shrug"}})),
            "store.etcd.on_unavailable"
        );
        assert_eq!(f(json!({"backend":"etcd","etcd":{"cluster":"e","timeout_ms":0}})), "store.etcd.timeout_ms");
        assert_eq!(f(json!({"backend":"etcd","etcd":{"cluster":"e","endpoints":["x"]}})), "store.etcd");
        assert_eq!(f(json!({"etcd":{"cluster":"e"}})), "store.etcd");
    }
}
