//! `application/x-www-form-urlencoded` bodies and HTTP Basic credentials,
//! as the token and introspection endpoints receive them (RFC 6749 §2.3.1).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    BadPercentEncoding,
    NotUtf8,
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormError::BadPercentEncoding => f.write_str("not valid percent-encoding"),
            FormError::NotUtf8 => f.write_str("not UTF-8"),
        }
    }
}

/// Percent-decoding with `+` as space, as form encoding defines it.
pub fn decode_component(raw: &[u8]) -> Result<String, FormError> {
    percent_decode(raw, true)
}

/// Percent-decoding; `+` is a space in form encoding, itself elsewhere (URL-encoded PEM keeps base64's `+`).
pub fn percent_decode(raw: &[u8], plus_is_space: bool) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    // Runs without `%` (or `+` read as a space) are copied whole.
    while let Some(at) = rest.iter().position(|&b| b == b'%' || (plus_is_space && b == b'+')) {
        let (run, special) = rest.split_at(at);
        out.extend_from_slice(run);
        match special {
            [b'+', tail @ ..] => {
                out.push(b' ');
                rest = tail;
            }
            [b'%', hi, lo, tail @ ..] => match ((*hi as char).to_digit(16), (*lo as char).to_digit(16)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    rest = tail;
                }
                _ => return Err(FormError::BadPercentEncoding),
            },
            _ => return Err(FormError::BadPercentEncoding),
        }
    }
    out.extend_from_slice(rest);
    String::from_utf8(out).map_err(|_| FormError::NotUtf8)
}

/// Form-encodes one component (RFC 6749 §2.3.1 asks for it in Basic credentials).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// OAuth parameters that the token and introspection endpoints take from the
/// body only (RFC 6749 §3.2, RFC 7662 §2.1). Some servers merge the query into
/// the form parameters (Java servlets' getParameter), so one of these in the
/// query would be judged by the AS but never seen by certbound.
pub const BODY_ONLY_PARAMETERS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "refresh_token",
    "code",
    "code_verifier",
    "redirect_uri",
    "token",
    "token_type_hint",
    "scope",
    "resource",
];

/// The first body-only OAuth parameter the query of `path` carries, under
/// any reading a server could make of its names ([`crate::params`]).
pub fn body_only_parameter_in_query(path: &str) -> Option<&'static str> {
    let (_, query) = path.split_once('?')?;
    let query = query.split('#').next().unwrap_or_default();
    crate::params::first_reading(query.as_bytes(), BODY_ONLY_PARAMETERS)
}

/// A request body in an encoding certbound does not read (`Content-Encoding`
/// other than `identity`): the AS or API could decode a body certbound cannot judge.
pub fn is_encoded(content_encoding: Option<&str>) -> bool {
    content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"))
}

/// Credentials of an `Authorization: Basic` header.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub client_id: String,
    pub secret: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials").field("client_id", &self.client_id).field("secret", &"<redacted>").finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationError {
    NotBasic,
    Malformed,
}

/// Parses `Basic base64(urlencode(id):urlencode(secret))`.
pub fn parse_basic(header: &str) -> Result<BasicCredentials, AuthorizationError> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').ok_or(AuthorizationError::NotBasic)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthorizationError::NotBasic);
    }
    let raw = STANDARD.decode(rest.trim()).map_err(|_| AuthorizationError::Malformed)?;
    let raw = String::from_utf8(raw).map_err(|_| AuthorizationError::Malformed)?;
    let (id, secret) = raw.split_once(':').ok_or(AuthorizationError::Malformed)?;
    Ok(BasicCredentials {
        client_id: decode_component(id.as_bytes()).map_err(|_| AuthorizationError::Malformed)?,
        secret: decode_component(secret.as_bytes()).map_err(|_| AuthorizationError::Malformed)?,
    })
}

/// Builds the `Authorization: Basic` value for credentials sent upstream.
pub fn basic_header(client_id: &str, secret: &str) -> String {
    let joined = format!("{}:{}", encode_component(client_id), encode_component(secret));
    format!("Basic {}", STANDARD.encode(joined))
}

/// True when a `Content-Type` value names form encoding (parameters ignored).
pub fn is_form_content_type(value: &str) -> bool {
    value.split(';').next().map(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_errors_say_what_is_wrong() {
        assert_eq!(FormError::BadPercentEncoding.to_string(), "not valid percent-encoding");
        assert_eq!(FormError::NotUtf8.to_string(), "not UTF-8");
    }

    #[test]
    fn components_are_percent_decoded_with_plus_as_space() {
        assert_eq!(decode_component(b"a+b%20c%C3%A9"), Ok("a b c\u{e9}".into()));
        assert_eq!(percent_decode(b"a+b", false), Ok("a+b".into()));
        assert_eq!(decode_component(b"%4"), Err(FormError::BadPercentEncoding));
        assert_eq!(decode_component(b"%zz"), Err(FormError::BadPercentEncoding));
        assert_eq!(decode_component(b"%ff"), Err(FormError::NotUtf8));
    }

    // RFC 6749 §2.3.1: Basic carries base64(form-encoded id ":" form-encoded secret). The expected
    // values were computed outside certbound, with Python:
    //   "Basic " + base64.b64encode((quote_plus(id, safe="") + ":" + quote_plus(secret, safe="")).encode())
    const RESERVED_ID: &str = "app:1 x%+";
    const RESERVED_SECRET: &str = "p%ss+w:rd /\u{e9}";
    const RESERVED_BASIC: &str = "Basic YXBwJTNBMSt4JTI1JTJCOnAlMjVzcyUyQnclM0FyZCslMkYlQzMlQTk=";

    #[test]
    fn basic_header_is_the_rfc_6749_encoding_of_fixed_vectors() {
        assert_eq!(basic_header("c1", "up-secret"), "Basic YzE6dXAtc2VjcmV0");
        assert_eq!(
            basic_header("good-client", "good-upstream-secret"),
            "Basic Z29vZC1jbGllbnQ6Z29vZC11cHN0cmVhbS1zZWNyZXQ="
        );
        // ':' ' ' '%' '+' '/' and a non-ASCII letter are form-encoded before base64.
        assert_eq!(basic_header(RESERVED_ID, RESERVED_SECRET), RESERVED_BASIC);
        // Python: quote_plus("app:1 x%+", safe=""), quote_plus("p%ss+w:rd /\u{e9}", safe="")
        assert_eq!(encode_component(RESERVED_ID), "app%3A1+x%25%2B");
        assert_eq!(encode_component(RESERVED_SECRET), "p%25ss%2Bw%3Ard+%2F%C3%A9");
    }

    #[test]
    fn basic_credentials_written_by_another_encoder_are_read() {
        let c = parse_basic(RESERVED_BASIC).unwrap();
        assert_eq!((c.client_id.as_str(), c.secret.as_str()), (RESERVED_ID, RESERVED_SECRET));
        // Python: base64.b64encode(b"client%3A1:s3cr3t%2F%2B"): a ':' in the id is encoded, the first raw ':' splits.
        let c = parse_basic("Basic Y2xpZW50JTNBMTpzM2NyM3QlMkYlMkI=").unwrap();
        assert_eq!((c.client_id.as_str(), c.secret.as_str()), ("client:1", "s3cr3t/+"));
        // An empty password (curl -u id:), as clients send it to name themselves.
        let c = parse_basic("Basic Z29vZC1jbGllbnQ6").unwrap();
        assert_eq!((c.client_id.as_str(), c.secret.as_str()), ("good-client", ""));
    }

    #[test]
    fn basic_debug_hides_the_secret() {
        let c = parse_basic(&basic_header("id", "hunter2")).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(format!("{c:?}"), r#"BasicCredentials { client_id: "id", secret: "<redacted>" }"#);
    }

    #[test]
    fn non_basic_or_malformed_authorization_is_refused() {
        assert_eq!(parse_basic("Bearer abc"), Err(AuthorizationError::NotBasic));
        assert_eq!(parse_basic("Basic !!!"), Err(AuthorizationError::Malformed));
        assert_eq!(parse_basic("Basic bm9jb2xvbg=="), Err(AuthorizationError::Malformed));
    }

    #[test]
    fn form_content_type_ignores_parameters_and_case() {
        assert!(is_form_content_type("application/x-www-form-urlencoded; charset=UTF-8"));
        assert!(is_form_content_type("Application/X-WWW-Form-Urlencoded"));
        assert!(!is_form_content_type("application/json"));
    }

    #[test]
    fn oauth_parameters_in_the_query_of_a_body_endpoint_are_found_under_any_spelling() {
        assert_eq!(body_only_parameter_in_query("/oauth2/token?refresh_token=x"), Some("refresh_token"));
        assert_eq!(body_only_parameter_in_query("/oauth2/token?a=1;Client_ID=x"), Some("client_id"));
        assert_eq!(body_only_parameter_in_query("/oauth2/introspect?%74oken=x"), Some("token"));
        assert_eq!(body_only_parameter_in_query("/oauth2/introspect?token[]=x"), Some("token"));
        assert_eq!(body_only_parameter_in_query("/oauth2/token?+refresh_token=x"), Some("refresh_token"));
        assert_eq!(body_only_parameter_in_query("/oauth2/token?%zz=1"), None);
        assert_eq!(body_only_parameter_in_query("/oauth2/token?tenant=a"), None);
        assert_eq!(body_only_parameter_in_query("/oauth2/token"), None);
    }

    #[test]
    fn only_identity_bodies_are_read() {
        assert!(is_encoded(Some("gzip")));
        assert!(is_encoded(Some("identity, gzip")));
        assert!(!is_encoded(Some("Identity")));
        assert!(!is_encoded(None));
    }
}
