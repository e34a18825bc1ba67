//! Response patched: an introspection response (RFC 7662) for a bound, active
//! token gains `"cnf": {"x5t#S256": ...}` (RFC 8705 §3.2).

use crate::cert::Thumbprint;
use crate::params::{self, ParamError};
use serde_json::{Map, Value};

/// The `token` of an introspection request (RFC 7662 §2.1), read as
/// [`crate::params`] says: a body in a charset servers decode differently, a
/// `token` spelled otherwise or named twice is an error, since the AS could
/// still read a token from it and answer without the `cnf` certbound would add.
pub fn token_param(content_type: Option<&str>, body: &[u8]) -> Result<Option<String>, ParamError> {
    params::check_form_encoding(content_type, body)?;
    let judged = params::judge(body, &["token"])?;
    Ok(judged.get("token").filter(|t| !t.is_empty()).map(str::to_string))
}

/// What an introspection answer says about a token certbound has no binding for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnboundAnswer {
    /// Active, issued to this client (`client_id`), or to no client the answer names.
    Active(Option<String>),
    /// Inactive, not JSON, or ambiguous (a member repeated): left as it is.
    Other,
}

/// Reads an introspection answer for a token with no binding.
pub fn unbound_answer(body: &[u8]) -> UnboundAnswer {
    match serde_json::from_slice::<Outline>(body) {
        Ok(o) if o.active && !o.duplicate => UnboundAnswer::Active(o.client_id),
        _ => UnboundAnswer::Other,
    }
}

/// The answer for a token the AS says is active but whose binding is lost:
/// inactive (RFC 7662 §2.2), so no resource server takes it as a bearer token.
pub const INACTIVE: &[u8] = br#"{"active":false}"#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patch {
    Patched(Vec<u8>),
    Unchanged(Unchanged),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchanged {
    NotJsonObject,
    Inactive,
    /// The AS already states the same binding.
    AlreadyBound,
    /// The AS states a binding to another certificate: left as the AS said it, and logged.
    Conflict,
    /// A member appears twice: ambiguous, left as it is.
    DuplicateKeys,
}

/// True when a JSON object repeats a top-level member: which one counts is
/// up to the reader, so certbound does not patch such a document.
pub fn has_duplicate_keys(body: &[u8]) -> bool {
    serde_json::from_slice::<Outline>(body).map(|o| o.duplicate).unwrap_or(false)
}

/// What one pass over an introspection response finds at its top level.
struct Outline {
    duplicate: bool,
    active: bool,
    cnf: Option<Value>,
    client_id: Option<String>,
}

impl<'de> serde::Deserialize<'de> for Outline {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Outline;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Outline, A::Error> {
                // Keys borrowed from the body (an escaped one is copied) with their FNV-1a hash:
                // a response has a few dozen members, so a list compared hash first beats a
                // hash set and allocates once.
                let mut seen: Vec<(u64, Key<'de>)> = Vec::with_capacity(32);
                let mut out = Outline { duplicate: false, active: false, cnf: None, client_id: None };
                while let Some(k) = map.next_key::<Key<'de>>()? {
                    match k.0.as_ref() {
                        "active" => out.active = map.next_value::<Value>()? == Value::Bool(true),
                        "cnf" => out.cnf = Some(map.next_value::<Value>()?),
                        "client_id" => out.client_id = map.next_value::<Value>()?.as_str().map(str::to_string),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                    let hash = crate::store::fnv1a(k.0.as_bytes());
                    out.duplicate |= seen.iter().any(|(h, seen)| *h == hash && *seen == k);
                    seen.push((hash, k));
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// A member name, borrowed from the body when it has no escapes.
#[derive(PartialEq, Eq)]
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The member WSO2 Identity Server's introspection writes the thumbprint
/// under; resource servers written against WSO2 read it.
pub const WSO2_MEMBER: &str = "x5t#SHA256";

/// Adds the binding to an introspection response body, in one pass over it
/// when (as usual) the AS stated no `cnf` of its own.
pub fn add_cnf(body: &[u8], thumbprint: &Thumbprint) -> Patch {
    add_cnf_members(body, thumbprint, false)
}

/// [`add_cnf`], with WSO2's `x5t#SHA256` beside RFC 8705's `x5t#S256` when `wso2` is set.
pub fn add_cnf_members(body: &[u8], thumbprint: &Thumbprint, wso2: bool) -> Patch {
    // JSON is UTF-8; the one-pass outline skips values without checking them.
    let Ok(text) = std::str::from_utf8(body) else {
        return Patch::Unchanged(Unchanged::NotJsonObject);
    };
    let Ok(outline) = serde_json::from_str::<Outline>(text) else {
        return Patch::Unchanged(Unchanged::NotJsonObject);
    };
    if outline.duplicate {
        return Patch::Unchanged(Unchanged::DuplicateKeys);
    }
    if !outline.active {
        return Patch::Unchanged(Unchanged::Inactive);
    }
    let x5t = thumbprint.x5t_s256();
    match outline.cnf {
        None => {
            // Insert before the closing brace so the AS's own bytes stay as they were.
            let Some(end) = body.iter().rposition(|b| *b == b'}') else {
                return Patch::Unchanged(Unchanged::NotJsonObject);
            };
            let member = if wso2 {
                format!(",\"cnf\":{{\"x5t#S256\":\"{x5t}\",\"{WSO2_MEMBER}\":\"{x5t}\"}}")
            } else {
                format!(",\"cnf\":{{\"x5t#S256\":\"{x5t}\"}}")
            };
            let mut out = Vec::with_capacity(body.len() + member.len());
            out.extend_from_slice(body.get(..end).unwrap_or_default());
            out.extend_from_slice(member.as_bytes());
            out.extend_from_slice(body.get(end..).unwrap_or_default());
            Patch::Patched(out)
        }
        Some(Value::Object(cnf)) => match (cnf.get("x5t#S256"), cnf.get(WSO2_MEMBER)) {
            (Some(s), _) if s.as_str() != Some(x5t.as_str()) => Patch::Unchanged(Unchanged::Conflict),
            (_, Some(w)) if wso2 && w.as_str() != Some(x5t.as_str()) => Patch::Unchanged(Unchanged::Conflict),
            (Some(_), Some(_)) => Patch::Unchanged(Unchanged::AlreadyBound),
            (Some(_), None) if !wso2 => Patch::Unchanged(Unchanged::AlreadyBound),
            _ => merge_cnf(body, x5t, wso2),
        },
        Some(_) => merge_cnf(body, x5t, wso2),
    }
}

/// The AS stated a `cnf` without `x5t#S256`: add the member to it (or replace a non-object).
fn merge_cnf(body: &[u8], x5t: String, wso2: bool) -> Patch {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return Patch::Unchanged(Unchanged::NotJsonObject);
    };
    let mut members = Map::new();
    if wso2 {
        members.insert(WSO2_MEMBER.into(), Value::String(x5t.clone()));
    }
    members.insert("x5t#S256".into(), Value::String(x5t));
    match obj.get_mut("cnf") {
        Some(Value::Object(cnf)) => cnf.extend(members),
        _ => {
            obj.insert("cnf".into(), Value::Object(members));
        }
    }
    Patch::Patched(Value::Object(obj).to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cnf_of(p: Patch) -> Value {
        let Patch::Patched(out) = p else { panic!("not patched: {p:?}") };
        serde_json::from_slice::<Value>(&out).unwrap()["cnf"].clone()
    }

    #[test]
    fn wso2s_member_is_added_beside_rfc_8705s_when_asked() {
        let x5t = t().x5t_s256();
        let c = cnf_of(add_cnf_members(br#"{"active":true}"#, &t(), true));
        assert_eq!(c, serde_json::json!({"x5t#S256": x5t, "x5t#SHA256": x5t}));
        let c = cnf_of(add_cnf_members(br#"{"active":true}"#, &t(), false));
        assert_eq!(c, serde_json::json!({"x5t#S256": x5t}));
        // An AS that already states x5t#S256 gets WSO2's member added beside it.
        let body = format!(r#"{{"active":true,"cnf":{{"x5t#S256":"{x5t}"}}}}"#);
        let c = cnf_of(add_cnf_members(body.as_bytes(), &t(), true));
        assert_eq!(c, serde_json::json!({"x5t#S256": x5t, "x5t#SHA256": x5t}));
        let body = r#"{"active":true,"cnf":{"x5t#SHA256":"other"}}"#;
        assert_eq!(add_cnf_members(body.as_bytes(), &t(), true), Patch::Unchanged(Unchanged::Conflict));
        // Without the WSO2 member asked for, another x5t#SHA256 is left beside the added x5t#S256.
        let c = cnf_of(add_cnf_members(body.as_bytes(), &t(), false));
        assert_eq!(c, serde_json::json!({"x5t#S256": x5t, "x5t#SHA256": "other"}));
        // An AS that states both, as certbound would, is left as it is.
        let both = format!(r#"{{"active":true,"cnf":{{"x5t#S256":"{x5t}","x5t#SHA256":"{x5t}"}}}}"#);
        for wso2 in [true, false] {
            assert_eq!(add_cnf_members(both.as_bytes(), &t(), wso2), Patch::Unchanged(Unchanged::AlreadyBound));
        }
    }

    fn t() -> Thumbprint {
        Thumbprint::of_der(b"client")
    }

    fn patched(body: &str) -> Value {
        match add_cnf(body.as_bytes(), &t()) {
            Patch::Patched(b) => serde_json::from_slice(&b).unwrap(),
            other => panic!("not patched: {other:?}"),
        }
    }

    #[test]
    fn active_bound_token_gains_cnf_x5t_s256() {
        let v = patched(r#"{"active":true,"client_id":"c","exp":5}"#);
        assert_eq!(v["cnf"]["x5t#S256"], t().x5t_s256());
        assert_eq!(v["client_id"], "c");
    }

    #[test]
    fn patch_keeps_the_as_bytes_and_appends_cnf() {
        let body = "{\"active\": true, \"scope\": \"a b\"}\n";
        let Patch::Patched(out) = add_cnf(body.as_bytes(), &t()) else { panic!() };
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("{\"active\": true, \"scope\": \"a b\",\"cnf\""), "{out}");
        assert!(out.ends_with("}\n"));
    }

    #[test]
    fn inactive_token_passes_unchanged() {
        assert_eq!(add_cnf(br#"{"active":false}"#, &t()), Patch::Unchanged(Unchanged::Inactive));
        assert_eq!(add_cnf(br#"{"active":"true"}"#, &t()), Patch::Unchanged(Unchanged::Inactive));
        assert_eq!(add_cnf(br#"{}"#, &t()), Patch::Unchanged(Unchanged::Inactive));
    }

    #[test]
    fn non_json_passes_unchanged() {
        assert_eq!(add_cnf(b"eyJhbGciOi.jwt.response", &t()), Patch::Unchanged(Unchanged::NotJsonObject));
        assert_eq!(add_cnf(b"[true]", &t()), Patch::Unchanged(Unchanged::NotJsonObject));
    }

    #[test]
    fn existing_cnf_object_is_merged() {
        let v = patched(r#"{"active":true,"cnf":{"jkt":"abc"}}"#);
        assert_eq!(v["cnf"]["jkt"], "abc");
        assert_eq!(v["cnf"]["x5t#S256"], t().x5t_s256());
    }

    #[test]
    fn as_stated_binding_is_not_overridden() {
        let same = format!(r#"{{"active":true,"cnf":{{"x5t#S256":"{}"}}}}"#, t().x5t_s256());
        assert_eq!(add_cnf(same.as_bytes(), &t()), Patch::Unchanged(Unchanged::AlreadyBound));
        let other = r#"{"active":true,"cnf":{"x5t#S256":"other"}}"#;
        assert_eq!(add_cnf(other.as_bytes(), &t()), Patch::Unchanged(Unchanged::Conflict));
    }

    #[test]
    fn a_body_that_is_not_utf8_is_not_patched() {
        // Found by `make fuzz` (json_patch): skipped string values were not checked for UTF-8.
        let body = b"{\"active\": true, \"scope\": \"api\xba\xba\"}";
        assert_eq!(add_cnf(body, &t()), Patch::Unchanged(Unchanged::NotJsonObject));
    }

    #[test]
    fn duplicate_members_are_not_patched() {
        assert_eq!(add_cnf(br#"{"active":false,"active":true}"#, &t()), Patch::Unchanged(Unchanged::DuplicateKeys));
        assert!(has_duplicate_keys(br#"{"a":1,"b":{"c":1},"a":2}"#));
        // A name spelled with an escape is the same name.
        assert!(has_duplicate_keys(br#"{"active":true,"\u0061ctive":false}"#));
        assert_eq!(
            add_cnf(br#"{"active":false,"\u0061ctive":true}"#, &t()),
            Patch::Unchanged(Unchanged::DuplicateKeys)
        );
        assert!(!has_duplicate_keys(br#"{"a":{"x":1},"b":{"x":1}}"#));
        assert!(!has_duplicate_keys(b"[1,1]"));
    }

    #[test]
    fn token_parameter_is_read_once() {
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(token_param(form, b"token=abc&token_type_hint=access_token"), Ok(Some("abc".into())));
        assert_eq!(token_param(form, b"token=a&token=b"), Err(ParamError::Repeated { name: "token" }));
        assert_eq!(token_param(form, b"token="), Ok(None));
        assert_eq!(token_param(form, b"x=1"), Ok(None));
        // Parameters certbound does not read are the AS's business.
        assert_eq!(token_param(form, b"token=abc&x=%ff&y=%z"), Ok(Some("abc".into())));
    }

    #[test]
    fn a_token_hidden_from_a_byte_reader_is_refused() {
        let form = Some("application/x-www-form-urlencoded");
        for body in
            [&b"token[]=abc"[..], b"Token=abc", b"+token=abc", b"token%00=abc", b"x=1;token=abc", b"to%1B(Bken=abc"]
        {
            assert_eq!(token_param(form, body), Err(ParamError::Spelling { name: "token" }), "{body:?}");
        }
        let utf16 = Some("application/x-www-form-urlencoded; charset=UTF-16LE");
        assert_eq!(token_param(utf16, b"t\0o\0k\0e\0n\0=\0"), Err(ParamError::Charset("utf-16le".into())));
        assert_eq!(token_param(form, b"\xef\xbb\xbftoken=abc"), Err(ParamError::ByteOrderMark));
    }

    #[test]
    fn an_answer_about_an_unbound_token_names_its_client_when_active() {
        assert_eq!(unbound_answer(br#"{"active":true,"client_id":"c1"}"#), UnboundAnswer::Active(Some("c1".into())));
        assert_eq!(unbound_answer(br#"{"active":true}"#), UnboundAnswer::Active(None));
        assert_eq!(unbound_answer(br#"{"active":false,"client_id":"c1"}"#), UnboundAnswer::Other);
        assert_eq!(unbound_answer(br#"{"active":true,"active":false}"#), UnboundAnswer::Other);
        assert_eq!(unbound_answer(b"not json"), UnboundAnswer::Other);
        assert_eq!(serde_json::from_slice::<Value>(INACTIVE).unwrap(), serde_json::json!({"active": false}));
    }
}
