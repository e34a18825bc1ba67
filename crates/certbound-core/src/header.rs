//! The one rule for header names in certbound's configuration, and how a
//! header's bytes from the host become text.

/// A header name or value as text: bytes that are not UTF-8 become U+FFFD, so they never match
/// anything certbound accepts. One copy when the bytes are UTF-8 (every request's case), not a lossy
/// view and then a copy. Both shells read every header through it.
pub fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Headers HTTP or the proxy give their own meaning: certbound never reads a
/// certificate from one, nor writes a thumbprint or certificate into one.
const RESERVED: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "cookie",
];

/// A header name certbound may be configured with: lowercase letters,
/// digits, `-`, `_`, `.` (no pseudo-header), and none of the reserved ones.
pub fn is_configurable(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && !RESERVED.contains(&name)
}

/// The error message for a name [`is_configurable`] refuses.
pub fn refusal(name: &str) -> String {
    format!("{name:?} must be a lowercase header name other than {}", RESERVED.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurable_header_names_are_lowercase_and_not_reserved() {
        for ok in ["x-certbound-x5t", "x-wso2-mtls-cert", "client-cert", "x_a.b2"] {
            assert!(is_configurable(ok), "{ok}");
        }
        for bad in ["", "X-Cert", ":path", "host", "authorization", "content-length", "cookie", "x cert", "x-é"] {
            assert!(!is_configurable(bad), "{bad}");
        }
    }

    #[test]
    fn header_bytes_become_text_with_what_is_not_utf8_replaced() {
        assert_eq!(text(b"Bearer abc"), "Bearer abc");
        assert_eq!(text("é✓".as_bytes()), "é✓");
        assert_eq!(text(b"a\xffb\xc3"), "a\u{fffd}b\u{fffd}");
        assert_eq!(text(b""), "");
    }
}
