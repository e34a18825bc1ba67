//! Token bound: which tokens of a token response get bound, for how long,
//! and the record stored for each, keyed by a hash of the token (never the token).

use crate::cert::Thumbprint;
use crate::error::{OAuthError, Reason};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// Prefix of every binding key in the store.
pub use crate::keys::BINDING_PREFIX as KEY_PREFIX;
/// Store keys of tokens: one key for every spelling of a token (see [`crate::token_key`]).
pub use crate::token_key::{key_for_token, keys_for_token, TokenKeys};

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
pub fn live_binding(stored: Option<&[u8]>, now: i64) -> Option<Binding> {
    stored.and_then(Binding::decode).filter(|b| b.is_live(now))
}

/// RFC 8705 §4 and WSO2 IS's refresh check: a bound refresh token is only
/// refreshed with the certificate it is bound to. An unbound one (issued
/// elsewhere, or to a public client without a certificate) is the AS's to
/// judge, unless every token of the client is bound (`must_be_bound`: a
/// public client registered for bound tokens), where an unknown refresh token
/// is refused rather than refreshed unchecked.
pub fn check_refresh(
    bound: Option<&Binding>,
    presented: Option<&Thumbprint>,
    must_be_bound: bool,
) -> Result<(), OAuthError> {
    match (bound, presented) {
        (None, _) if must_be_bound => Err(OAuthError::invalid_grant(
            Reason::RefreshTokenNotBound,
            "this client's refresh tokens are certificate-bound, and this one has no binding",
        )),
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
    /// A token spelled so that verifiers could read it as different tokens (padding inside a JOSE segment).
    AmbiguousToken,
    /// A member named twice: certbound and the client could each read a different token.
    DuplicateMembers,
    /// A lifetime member that is not a number of seconds: how long to bind is unknown.
    BadLifetime(&'static str),
    /// The token lives longer than `max_ttl_seconds`: a shorter binding would lapse while it is usable.
    LifetimeTooLong {
        lifetime: u64,
        max: u64,
    },
}

impl std::fmt::Display for UnbindableResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnbindableResponse::NotJson => f.write_str("token response is not a JSON object"),
            UnbindableResponse::NoAccessToken => f.write_str("token response has no access_token"),
            UnbindableResponse::AmbiguousToken => {
                f.write_str("a token in the response cannot be keyed: padding inside a segment")
            }
            UnbindableResponse::DuplicateMembers => f.write_str("token response names a member twice"),
            UnbindableResponse::BadLifetime(member) => write!(f, "token response member {member} is not a lifetime"),
            UnbindableResponse::LifetimeTooLong { lifetime, max } => {
                write!(f, "a token lives {lifetime} s, longer than the {max} s a binding may be kept (binding.max_ttl_seconds)")
            }
        }
    }
}

/// A lifetime in seconds from a token response member: a non-negative
/// number, or a string of digits as some servers send it.
fn seconds(obj: &serde_json::Map<String, Value>, member: &'static str) -> Result<Option<u64>, UnbindableResponse> {
    let Some(v) = obj.get(member) else { return Ok(None) };
    let n = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.map(Some).ok_or(UnbindableResponse::BadLifetime(member))
}

/// Seconds until a JWT's `exp`, read without checking its signature: it only
/// ever makes a binding last longer, never shorter.
fn jwt_lifetime(token: &str, now: i64) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    Some(exp.saturating_sub(now).max(0) as u64)
}

/// The client a JWT was issued to (RFC 9068 `client_id`, else OpenID's
/// `azp`), from its payload segment, read without checking the signature:
/// it only ever makes certbound refuse, never accept.
pub fn jwt_client_id(payload_segment: &str) -> Option<String> {
    let bytes = crate::token_key::decode_lenient(payload_segment);
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let id = claims.get("client_id").or_else(|| claims.get("azp"))?.as_str()?;
    Some(id.to_string())
}

/// The longest of the lifetimes known for a token, or `fallback` when none is.
fn lifetime(known: impl IntoIterator<Item = Option<u64>>, fallback: u64, max: u64) -> Result<u64, UnbindableResponse> {
    let lifetime = known.into_iter().flatten().max().unwrap_or(fallback);
    if lifetime > max {
        return Err(UnbindableResponse::LifetimeTooLong { lifetime, max });
    }
    Ok(lifetime)
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
    if crate::introspection::has_duplicate_keys(body) {
        return Err(UnbindableResponse::DuplicateMembers);
    }
    let access = obj
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or(UnbindableResponse::NoAccessToken)?;
    let access_ttl = lifetime(
        [seconds(obj, "expires_in")?, jwt_lifetime(access, now)],
        policy.default_ttl_seconds,
        policy.max_ttl_seconds,
    )?;
    let key = |t: &str| key_for_token(t).ok_or(UnbindableResponse::AmbiguousToken);
    let mut out = vec![ToBind {
        key: key(access)?,
        binding: Binding { thumbprint, kind: TokenKind::Access, expires_at: now.saturating_add(access_ttl as i64) },
    }];
    if let Some(refresh) = obj.get("refresh_token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        // The operator's lifetime (token responses rarely state one), or longer when the response or the token says so.
        let ttl = lifetime(
            [
                Some(policy.refresh_token_ttl_seconds),
                seconds(obj, "refresh_token_expires_in")?,
                seconds(obj, "refresh_expires_in")?.map(|s| if s == 0 { u64::MAX } else { s }),
                jwt_lifetime(refresh, now),
            ],
            policy.refresh_token_ttl_seconds,
            policy.max_ttl_seconds,
        )?;
        out.push(ToBind {
            key: key(refresh)?,
            binding: Binding { thumbprint, kind: TokenKind::Refresh, expires_at: now.saturating_add(ttl as i64) },
        });
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn t(s: &[u8]) -> Thumbprint {
        Thumbprint::of_der(s)
    }

    #[test]
    fn a_token_response_whose_token_cannot_be_keyed_is_unbindable() {
        let body = br#"{"access_token":"eyJhbGciOiJub25lIn0.e30.QU=JD","expires_in":60}"#;
        let e = bindings_for_response(body, t(b"c"), &BindingPolicy::default(), NOW).unwrap_err();
        assert_eq!(e, UnbindableResponse::AmbiguousToken);
        assert!(e.to_string().contains("padding inside a segment"));
    }

    #[test]
    fn a_jwts_client_is_read_from_its_payload() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        assert_eq!(jwt_client_id(&b64(r#"{"client_id":"c1","azp":"x"}"#)), Some("c1".into()));
        assert_eq!(jwt_client_id(&b64(r#"{"azp":"c2"}"#)), Some("c2".into()));
        assert_eq!(jwt_client_id(&b64(r#"{"sub":"u"}"#)), None);
        assert_eq!(jwt_client_id(&b64(r#"{"client_id":7}"#)), None);
        assert_eq!(jwt_client_id("!!"), None);
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
        assert_eq!(live_binding(Some(&b.encode()), NOW - 1), Some(b));
        assert_eq!(live_binding(Some(&b.encode()), NOW), None);
        assert_eq!(live_binding(None, NOW), None);
    }

    #[test]
    fn access_token_is_bound_for_expires_in() {
        let p = BindingPolicy::default();
        let out =
            bindings_for_response(br#"{"access_token":"at","token_type":"Bearer","expires_in":600}"#, t(b"c"), &p, NOW)
                .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, key_for_token("at").unwrap());
        assert_eq!(out[0].binding, Binding { thumbprint: t(b"c"), kind: TokenKind::Access, expires_at: NOW + 600 });
    }

    #[test]
    fn a_null_lifetime_is_no_lifetime_and_the_default_applies() {
        let p = BindingPolicy { default_ttl_seconds: 900, ..BindingPolicy::default() };
        let out = bindings_for_response(br#"{"access_token":"at","expires_in":null}"#, t(b"c"), &p, NOW).unwrap();
        assert_eq!(out[0].binding.expires_at, NOW + 900);
        let e = bindings_for_response(br#"{"access_token":"at","expires_in":true}"#, t(b"c"), &p, NOW).unwrap_err();
        assert_eq!(e, UnbindableResponse::BadLifetime("expires_in"));
    }

    #[test]
    fn a_token_living_exactly_max_ttl_is_bound_and_one_second_more_is_not() {
        let p = BindingPolicy { max_ttl_seconds: 600, default_ttl_seconds: 600, refresh_token_ttl_seconds: 600 };
        let out = bindings_for_response(br#"{"access_token":"at","expires_in":600}"#, t(b"c"), &p, NOW).unwrap();
        assert_eq!(out[0].binding.expires_at, NOW + 600);
        let e = bindings_for_response(br#"{"access_token":"at","expires_in":601}"#, t(b"c"), &p, NOW).unwrap_err();
        assert_eq!(e, UnbindableResponse::LifetimeTooLong { lifetime: 601, max: 600 });
    }

    #[test]
    fn refresh_token_is_bound_too_for_the_configured_lifetime() {
        let p = BindingPolicy { refresh_token_ttl_seconds: 7200, ..BindingPolicy::default() };
        let out =
            bindings_for_response(br#"{"access_token":"at","refresh_token":"rt","expires_in":60}"#, t(b"c"), &p, NOW)
                .unwrap();
        assert_eq!(out[1].key, key_for_token("rt").unwrap());
        assert_eq!(out[1].binding.kind, TokenKind::Refresh);
        assert_eq!(out[1].binding.expires_at, NOW + 7200);
    }

    #[test]
    fn access_token_without_expires_in_is_bound_for_the_default_lifetime() {
        let p = BindingPolicy { default_ttl_seconds: 100, max_ttl_seconds: 5000, refresh_token_ttl_seconds: 1000 };
        let out = bindings_for_response(br#"{"access_token":"at","refresh_token":"rt"}"#, t(b"c"), &p, NOW).unwrap();
        assert_eq!(out[0].binding.expires_at, NOW + 100);
        assert_eq!(out[1].binding.expires_at, NOW + 1000);
        let out = bindings_for_response(br#"{"access_token":"at","expires_in":"60"}"#, t(b"c"), &p, NOW).unwrap();
        assert_eq!(out[0].binding.expires_at, NOW + 60);
    }

    fn jwt(exp: i64) -> String {
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"x","exp":{exp}}}"#));
        format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln")
    }

    #[test]
    fn a_jwt_is_bound_until_its_exp_when_that_is_later_than_expires_in() {
        let p = BindingPolicy::default();
        let body = format!(r#"{{"access_token":"{}","expires_in":60}}"#, jwt(NOW + 900));
        let out = bindings_for_response(body.as_bytes(), t(b"c"), &p, NOW).unwrap();
        assert_eq!(out[0].binding.expires_at, NOW + 900);
        let body = format!(r#"{{"access_token":"{}","expires_in":60}}"#, jwt(NOW + 10));
        assert_eq!(bindings_for_response(body.as_bytes(), t(b"c"), &p, NOW).unwrap()[0].binding.expires_at, NOW + 60);
    }

    #[test]
    fn a_token_that_outlives_what_can_be_stored_is_refused_not_bound_shorter() {
        let p = BindingPolicy { default_ttl_seconds: 100, max_ttl_seconds: 300, refresh_token_ttl_seconds: 200 };
        assert_eq!(
            bindings_for_response(br#"{"access_token":"at","expires_in":600}"#, t(b"c"), &p, NOW),
            Err(UnbindableResponse::LifetimeTooLong { lifetime: 600, max: 300 })
        );
        let body = format!(r#"{{"access_token":"{}","expires_in":60}}"#, jwt(NOW + 301));
        assert!(bindings_for_response(body.as_bytes(), t(b"c"), &p, NOW).is_err());
        let r = br#"{"access_token":"at","expires_in":60,"refresh_token":"rt","refresh_token_expires_in":900}"#;
        assert_eq!(
            bindings_for_response(r, t(b"c"), &p, NOW),
            Err(UnbindableResponse::LifetimeTooLong { lifetime: 900, max: 300 })
        );
        // Keycloak's refresh_expires_in 0: a refresh token that never expires.
        let r = br#"{"access_token":"at","expires_in":60,"refresh_token":"rt","refresh_expires_in":0}"#;
        assert!(matches!(bindings_for_response(r, t(b"c"), &p, NOW), Err(UnbindableResponse::LifetimeTooLong { .. })));
    }

    #[test]
    fn a_response_naming_a_token_twice_is_not_bound() {
        let body = br#"{"access_token":"a","token_type":"Bearer","access_token":"b"}"#;
        assert_eq!(
            bindings_for_response(body, t(b"c"), &BindingPolicy::default(), NOW),
            Err(UnbindableResponse::DuplicateMembers)
        );
    }

    #[test]
    fn a_lifetime_that_is_not_a_number_of_seconds_is_refused() {
        let p = BindingPolicy::default();
        for body in [
            &br#"{"access_token":"at","expires_in":1e99}"#[..],
            br#"{"access_token":"at","expires_in":-5}"#,
            br#"{"access_token":"at","expires_in":"soon"}"#,
            br#"{"access_token":"at","expires_in":[1]}"#,
        ] {
            assert_eq!(
                bindings_for_response(body, t(b"c"), &p, NOW),
                Err(UnbindableResponse::BadLifetime("expires_in")),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
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
        assert_eq!(check_refresh(Some(&b), Some(&t(b"a")), false), Ok(()));
        let e = check_refresh(Some(&b), Some(&t(b"b")), false).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (400, "invalid_grant", Reason::RefreshCertificateMismatch));
        let e = check_refresh(Some(&b), None, false).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (400, "invalid_grant", Reason::RefreshWithoutCertificate));
    }

    #[test]
    fn unbound_refresh_token_is_left_to_the_as() {
        assert_eq!(check_refresh(None, None, false), Ok(()));
        assert_eq!(check_refresh(None, Some(&t(b"a")), false), Ok(()));
        let e = check_refresh(None, Some(&t(b"a")), true).unwrap_err();
        assert_eq!((e.status, e.error, e.reason), (400, "invalid_grant", Reason::RefreshTokenNotBound));
    }
}
