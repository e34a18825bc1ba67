//! `clients[]`: one registration per client, as certbound's fields or as the AS's own metadata pasted.

use super::{from_value, ConfigError};
use crate::cert::{parse_pem, Thumbprint};
use crate::client_auth::{Client, ClientAuthMethod, Pin, Secret, TlsClientAuthRule, UpstreamCredentials};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
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
pub(super) const REGISTRATION_METADATA_IGNORED: &[&str] = &[
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
pub(super) struct RawUpstream {
    client_secret: String,
}

/// Parses one client registration (a `clients[]` entry), as etcd holds them.
pub fn parse_client(json: &[u8], field: &str) -> Result<Client, ConfigError> {
    let v: Value = serde_json::from_slice(json).map_err(|e| ConfigError::new(field, e.to_string()))?;
    client_from_value(v, field)
}

/// A `clients[]` entry: certbound's fields, and the AS's own registration metadata ignored.
pub(super) fn client_from_value(mut v: Value, field: &str) -> Result<Client, ConfigError> {
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

pub(super) fn tls_client_auth_rule(raw: &RawClient, field: &str) -> Result<TlsClientAuthRule, ConfigError> {
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

pub(super) fn compile_client(raw: RawClient, field: &str) -> Result<Client, ConfigError> {
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
            Some(UpstreamCredentials { client_secret: Secret::new(u.client_secret) })
        }
    };
    Ok(Client { client_id: raw.client_id, method, upstream, jwks_uri })
}
