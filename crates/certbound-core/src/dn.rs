//! Distinguished names (RFC 4514), compared by structure: attribute types
//! case-insensitively (short names and dotted OIDs alike), values after
//! unescaping, RDN order significant (RFC 8705 §2.1.2).

/// One RDN: its attribute type/value pairs (more than one for `a=1+b=2`).
pub type Rdn = Vec<(String, String)>;

/// A DN as a sequence of RDNs in certificate (ASN.1) order: the most
/// significant first (`C`, then `O`, ..., `CN` last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn(pub Vec<Rdn>);

const NAMES: [(&str, &str); 16] = [
    ("2.5.4.3", "cn"),
    ("2.5.4.4", "sn"),
    ("2.5.4.5", "serialnumber"),
    ("2.5.4.6", "c"),
    ("2.5.4.7", "l"),
    ("2.5.4.8", "st"),
    ("2.5.4.9", "street"),
    ("2.5.4.10", "o"),
    ("2.5.4.11", "ou"),
    ("2.5.4.12", "title"),
    ("2.5.4.42", "givenname"),
    ("2.5.4.43", "initials"),
    ("2.5.4.46", "dnqualifier"),
    ("0.9.2342.19200300.100.1.25", "dc"),
    ("0.9.2342.19200300.100.1.1", "uid"),
    ("1.2.840.113549.1.9.1", "emailaddress"),
];

/// The canonical name of an attribute type: its lowercase short name when
/// known, else its dotted OID.
pub fn canonical_type(t: &str) -> String {
    let t = t.trim();
    // RFC 4512 allows an "OID." prefix on dotted types, in any case.
    let t = match t.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("oid.") => t.get(4..).unwrap_or(t),
        _ => t,
    };
    if let Some((_, short)) = NAMES.iter().find(|(oid, _)| *oid == t) {
        return (*short).to_string();
    }
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        "e" | "email" => "emailaddress".into(),
        "s" => "st".into(),
        "gn" => "givenname".into(),
        _ => lower,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnError {
    Empty,
    MissingEquals(String),
    EmptyType,
    /// Not a keystring or a numeric OID (RFC 4514 §3).
    BadType(String),
    BadEscape,
    TrailingBackslash,
}

impl std::fmt::Display for DnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnError::Empty => f.write_str("empty distinguished name"),
            DnError::MissingEquals(c) => write!(f, "{c:?} is not type=value"),
            DnError::EmptyType => f.write_str("an attribute type is empty"),
            DnError::BadType(t) => write!(f, "{t:?} is not an attribute type"),
            DnError::BadEscape => f.write_str("a \\XX escape is not two hex digits"),
            DnError::TrailingBackslash => f.write_str("the string ends in a lone backslash"),
        }
    }
}

/// RFC 4514 §3: `descr` (a letter, then letters, digits, hyphens) or a numeric OID.
fn is_attribute_type(t: &str) -> bool {
    let descr = t.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let numeric = t.split('.').all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    descr || numeric
}

/// Splits on an unescaped separator, keeping escapes for the next step.
fn split_unescaped(s: &str, sep: char) -> Result<Vec<String>, DnError> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars.next().ok_or(DnError::TrailingBackslash)?;
            if let Some(last) = parts.last_mut() {
                last.push('\\');
                last.push(next);
            }
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    Ok(parts)
}

/// Unescapes an RFC 4514 value; unescaped leading and trailing spaces are dropped.
fn unescape(v: &str) -> Result<String, DnError> {
    // Each byte, and whether it came from an escape (escaped spaces are kept).
    let mut bytes: Vec<(u8, bool)> = Vec::with_capacity(v.len());
    let raw = v.as_bytes();
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'\\' {
            let n = *raw.get(i + 1).ok_or(DnError::TrailingBackslash)?;
            if n.is_ascii_hexdigit() {
                let hi = (n as char).to_digit(16).ok_or(DnError::BadEscape)?;
                let lo = raw.get(i + 2).and_then(|c| (*c as char).to_digit(16)).ok_or(DnError::BadEscape)?;
                bytes.push(((hi * 16 + lo) as u8, true));
                i += 3;
            } else {
                bytes.push((n, true));
                i += 2;
            }
        } else {
            bytes.push((b, false));
            i += 1;
        }
    }
    let start = bytes.iter().position(|&(b, esc)| esc || b != b' ').unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&(b, esc)| esc || b != b' ').map(|p| p + 1).unwrap_or(start);
    let kept: Vec<u8> = bytes.get(start..end.max(start)).unwrap_or_default().iter().map(|(b, _)| *b).collect();
    String::from_utf8(kept).map_err(|_| DnError::BadEscape)
}

/// Parses an RFC 4514 string (most significant RDN last, as written) into
/// certificate order.
pub fn parse(s: &str) -> Result<Dn, DnError> {
    if s.trim().is_empty() {
        return Err(DnError::Empty);
    }
    let mut rdns = Vec::new();
    for rdn in split_unescaped(s, ',')? {
        let mut attrs = Vec::new();
        for atv in split_unescaped(&rdn, '+')? {
            let (t, v) = atv.split_once('=').ok_or_else(|| DnError::MissingEquals(atv.trim().to_string()))?;
            let t = canonical_type(t);
            if t.is_empty() {
                return Err(DnError::EmptyType);
            }
            if !is_attribute_type(&t) {
                return Err(DnError::BadType(t));
            }
            attrs.push((t, unescape(v)?));
        }
        attrs.sort();
        rdns.push(attrs);
    }
    rdns.reverse();
    Ok(Dn(rdns))
}

impl Dn {
    /// Builds a DN in certificate order from (type, value) RDNs.
    pub fn from_rdns(rdns: Vec<Rdn>) -> Dn {
        Dn(rdns
            .into_iter()
            .map(|mut r| {
                for (t, _) in r.iter_mut() {
                    *t = canonical_type(t);
                }
                r.sort();
                r
            })
            .collect())
    }

    /// RFC 4514 form (most significant RDN last), for logs.
    pub fn to_rfc4514(&self) -> String {
        self.0
            .iter()
            .rev()
            .map(|rdn| {
                rdn.iter()
                    .map(|(t, v)| format!("{}={}", t.to_ascii_uppercase(), escape(v)))
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn escape(v: &str) -> String {
    let last = v.chars().count().saturating_sub(1);
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
            continue;
        }
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=');
        let edge = (i == 0 && matches!(c, ' ' | '#')) || (i == last && c == ' ');
        if special || edge {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_dn(pairs: &[(&str, &str)]) -> Dn {
        Dn::from_rdns(pairs.iter().map(|(t, v)| vec![(t.to_string(), v.to_string())]).collect())
    }

    #[test]
    fn rfc4514_string_is_read_in_reverse_into_certificate_order() {
        let d = parse("CN=client,O=Example,C=US").unwrap();
        assert_eq!(d, cert_dn(&[("C", "US"), ("O", "Example"), ("CN", "client")]));
    }

    #[test]
    fn spacing_and_attribute_type_case_do_not_matter() {
        let a = parse("CN=client,O=Example Org,C=US").unwrap();
        assert_eq!(parse("cn = client , o=Example Org,  c=US").unwrap(), a);
        assert_eq!(parse("2.5.4.3=client,OID.2.5.4.10=Example Org,C=US").unwrap(), a);
    }

    #[test]
    fn oid_prefix_is_case_insensitive() {
        // Found by `make fuzz` (dn): "oID." was kept as part of the type.
        assert_eq!(parse("oID.2.5.4.10=y").unwrap(), parse("O=y").unwrap());
        let d = parse("2.5.4.3=x,oID.2.5.4.10=y").unwrap();
        assert_eq!(parse(&d.to_rfc4514()).unwrap(), d);
    }

    #[test]
    fn rdn_order_matters() {
        assert_ne!(parse("O=Example,CN=client").unwrap(), parse("CN=client,O=Example").unwrap());
    }

    #[test]
    fn values_are_compared_after_unescaping() {
        let d = parse(r"CN=Doe\, John,O=A\2BB,OU=\#1,L=\ x\ ").unwrap();
        assert_eq!(d, cert_dn(&[("L", " x "), ("OU", "#1"), ("O", "A+B"), ("CN", "Doe, John")]));
    }

    #[test]
    fn values_are_case_sensitive() {
        assert_ne!(parse("CN=Client").unwrap(), parse("CN=client").unwrap());
    }

    #[test]
    fn multi_valued_rdn_order_inside_the_rdn_does_not_matter() {
        assert_eq!(parse("CN=a+UID=b,O=x").unwrap(), parse("UID=b+CN=a,O=x").unwrap());
    }

    #[test]
    fn malformed_dns_are_refused() {
        assert_eq!(parse(""), Err(DnError::Empty));
        assert!(matches!(parse("CN"), Err(DnError::MissingEquals(_))));
        assert_eq!(parse("=x"), Err(DnError::EmptyType));
        // Found by `make fuzz` (dn): "OID." with nothing after it, and control characters in a type.
        assert_eq!(parse("OID.=x"), Err(DnError::EmptyType));
        assert!(matches!(parse("2.5.4.\u{b}3=x"), Err(DnError::BadType(_))));
        assert!(matches!(parse("2.5.f4.3=x"), Err(DnError::BadType(_))));
        assert_eq!(parse("CN=x\\"), Err(DnError::TrailingBackslash));
        assert_eq!(parse("CN=\\4"), Err(DnError::BadEscape));
    }

    #[test]
    fn escaped_backslash_before_a_trailing_space_keeps_the_space_unescaped() {
        // Found by `make fuzz` (dn): `\\ ` is a backslash, then a trailing space that is dropped.
        assert_eq!(parse(r"DC=\\ ").unwrap(), cert_dn(&[("DC", "\\")]));
        assert_eq!(parse(r"DC=\ ").unwrap(), cert_dn(&[("DC", " ")]));
        let d = parse(r"CN=\00x\ +DC=\ ").unwrap();
        assert_eq!(parse(&d.to_rfc4514()).unwrap(), d);
    }

    #[test]
    fn rfc4514_form_round_trips() {
        let d = parse(r"CN=Doe\, John,O=Example,C=US").unwrap();
        assert_eq!(parse(&d.to_rfc4514()).unwrap(), d);
    }
}
