//! One token, one key. A binding is stored and looked up under a hash of the
//! token (never the token), and every spelling that a verifier accepts as the
//! same token must find the same binding:
//!
//! - a JWS or JWE in compact serialization (3 or 5 `.`-separated segments
//!   whose first decodes to a JSON object, the JOSE header) is keyed on its
//!   decoded segments. Decoders tolerate padding, the unused bits of a
//!   segment's last character, a trailing character too many, the standard
//!   alphabet's `+` and `/`, and characters outside the alphabet (Node's
//!   `Buffer`, Python's `urlsafe_b64decode` skip them); all are made canonical
//!   by decoding the way the most lenient decoder does. A `=` followed by more
//!   data inside a segment is read one way by Node (it stops there) and
//!   another by Python (it goes on): such a token is refused, never keyed;
//! - any other token is keyed on its text without trailing `=` (a resource
//!   server that decodes tokens reads `<token>=` as `<token>`).
//!
//! Before JOSE tokens were keyed on their segments, they were keyed like any
//! other token: [`TokenKeys::legacy`] is that older key, looked up when the
//! new one finds nothing, so bindings stored before the change are found until they expire.

use crate::keys::BINDING_PREFIX;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Where a token's binding is, and where an older certbound stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKeys {
    /// The key bindings are stored under.
    pub key: String,
    /// The key of the same token before JOSE tokens were keyed on their
    /// decoded segments, when it differs: looked up when `key` finds nothing.
    pub legacy: Option<String>,
}

/// A token whose spelling verifiers could read as different tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmbiguousToken;

impl std::fmt::Display for AmbiguousToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the token has padding inside a segment, which decoders read differently")
    }
}

fn key_of(hash: impl AsRef<[u8]>) -> String {
    let mut key = String::with_capacity(BINDING_PREFIX.len() + 43);
    key.push_str(BINDING_PREFIX);
    key.push_str(&URL_SAFE_NO_PAD.encode(hash));
    key
}

/// The key of a token that is not a JOSE compact serialization (and the
/// legacy key of one that is): SHA-256 of its text without trailing `=`.
fn text_key(token: &str) -> String {
    key_of(Sha256::digest(token.trim_end_matches('=').as_bytes()))
}

/// The keys of a token; `Err` for a spelling no single reading can key.
pub fn keys_for_token(token: &str) -> Result<TokenKeys, AmbiguousToken> {
    match jose_segments(token)? {
        None => Ok(TokenKeys { key: text_key(token), legacy: None }),
        Some(segments) => {
            let mut h = Sha256::new();
            // Domain-separated from text keys (tokens never hold a NUL), each segment length-prefixed.
            h.update(b"\0jose\0");
            for s in &segments {
                h.update((s.len() as u64).to_be_bytes());
                h.update(s);
            }
            Ok(TokenKeys { key: key_of(h.finalize()), legacy: Some(text_key(token)) })
        }
    }
}

/// The key bindings of `token` are stored under (an ambiguous token has none: it is never bound).
pub fn key_for_token(token: &str) -> Option<String> {
    keys_for_token(token).ok().map(|k| k.key)
}

/// The value of a base64 character in either alphabet (RFC 4648 §4, §5).
fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' | b'+' => Some(62),
        b'_' | b'/' => Some(63),
        _ => None,
    }
}

/// One segment decoded as the most lenient decoder reads it: characters
/// outside both alphabets skipped, bits that do not fill a byte dropped.
/// `Err` when a `=` is followed by data (decoders disagree on where it ends).
fn decode_segment(segment: &str) -> Result<Vec<u8>, AmbiguousToken> {
    let mut out = Vec::with_capacity(segment.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut padded = false;
    for c in segment.bytes() {
        if c == b'=' {
            padded = true;
            continue;
        }
        let Some(v) = sextet(c) else { continue };
        if padded {
            return Err(AmbiguousToken);
        }
        acc = acc * 64 + u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// A segment decoded as leniently as any decoder reads it, `=` skipped wherever it is.
pub fn decode_lenient(segment: &str) -> Vec<u8> {
    decode_segment(&segment.replace('=', "")).unwrap_or_default()
}

/// The decoded segments of a JWS (3) or JWE (5) compact serialization, or
/// `None` for a token that is not one (its first segment is not a JSON object).
pub fn jose_segments(token: &str) -> Result<Option<Vec<Vec<u8>>>, AmbiguousToken> {
    let n = token.split('.').count();
    if n != 3 && n != 5 {
        return Ok(None);
    }
    let header = token.split('.').next().unwrap_or_default();
    // Read the header both ways a `=` inside it can be read before deciding it is JOSE.
    let up_to_pad = header.split('=').next().unwrap_or_default();
    let looks_like_header = |s: &str| {
        let h = decode_segment(s).unwrap_or_default();
        let h = h.trim_ascii();
        h.first() == Some(&b'{') && h.last() == Some(&b'}')
    };
    if !looks_like_header(&header.replace('=', "")) && !looks_like_header(up_to_pad) {
        return Ok(None);
    }
    token.split('.').map(decode_segment).collect::<Result<Vec<_>, _>>().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    /// A JWS as an AS writes it: base64url, no padding.
    fn jws(sig: &[u8]) -> String {
        format!("{}.{}.{}", b64(br#"{"alg":"ES256","typ":"at+jwt"}"#), b64(br#"{"sub":"c1","exp":1}"#), b64(sig))
    }

    fn key(t: &str) -> String {
        keys_for_token(t).unwrap().key
    }

    #[test]
    fn a_key_is_a_hash_of_the_token_never_the_token() {
        for t in ["secret-token-value", &jws(b"sig-bytes")] {
            let k = key(t);
            assert!(k.starts_with(BINDING_PREFIX));
            assert_eq!(k.len(), BINDING_PREFIX.len() + 43);
            assert!(!k.contains(t));
            assert!(!k.contains(t.rsplit('.').next().unwrap_or_default()));
        }
    }

    #[test]
    fn an_opaque_token_is_keyed_on_its_text_without_trailing_padding() {
        assert_eq!(key("abc=="), key("abc"));
        assert_eq!(key("abc="), key("abc"));
        assert_ne!(key("ab=c"), key("abc"));
        assert_ne!(key("abd"), key("abc"));
        assert_eq!(keys_for_token("abc").unwrap().legacy, None);
        // Three segments whose first is not a JOSE header: an opaque token.
        assert_eq!(jose_segments("abc.def.ghi"), Ok(None));
        // A JOSE header is a JSON object: opening and closing brace both.
        for first in [&b"{abc"[..], b"abc}", b"{}"] {
            let t = format!("{}.x.y", b64(first));
            assert_eq!(keys_for_token(&t).unwrap().legacy.is_some(), first == b"{}", "{first:?}");
        }
        assert_ne!(key("abc.def.ghi"), key("abc.def.ghj"));
    }

    #[test]
    fn spellings_of_a_jws_that_decode_alike_share_one_key() {
        // 2 signature bytes: 3 characters, 2 unused bits in the last one.
        let t = jws(&[0xfb, 0xf0]);
        let sig = t.rsplit('.').next().unwrap().to_string();
        assert_eq!(sig, "-_A");
        let head = t.strip_suffix(&sig).unwrap();
        for other in [
            format!("{head}-_B"),   // unused bits changed
            format!("{head}-_D"),   // both unused bits
            format!("{head}-_A="),  // padding
            format!("{head}-_A=="), // more padding
            format!("{head}+/A"),   // the standard alphabet
            format!("{head}-~_A"),  // a character outside both alphabets, skipped by lenient decoders
            format!("{head}-_A=~"), // junk after the padding
        ] {
            assert_eq!(key(&other), key(&t), "{other}");
        }
        assert_ne!(key(&format!("{head}-_Q")), key(&t), "a used bit changed is another token");
        // A character too many (4k+1 characters): 6 bits that fill no byte, dropped by Node.
        let t3 = jws(b"abc");
        assert_eq!(key(&format!("{t3}Q")), key(&t3));
    }

    #[test]
    fn a_jwe_is_keyed_on_its_five_decoded_segments() {
        let h = b64(br#"{"alg":"dir","enc":"A256GCM"}"#);
        let t = format!("{h}..{}.{}.{}", b64(b"iv-12-bytes!"), b64(b"ciphertext"), b64(b"tag-16-bytes-ok!"));
        let padded = format!("{h}..{}=.{}==.{}", b64(b"iv-12-bytes!"), b64(b"ciphertext"), b64(b"tag-16-bytes-ok!"));
        assert_eq!(jose_segments(&t).unwrap().map(|s| s.len()), Some(5));
        assert_eq!(key(&padded), key(&t));
        let other_iv = format!("{h}..{}.{}.{}", b64(b"iv-12-bytes?"), b64(b"ciphertext"), b64(b"tag-16-bytes-ok!"));
        assert_ne!(key(&other_iv), key(&t));
    }

    #[test]
    fn padding_inside_a_segment_is_refused_never_keyed() {
        let t = jws(b"abcdef");
        let sig = t.rsplit('.').next().unwrap();
        let (a, b) = sig.split_at(4);
        // Node stops at '=', Python goes on: two readings of one spelling.
        assert_eq!(keys_for_token(&t.replace(sig, &format!("{a}={b}"))), Err(AmbiguousToken));
        assert_eq!(keys_for_token(&t.replace(sig, &format!("{a}=={b}"))), Err(AmbiguousToken));
        assert_eq!(key_for_token(&t.replace(sig, &format!("{a}=={b}"))), None);
        // In a header too, whichever way it is read.
        let head = t.split('.').next().unwrap();
        let (x, y) = head.split_at(8);
        assert_eq!(keys_for_token(&t.replacen(head, &format!("{x}={y}"), 1)), Err(AmbiguousToken));
        // An opaque token may hold '=' anywhere: keyed on its text.
        assert!(keys_for_token("a=b").is_ok());
    }

    #[test]
    fn an_ambiguous_token_says_why() {
        assert_eq!(
            AmbiguousToken.to_string(),
            "the token has padding inside a segment, which decoders read differently"
        );
    }

    #[test]
    fn a_jose_token_keeps_its_older_key_for_lookups() {
        let t = jws(b"sig");
        let keys = keys_for_token(&t).unwrap();
        assert_eq!(keys.legacy, Some(text_key(&t)));
        assert_ne!(keys.legacy.as_deref(), Some(keys.key.as_str()));
    }

    /// xorshift64*: a fixed sequence, so the property runs are repeatable.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn bytes(&mut self, max: usize) -> Vec<u8> {
            let n = (self.next() % (max as u64 + 1)) as usize;
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Respells a base64url segment the ways lenient decoders accept.
    fn respell(seg: &str, rng: &mut Rng) -> String {
        let mut out = String::new();
        let chars: Vec<char> = seg.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if rng.next() % 5 == 0 {
                out.push(['~', '!', ' ', '*', '\t'][(rng.next() % 5) as usize]);
            }
            let c = match c {
                '-' if rng.next() % 2 == 0 => '+',
                '_' if rng.next() % 2 == 0 => '/',
                c => *c,
            };
            if i + 1 == chars.len() && seg.len() % 4 != 0 {
                // Flip the unused low bits of the last character.
                let used = [0, 0, 2, 4][seg.len() % 4];
                let v = sextet(c as u8).unwrap_or(0);
                let flipped = (v & !((1 << (6 - used)) - 1)) | (rng.next() as u8 & ((1 << (6 - used)) - 1));
                out.push(URL_SAFE_NO_PAD.encode([flipped << 2]).chars().next().unwrap_or('A'));
            } else {
                out.push(c);
            }
        }
        out.push_str(&"=".repeat((rng.next() % 3) as usize));
        out
    }

    #[test]
    fn property_respellings_share_a_key_and_distinct_tokens_never_do() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut seen = std::collections::HashMap::new();
        for _ in 0..2000 {
            let header = br#"{"alg":"RS256"}"#.to_vec();
            let (payload, sig) = (rng.bytes(40), rng.bytes(40));
            let canonical = format!("{}.{}.{}", b64(&header), b64(&payload), b64(&sig));
            let k = key(&canonical);
            for _ in 0..3 {
                let spelled: Vec<String> = canonical.split('.').map(|s| respell(s, &mut rng)).collect();
                let spelled = spelled.join(".");
                assert_eq!(key(&spelled), k, "{canonical} respelled {spelled}");
            }
            if let Some(prev) = seen.insert(k.clone(), (payload.clone(), sig.clone())) {
                assert_eq!(prev, (payload, sig), "two different tokens share a key");
            }
        }
    }
}
