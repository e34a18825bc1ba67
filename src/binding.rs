//! Token bound: which tokens of a token response get bound, for how long,
//! and the record stored for each, keyed by a hash of the token (never the token).

use crate::cert::Thumbprint;
use crate::config::BindingPolicy;
use crate::error::{OAuthError, Reason};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Prefix of every binding key in the store.
pub const KEY_PREFIX: &str = "certbound/b/";

/// Store key of a token: the prefix and base64url(SHA-256(token)).
pub fn key_for_token(token: &str) -> String {
    let mut key = String::with_capacity(KEY_PREFIX.len() + 43);
    key.push_str(KEY_PREFIX);
    key.push_str(&URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())));
    key
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    fn tag(self) -> char {
        match self {
            TokenKind::Access => 'a',
            TokenKind::Refresh => 'r',
        }
    }
}

/// What is stored for a bound token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub thumbprint: Thumbprint,
    pub kind: TokenKind,
    /// Unix seconds after which the binding is void.
    pub expires_at: i64,
}

const RECORD_VERSION: &str = "1";

impl Binding {
    /// `1 <x5t#S256> <kind> <expires_at>`: small, and readable with etcdctl.
    pub fn encode(&self) -> Vec<u8> {
        format!("{RECORD_VERSION} {} {} {}", self.thumbprint.x5t_s256(), self.kind.tag(), self.expires_at).into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Binding> {
        let s = std::str::from_utf8(bytes).ok()?;
        let mut parts = s.split(' ');
        if parts.next()? != RECORD_VERSION {
            return None;
        }
        let thumbprint = Thumbprint::from_x5t_s256(parts.next()?).ok()?;
        let kind = match parts.next()? {
            "a" => TokenKind::Access,
            "r" => TokenKind::Refresh,
            _ => return None,
        };
        let expires_at = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Binding { thumbprint, kind, expires_at })
    }

    pub fn is_live(&self, now: i64) -> bool {
        now < self.expires_at
    }
}

/// The binding that applies to a token now, if any.
pub fn live(stored: Option<&[u8]>, now: i64) -> Option<Binding> {
    stored.and_then(Binding::decode).filter(|b| b.is_live(now))
}

/// RFC 8705 §4 and WSO2 IS's refresh check: a bound refresh token is only
/// refreshed with the certificate it is bound to. An unbound one (issued
/// elsewhere, or to a public client without a certificate) is the AS's to judge.
pub fn check_refresh(bound: Option<&Binding>, presented: Option<&Thumbprint>) -> Result<(), OAuthError> {
    match (bound, presented) {
        (None, _) => Ok(()),
        (Some(b), Some(p)) if b.thumbprint.ct_eq(p) => Ok(()),
        (Some(_), Some(_)) => Err(OAuthError::invalid_grant(
            Reason::RefreshCertificateMismatch,
            "the refresh token is bound to another certificate",
        )),
        (Some(_), None) => Err(OAuthError::invalid_grant(
            Reason::RefreshWithoutCertificate,
            "the refresh token is certificate-bound; present that certificate",
        )),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnbindableResponse {
    NotJson,
    NoAccessToken,
}

impl std::fmt::Display for UnbindableResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnbindableResponse::NotJson => f.write_str("token response is not a JSON object"),
            UnbindableResponse::NoAccessToken => f.write_str("token response has no access_token"),
        }
    }
}

/// One binding to write: the store key and the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToBind {
    pub key: String,
    pub binding: Binding,
}

/// The bindings a successful token response (RFC 6749 §5.1) needs: its access
/// token, and its refresh token when present, both to the presented certificate.
pub fn bindings_for_response(
    body: &[u8],
    thumbprint: Thumbprint,
    policy: &BindingPolicy,
    now: i64,
) -> Result<Vec<ToBind>, UnbindableResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|_| UnbindableResponse::NotJson)?;
    let obj = v.as_object().ok_or(UnbindableResponse::NotJson)?;
    let access = obj
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or(UnbindableResponse::NoAccessToken)?;
    let access_ttl =
        obj.get("expires_in").and_then(Value::as_u64).unwrap_or(policy.default_ttl_seconds).min(policy.max_ttl_seconds);
    let mut out = vec![ToBind {
        key: key_for_token(access),
        binding: Binding { thumbprint, kind: TokenKind::Access, expires_at: now.saturating_add(access_ttl as i64) },
    }];
    if let Some(refresh) = obj.get("refresh_token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        let ttl = policy.refresh_token_ttl_seconds.min(policy.max_ttl_seconds);
        out.push(ToBind {
            key: key_for_token(refresh),
            binding: Binding { thumbprint, kind: TokenKind::Refresh, expires_at: now.saturating_add(ttl as i64) },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn t(s: &[u8]) -> Thumbprint {
        Thumbprint::of_der(s)
    }

    #[test]
    fn key_is_a_hash_of_the_token_never_the_token() {
        let k = key_for_token("secret-token-value");
        assert!(k.starts_with(KEY_PREFIX));
        assert!(!k.contains("secret-token-value"));
        assert_eq!(k.len(), KEY_PREFIX.len() + 43);
        assert_eq!(k, key_for_token("secret-token-value"));
        assert_ne!(k, key_for_token("secret-token-valuf"));
    }

    #[test]
    fn record_round_trips() {
        for kind in [TokenKind::Access, TokenKind::Refresh] {
            let b = Binding { thumbprint: t(b"c"), kind, expires_at: NOW };
            assert_eq!(Binding::decode(&b.encode()), Some(b));
        }
    }

    #[test]
    fn malformed_records_decode_to_nothing() {
        let good = String::from_utf8(Binding { thumbprint: t(b"c"), kind: TokenKind::Access, expires_at: 5 }.encode())
            .unwrap();
        assert!(Binding::decode(b"").is_none());
        assert!(Binding::decode(good.replacen('1', "2", 1).as_bytes()).is_none());
        assert!(Binding::decode(format!("{good} extra").as_bytes()).is_none());
        assert!(Binding::decode(good.replace(" a ", " x ").as_bytes()).is_none());
        assert!(Binding::decode(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn expired_binding_is_not_live() {
        let b = Binding { thumbprint: t(b"c"), kind: TokenKind::Access, expires_at: NOW };
        assert_eq!(live(Some(&b.encode()), NOW - 1), Some(b));
        assert_eq!(live(Some(&b.encode()), NOW), None);
        assert_eq!(live(None, NOW), None);
    }

    #[test]
    fn access_token_is_bound_for_expires_in() {
        let p = BindingPolicy::default();
        let out =
            bindings_for_response(br#"{"access_token":"at","token_type":"Bearer","expires_in":600}"#, t(b"c"), &p, NOW)
                .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, key_for_token("at"));
        assert_eq!(out[0].binding, Binding { thumbprint: t(b"c"), kind: TokenKind::Access, expires_at: NOW + 600 });
    }

    #[test]
    fn refresh_token_is_bound_too_for_the_configured_lifetime() {
        let p = BindingPolicy { refresh_token_ttl_seconds: 7200, ..BindingPolicy::default() };
        let out =
            bindings_for_response(br#"{"access_token":"at","refresh_token":"rt","expires_in":60}"#, t(b"c"), &p, NOW)
                .unwrap();
        assert_eq!(out[1].key, key_for_token("rt"));
        assert_eq!(out[1].binding.kind, TokenKind::Refresh);
        assert_eq!(out[1].binding.expires_at, NOW + 7200);
    }

    #[test]
    fn lifetimes_are_capped_and_defaulted() {
        let p = BindingPolicy { default_ttl_seconds: 100, max_ttl_seconds: 50, refresh_token_ttl_seconds: 1000 };
        let out = bindings_for_response(br#"{"access_token":"at","refresh_token":"rt"}"#, t(b"c"), &p, NOW).unwrap();
        assert_eq!(out[0].binding.expires_at, NOW + 50);
        assert_eq!(out[1].binding.expires_at, NOW + 50);
        let out = bindings_for_response(
            br#"{"access_token":"at","expires_in":1e99}"#,
            t(b"c"),
            &BindingPolicy::default(),
            NOW,
        )
        .unwrap();
        assert_eq!(out[0].binding.expires_at, NOW + 3600);
    }

    #[test]
    fn a_response_without_access_token_cannot_be_bound() {
        let p = BindingPolicy::default();
        assert_eq!(bindings_for_response(b"<html>", t(b"c"), &p, NOW), Err(UnbindableResponse::NotJson));
        assert_eq!(bindings_for_response(b"[1]", t(b"c"), &p, NOW), Err(UnbindableResponse::NotJson));
        assert_eq!(
            bindings_for_response(br#"{"access_token":""}"#, t(b"c"), &p, NOW),
            Err(UnbindableResponse::NoAccessToken)
        );
        assert_eq!(
            bindings_for_response(br#"{"id_token":"x"}"#, t(b"c"), &p, NOW),
            Err(UnbindableResponse::NoAccessToken)
        );
    }

    #[test]
    fn bound_refresh_token_refreshes_only_with_its_certificate() {
        let b = Binding { thumbprint: t(b"a"), kind: TokenKind::Refresh, expires_at: NOW };
        assert_eq!(check_refresh(Some(&b), Some(&t(b"a"))), Ok(()));
        let e = check_refresh(Some(&b), Some(&t(b"b"))).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (400, "invalid_grant", Reason::RefreshCertificateMismatch));
        let e = check_refresh(Some(&b), None).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (400, "invalid_grant", Reason::RefreshWithoutCertificate));
    }

    #[test]
    fn unbound_refresh_token_is_left_to_the_as() {
        assert_eq!(check_refresh(None, None), Ok(()));
        assert_eq!(check_refresh(None, Some(&t(b"a"))), Ok(()));
    }
}
