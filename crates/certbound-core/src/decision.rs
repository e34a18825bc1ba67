//! What certbound decided about one request, for Envoy's access logs, later
//! filters and tracing: the decision, the reason (the same names as the
//! counters), the client where known, the `x5t#S256` presented, the flow.
//! Never a token, a secret or a raw header: every value is bounded and printable.

use crate::error::Reason;

/// Which flow judged the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Token,
    Introspection,
    Resource,
    Discovery,
    /// A request to no endpoint certbound acts on (a certificate header problem, a path read two ways).
    Other,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Token => "token",
            Flow::Introspection => "introspection",
            Flow::Resource => "resource",
            Flow::Discovery => "discovery",
            Flow::Other => "other",
        }
    }
}

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Refused with an OAuth or RFC 6750 error (see the reason).
    Refused,
    /// A report-only route would have refused it (see the reason); it went on.
    Reported,
    /// Token endpoint: the client authenticated; the request went on to the AS.
    Authenticated,
    /// Token endpoint: the tokens of the answer are bound and released.
    Bound,
    /// Token endpoint: a public client without a certificate got unbound tokens.
    Unbound,
    /// Introspection or metadata: the answer gained the RFC 8705 members.
    Patched,
    /// Introspection or metadata: the answer passed as the AS wrote it.
    Unpatched,
    /// Introspection: an active token of an always-bound client, with no binding, answered inactive.
    Deactivated,
    /// Resource: a bound token came with its certificate.
    Allowed,
    /// Resource: the route's policy let an unbound token, no token or another scheme through.
    AllowedUnbound,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Refused => "refused",
            Outcome::Reported => "reported",
            Outcome::Authenticated => "authenticated",
            Outcome::Bound => "bound",
            Outcome::Unbound => "unbound",
            Outcome::Patched => "patched",
            Outcome::Unpatched => "unpatched",
            Outcome::Deactivated => "deactivated",
            Outcome::Allowed => "allowed",
            Outcome::AllowedUnbound => "allowed_unbound",
        }
    }
}

/// One decision about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub flow: Flow,
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    /// The client, printable and at most 64 characters.
    pub client_id: Option<String>,
    /// `x5t#S256` of the certificate the request presented.
    pub x5t: Option<String>,
}

/// The namespace of Envoy's dynamic metadata (and the filter state prefix of the `.wasm`).
pub const NAMESPACE: &str = "certbound";

impl Decision {
    /// The members written, in this order, those with a value only.
    pub fn fields(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("decision", self.outcome.as_str()), ("flow", self.flow.as_str())];
        if let Some(r) = self.reason {
            out.push(("reason", r.as_str()));
        }
        if let Some(c) = &self.client_id {
            out.push(("client_id", c.as_str()));
        }
        if let Some(t) = &self.x5t {
            out.push(("x5t#S256", t.as_str()));
        }
        out
    }

    /// The decision as one JSON object (the `.wasm` writes it as one filter state value), members in
    /// key order. Written by hand: it is on every request's path, and a `serde_json::Value` built and
    /// printed for five short strings cost more than the rest of a bound-token hit.
    pub fn json(&self) -> String {
        let mut out = String::with_capacity(160);
        let mut member = |key: &str, value: &str| {
            out.push(if out.is_empty() { '{' } else { ',' });
            out.push('"');
            out.push_str(key);
            out.push_str("\":\"");
            json_escape_into(&mut out, value);
            out.push('"');
        };
        // Key order, as the serde_json map this replaced printed them.
        if let Some(c) = &self.client_id {
            member("client_id", c);
        }
        member("decision", self.outcome.as_str());
        member("flow", self.flow.as_str());
        if let Some(r) = self.reason {
            member("reason", r.as_str());
        }
        if let Some(t) = &self.x5t {
            member("x5t#S256", t);
        }
        out.push('}');
        out
    }
}

/// A JSON string's contents: `"`, `\\` and control characters escaped, as serde_json writes them.
fn json_escape_into(out: &mut String, value: &str) {
    let mut rest = value;
    // The characters escaped are ASCII, so a byte scan finds them (and never inside a multi-byte character).
    while let Some(at) = rest.bytes().position(|b| b == b'"' || b == b'\\' || b < b' ') {
        out.push_str(&rest[..at]);
        let c = rest[at..].chars().next().unwrap_or(' ');
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            other => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = other as u32 as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[(b >> 4) & 0xf]));
                out.push(char::from(HEX[b & 0xf]));
            }
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_writes_only_what_is_known_and_never_more() {
        let d = Decision {
            flow: Flow::Resource,
            outcome: Outcome::Refused,
            reason: Some(Reason::TokenCertificateMismatch),
            client_id: None,
            x5t: Some("vnnDS1JIGOQBo13WC70v1ejjb6H8_Wt8EioSG-xnwCk".into()),
        };
        assert_eq!(
            d.fields(),
            vec![
                ("decision", "refused"),
                ("flow", "resource"),
                ("reason", "token_certificate_mismatch"),
                ("x5t#S256", "vnnDS1JIGOQBo13WC70v1ejjb6H8_Wt8EioSG-xnwCk")
            ]
        );
        assert_eq!(
            d.json(),
            r#"{"decision":"refused","flow":"resource","reason":"token_certificate_mismatch","x5t#S256":"vnnDS1JIGOQBo13WC70v1ejjb6H8_Wt8EioSG-xnwCk"}"#
        );
        let bound = Decision {
            flow: Flow::Token,
            outcome: Outcome::Bound,
            reason: None,
            client_id: Some("c\"1".into()),
            x5t: None,
        };
        assert_eq!(bound.json(), r#"{"client_id":"c\"1","decision":"bound","flow":"token"}"#);
    }

    #[test]
    fn the_hand_written_json_is_what_serde_json_writes() {
        for client in ["plain", "c\"1", "back\\slash", "ctl\u{1}\u{1f}\n\r\t\u{8}\u{c}", "é ü ✓ 𝄞", "", "\u{7f}"]
        {
            for reason in [None, Some(Reason::TokenCertificateMismatch)] {
                let d = Decision {
                    flow: Flow::Introspection,
                    outcome: Outcome::Patched,
                    reason,
                    client_id: Some(client.into()),
                    x5t: Some(format!("x{client}")),
                };
                let map: serde_json::Map<String, serde_json::Value> = d
                    .fields()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                    .collect();
                assert_eq!(d.json(), serde_json::Value::Object(map).to_string(), "{client:?}");
            }
        }
    }
}
