//! Plugin configuration: JSON as Envoy and Istio hand it over, validated and
//! compiled once. Every error names the field it is about.

use crate::cert::{parse_pem, Thumbprint, Validity};
use crate::cert_header::{ForwardFormat, HeaderFormat, XfccElement};
use crate::cert_source::{Cidr, Forward, HeaderSource, Prefer, Sources, Trust};
use crate::dn::Dn;
use crate::header;
use crate::path::Endpoints;
use crate::resource::{MissingTokenPolicy, OtherSchemes, ProtectedRoute, UnboundPolicy};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

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

/// A secret from the config: never shown by `Debug` or in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
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
struct RawStore {
    backend: Option<String>,
    capacity: Option<u64>,
    etcd: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    cluster: String,
    authority: Option<String>,
    key_prefix: Option<String>,
    timeout_ms: Option<u64>,
    cache_capacity: Option<u64>,
    on_unavailable: Option<String>,
    lease_bucket_seconds: Option<i64>,
    clients_refresh_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSources {
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
struct RawHeaderSource {
    name: String,
    format: Option<String>,
    xfcc_element: Option<String>,
    trust: Value,
    chain_verified: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
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
struct RawForward {
    name: String,
    format: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path_prefix: String,
    unbound_tokens: Option<String>,
    missing_token: Option<String>,
    other_schemes: Option<String>,
    thumbprint_header: Option<String>,
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
struct RawClient {
    client_id: String,
    token_endpoint_auth_method: String,
    #[serde(default)]
    certificates: Vec<String>,
    #[serde(default)]
    thumbprints: Vec<String>,
    tls_client_certificate_bound_access_tokens: Option<bool>,
    tls_client_auth_subject_dn: Option<String>,
    tls_client_auth_san_dns: Option<String>,
    tls_client_auth_san_uri: Option<String>,
    tls_client_auth_san_ip: Option<String>,
    tls_client_auth_san_email: Option<String>,
    upstream: Option<Value>,
    jwks: Option<Value>,
    jwks_uri: Option<String>,
}

/// Client metadata an AS holds (RFC 7591 §2, OpenID Connect Dynamic Client
/// Registration) that certbound has no use for: accepted and ignored, so an
/// operator can paste the registration the AS already has.
const REGISTRATION_METADATA_IGNORED: &[&str] = &[
    "redirect_uris",
    "grant_types",
    "response_types",
    "client_name",
    "client_uri",
    "logo_uri",
    "scope",
    "contacts",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
    "software_statement",
    "application_type",
    "sector_identifier_uri",
    "subject_type",
    "id_token_signed_response_alg",
    "userinfo_signed_response_alg",
    "request_object_signing_alg",
    "token_endpoint_auth_signing_alg",
    "default_max_age",
    "require_auth_time",
    "default_acr_values",
    "initiate_login_uri",
    "request_uris",
    "post_logout_redirect_uris",
    "client_id_issued_at",
    "client_secret_expires_at",
    "introspection_endpoint_auth_method",
    "revocation_endpoint_auth_method",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwksFetch {
    cluster: String,
    refresh_seconds: Option<u64>,
    timeout_ms: Option<u64>,
}

/// How clients' `jwks_uri` documents are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksFetch {
    /// The Envoy cluster that reaches the clients' JWK Set hosts.
    pub cluster: String,
    pub refresh_seconds: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    client_secret: String,
}

/// How long bindings are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingPolicy {
    /// For access tokens whose response has no `expires_in`.
    pub default_ttl_seconds: u64,
    /// Upper bound for every binding.
    pub max_ttl_seconds: u64,
    /// Refresh token responses carry no lifetime (RFC 6749 §5.1).
    pub refresh_token_ttl_seconds: u64,
}

impl Default for BindingPolicy {
    fn default() -> Self {
        BindingPolicy {
            default_ttl_seconds: 3600,
            max_ttl_seconds: 30 * 24 * 3600,
            refresh_token_ttl_seconds: 14 * 24 * 3600,
        }
    }
}

/// One registered certificate: its thumbprint, and its validity when the
/// config gave the whole certificate (a bare thumbprint has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub thumbprint: Thumbprint,
    pub validity: Option<Validity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// RFC 8705 §2.2: the client's self-signed certificate(s), pinned.
    SelfSignedTlsClientAuth { pins: Vec<Pin> },
    /// RFC 8705 §2.1: a certificate from a verified chain, with this subject or SAN.
    TlsClientAuth { rule: TlsClientAuthRule },
    /// A public client (`none`, RFC 8705 §4): no client authentication; its
    /// tokens are bound when it presents a certificate.
    None {
        /// RFC 8705 §3.4 `tls_client_certificate_bound_access_tokens`: when
        /// true, a call without a certificate is refused instead of getting
        /// unbound tokens.
        require_certificate: bool,
    },
}

/// The one certificate field a `tls_client_auth` client is registered by (RFC 8705 §2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsClientAuthRule {
    SubjectDn(Dn),
    SanDns(String),
    SanUri(String),
    /// 4 or 16 bytes.
    SanIp(Vec<u8>),
    SanEmail(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCredentials {
    pub client_secret: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub method: ClientAuthMethod,
    /// What certbound presents to the AS once the certificate has authenticated the client.
    pub upstream: Option<UpstreamCredentials>,
    /// Where the client publishes its JWK Set; its certificates are added to the pins when fetched.
    pub jwks_uri: Option<crate::jwks::JwksUri>,
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

/// Where bindings live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Envoy shared data: one Envoy process, all its workers.
    SharedData { capacity: u64 },
    /// etcd through its v3 JSON gateway, for several Envoy replicas (shared by
    /// `Rc` with the streams waiting on etcd).
    Etcd(Rc<EtcdConfig>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// The Envoy cluster that reaches etcd's client port.
    pub cluster: String,
    pub authority: String,
    /// Prepended to every key certbound writes (keys are `<prefix>certbound/b/<hash>`).
    pub key_prefix: String,
    pub timeout_ms: u64,
    /// Slots of the per-Envoy read cache (shared data); 0: no cache.
    pub cache_capacity: u64,
    /// When etcd cannot answer a read: refuse (`true`) or treat the token as unbound.
    pub fail_closed: bool,
    pub lease_bucket_seconds: i64,
    /// Read registered clients from `<key_prefix>certbound/clients/` this often; 0: never.
    pub clients_refresh_seconds: u64,
}

/// Where registered clients live in etcd: `<key_prefix>certbound/clients/<client_id>`,
/// each value a client object as in `clients[]`.
pub use crate::keys::CLIENTS_PREFIX as ETCD_CLIENTS;

/// Parses one client registration (a `clients[]` entry), as etcd holds them.
pub fn parse_client(json: &[u8], field: &str) -> Result<Client, ConfigError> {
    let v: Value = serde_json::from_slice(json).map_err(|e| ConfigError::new(field, e.to_string()))?;
    client_from_value(v, field)
}

/// A `clients[]` entry: certbound's fields, and the AS's own registration metadata ignored.
fn client_from_value(mut v: Value, field: &str) -> Result<Client, ConfigError> {
    if let Some(obj) = v.as_object_mut() {
        if obj.contains_key("client_secret") {
            return Err(ConfigError::new(
                format!("{field}.client_secret"),
                "the client authenticates by certificate; a secret certbound presents to the AS goes in upstream.client_secret",
            ));
        }
        obj.retain(|k, _| !REGISTRATION_METADATA_IGNORED.contains(&k.as_str()));
    }
    compile_client(from_value(v, field)?, field)
}

pub const DEFAULT_STORE_CAPACITY: u64 = 100_000;

/// The dynamic metadata that `jwt_authn` writes with `payload_in_metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtClaims {
    pub metadata_namespace: String,
    pub payload_key: String,
}

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

    let store = match raw.store {
        None => StoreConfig::SharedData { capacity: DEFAULT_STORE_CAPACITY },
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
        discovery,
        route_metadata: raw.route_metadata.unwrap_or(false),
    })
}

const MAX_CAPACITY: u64 = 1 << 24;

fn compile_store(raw: RawStore) -> Result<StoreConfig, ConfigError> {
    let capacity_ok = |c: u64, field: &str| {
        if c == 0 || c > MAX_CAPACITY {
            Err(ConfigError::new(field, format!("must be between 1 and {MAX_CAPACITY}")))
        } else {
            Ok(c)
        }
    };
    match raw.backend.as_deref().unwrap_or("shared_data") {
        "shared_data" => {
            if raw.etcd.is_some() {
                return Err(ConfigError::new("store.etcd", "only with backend \"etcd\""));
            }
            Ok(StoreConfig::SharedData {
                capacity: capacity_ok(raw.capacity.unwrap_or(DEFAULT_STORE_CAPACITY), "store.capacity")?,
            })
        }
        "etcd" => {
            if raw.capacity.is_some() {
                return Err(ConfigError::new(
                    "store.capacity",
                    "is for backend shared_data; etcd has etcd.cache_capacity",
                ));
            }
            let v = raw.etcd.ok_or_else(|| ConfigError::new("store.etcd", "backend etcd needs an etcd object"))?;
            let e: RawEtcd = from_value(v, "store.etcd")?;
            if e.cluster.is_empty() {
                return Err(ConfigError::new("store.etcd.cluster", "must name the Envoy cluster of etcd"));
            }
            let timeout_ms = e.timeout_ms.unwrap_or(1000);
            if timeout_ms == 0 || timeout_ms > 60_000 {
                return Err(ConfigError::new("store.etcd.timeout_ms", "must be between 1 and 60000"));
            }
            let fail_closed = match e.on_unavailable.as_deref() {
                None | Some("fail_closed") => true,
                Some("fail_open") => false,
                Some(o) => {
                    return Err(ConfigError::new(
                        "store.etcd.on_unavailable",
                        format!("{o:?}: expected fail_closed or fail_open"),
                    ))
                }
            };
            let lease_bucket_seconds = e.lease_bucket_seconds.unwrap_or(60);
            if !(1..=86_400).contains(&lease_bucket_seconds) {
                return Err(ConfigError::new("store.etcd.lease_bucket_seconds", "must be between 1 and 86400"));
            }
            Ok(StoreConfig::Etcd(Rc::new(EtcdConfig {
                authority: e.authority.unwrap_or_else(|| e.cluster.clone()),
                cluster: e.cluster,
                key_prefix: e.key_prefix.unwrap_or_default(),
                timeout_ms,
                cache_capacity: match e.cache_capacity.unwrap_or(DEFAULT_STORE_CAPACITY) {
                    // 0: no cache, every read asks etcd.
                    0 => 0,
                    c => capacity_ok(c, "store.etcd.cache_capacity")?,
                },
                fail_closed,
                lease_bucket_seconds,
                clients_refresh_seconds: {
                    let r = e.clients_refresh_seconds.unwrap_or(0);
                    if r > 3600 {
                        return Err(ConfigError::new("store.etcd.clients_refresh_seconds", "must be at most 3600"));
                    }
                    r
                },
            })))
        }
        o => Err(ConfigError::new("store.backend", format!("{o:?}: expected shared_data or etcd"))),
    }
}

fn compile_sources(raw: RawSources) -> Result<Sources, ConfigError> {
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

fn tls_client_auth_rule(raw: &RawClient, field: &str) -> Result<TlsClientAuthRule, ConfigError> {
    let given: Vec<(&str, &String)> = [
        ("tls_client_auth_subject_dn", &raw.tls_client_auth_subject_dn),
        ("tls_client_auth_san_dns", &raw.tls_client_auth_san_dns),
        ("tls_client_auth_san_uri", &raw.tls_client_auth_san_uri),
        ("tls_client_auth_san_ip", &raw.tls_client_auth_san_ip),
        ("tls_client_auth_san_email", &raw.tls_client_auth_san_email),
    ]
    .into_iter()
    .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
    .collect();
    let [(name, value)] = given.as_slice() else {
        return Err(ConfigError::new(
            format!("{field}.token_endpoint_auth_method"),
            "tls_client_auth needs exactly one of tls_client_auth_subject_dn, _san_dns, _san_uri, _san_ip, _san_email",
        ));
    };
    let f = format!("{field}.{name}");
    if value.is_empty() {
        return Err(ConfigError::new(f, "must not be empty"));
    }
    Ok(match *name {
        "tls_client_auth_subject_dn" => {
            TlsClientAuthRule::SubjectDn(crate::dn::parse(value).map_err(|e| ConfigError::new(f, e.to_string()))?)
        }
        "tls_client_auth_san_dns" => TlsClientAuthRule::SanDns(value.to_string()),
        "tls_client_auth_san_uri" => TlsClientAuthRule::SanUri(value.to_string()),
        "tls_client_auth_san_ip" => {
            let ip: std::net::IpAddr =
                value.parse().map_err(|_| ConfigError::new(f, format!("{value:?} is not an IP address")))?;
            TlsClientAuthRule::SanIp(match ip {
                std::net::IpAddr::V4(a) => a.octets().to_vec(),
                std::net::IpAddr::V6(a) => a.octets().to_vec(),
            })
        }
        _ => TlsClientAuthRule::SanEmail(value.to_string()),
    })
}

fn compile_route(raw: RawRoute, field: &str) -> Result<ProtectedRoute, ConfigError> {
    if !raw.path_prefix.starts_with('/') {
        return Err(ConfigError::new(format!("{field}.path_prefix"), "must start with '/'"));
    }
    let unbound_tokens = match raw.unbound_tokens.as_deref() {
        None | Some("require_binding") => UnboundPolicy::RequireBinding,
        Some("allow") => UnboundPolicy::Allow,
        Some(o) => {
            return Err(ConfigError::new(
                format!("{field}.unbound_tokens"),
                format!("{o:?}: expected \"require_binding\" or \"allow\""),
            ))
        }
    };
    let missing_token = match raw.missing_token.as_deref() {
        None | Some("reject") => MissingTokenPolicy::Reject,
        Some("pass") => MissingTokenPolicy::Pass,
        Some(o) => {
            return Err(ConfigError::new(
                format!("{field}.missing_token"),
                format!("{o:?}: expected \"reject\" or \"pass\""),
            ))
        }
    };
    let other_schemes = match raw.other_schemes.as_deref() {
        None | Some("reject") => OtherSchemes::Reject,
        Some("pass") => OtherSchemes::Pass,
        Some(o) => {
            return Err(ConfigError::new(
                format!("{field}.other_schemes"),
                format!("{o:?}: expected \"reject\" or \"pass\""),
            ))
        }
    };
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

fn compile_client(raw: RawClient, field: &str) -> Result<Client, ConfigError> {
    if raw.client_id.is_empty() {
        return Err(ConfigError::new(format!("{field}.client_id"), "must not be empty"));
    }
    let bound_field = format!("{field}.tls_client_certificate_bound_access_tokens");
    if raw.token_endpoint_auth_method != "tls_client_auth"
        && (raw.tls_client_auth_subject_dn.is_some()
            || raw.tls_client_auth_san_dns.is_some()
            || raw.tls_client_auth_san_uri.is_some()
            || raw.tls_client_auth_san_ip.is_some()
            || raw.tls_client_auth_san_email.is_some())
    {
        return Err(ConfigError::new(
            format!("{field}.token_endpoint_auth_method"),
            "tls_client_auth_* fields are only for tls_client_auth clients",
        ));
    }
    if raw.token_endpoint_auth_method != "self_signed_tls_client_auth" {
        for (name, given) in [("jwks", raw.jwks.is_some()), ("jwks_uri", raw.jwks_uri.is_some())] {
            if given {
                return Err(ConfigError::new(
                    format!("{field}.{name}"),
                    "registered certificates (jwks, jwks_uri) are for self_signed_tls_client_auth clients",
                ));
            }
        }
    }
    let jwks_uri = match &raw.jwks_uri {
        None => None,
        Some(u) => Some(crate::jwks::parse_uri(u).map_err(|e| ConfigError::new(format!("{field}.jwks_uri"), e))?),
    };
    let method = match raw.token_endpoint_auth_method.as_str() {
        "none" => {
            if !raw.certificates.is_empty() || !raw.thumbprints.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.certificates"),
                    "a public client (none) authenticates with no certificate; remove certificates and thumbprints",
                ));
            }
            if raw.upstream.is_some() {
                return Err(ConfigError::new(
                    format!("{field}.upstream"),
                    "a public client (none) has no credentials to present upstream",
                ));
            }
            ClientAuthMethod::None {
                require_certificate: raw.tls_client_certificate_bound_access_tokens.unwrap_or(false),
            }
        }
        "self_signed_tls_client_auth" => {
            if raw.tls_client_certificate_bound_access_tokens == Some(false) {
                return Err(ConfigError::new(
                    bound_field,
                    "a client authenticated by certificate always gets certificate-bound tokens; false is allowed only for none",
                ));
            }
            let mut pins = Vec::new();
            for (j, pem) in raw.certificates.iter().enumerate() {
                let cert = parse_pem(pem)
                    .map_err(|e| ConfigError::new(format!("{field}.certificates[{j}]"), e.to_string()))?;
                pins.push(Pin { thumbprint: cert.thumbprint, validity: Some(cert.validity) });
            }
            for (j, t) in raw.thumbprints.iter().enumerate() {
                let thumbprint = Thumbprint::from_x5t_s256(t)
                    .map_err(|e| ConfigError::new(format!("{field}.thumbprints[{j}]"), e.to_string()))?;
                pins.push(Pin { thumbprint, validity: None });
            }
            if let Some(jwks) = &raw.jwks {
                let certs =
                    crate::jwks::certificates(jwks).map_err(|e| ConfigError::new(format!("{field}.jwks"), e))?;
                pins.extend(certs.into_iter().map(|c| Pin { thumbprint: c.thumbprint, validity: Some(c.validity) }));
            }
            if pins.is_empty() && raw.jwks_uri.is_none() {
                return Err(ConfigError::new(
                    format!("{field}.certificates"),
                    "self_signed_tls_client_auth needs certificates, thumbprints, jwks (keys with x5c) or jwks_uri",
                ));
            }
            ClientAuthMethod::SelfSignedTlsClientAuth { pins }
        }
        "tls_client_auth" => {
            if !raw.certificates.is_empty() || !raw.thumbprints.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.certificates"),
                    "tls_client_auth matches a subject or SAN, not pinned certificates",
                ));
            }
            if raw.tls_client_certificate_bound_access_tokens == Some(false) {
                return Err(ConfigError::new(
                    bound_field,
                    "a client authenticated by certificate always gets certificate-bound tokens; false is allowed only for none",
                ));
            }
            ClientAuthMethod::TlsClientAuth { rule: tls_client_auth_rule(&raw, field)? }
        }
        other => {
            return Err(ConfigError::new(
                format!("{field}.token_endpoint_auth_method"),
                format!(
                "{other:?} is not supported; expected \"tls_client_auth\", \"self_signed_tls_client_auth\" or \"none\""
            ),
            ))
        }
    };
    let upstream = match raw.upstream {
        None => None,
        Some(v) => {
            let f = format!("{field}.upstream");
            let u: RawUpstream = from_value(v, &f)?;
            if u.client_secret.is_empty() {
                return Err(ConfigError::new(format!("{f}.client_secret"), "must not be empty"));
            }
            Some(UpstreamCredentials { client_secret: Secret(u.client_secret) })
        }
    };
    Ok(Client { client_id: raw.client_id, method, upstream, jwks_uri })
}

#[cfg(test)]
mod tests {
    use super::*;
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
