//! Which parameters a query string or a form body carries, read the way every
//! server stack behind certbound could read them. One rule, used by every place
//! that judges a query or a form body (the token and introspection endpoints,
//! protected routes): a parameter name counts as each name that PHP, Java
//! servlets (Tomcat, Jetty), Node (`qs`, `URLSearchParams`, `querystring`),
//! Python (`urllib`, Werkzeug, Django), Go `net/url` and Ruby Rack decode it to:
//!
//! - percent-decoding with `+` as a space, leniently (an invalid `%` kept as it
//!   is), repeated (a name decoded twice), and IIS's `%uXXXX`;
//! - PHP's `php_register_variable_ex`: leading spaces dropped, the name cut at
//!   a NUL byte, space and `.` read as `_`, `a[...]` read as `a`, and an
//!   unclosed `[` read as `_`;
//! - brackets (`qs`, Rack, PHP: `a[]`, `a[x]`, `[a]`) and `qs`'s `allowDots`
//!   (`a.x`, `.a`) naming `a`;
//! - a charset decoder that drops ISO-2022 escape sequences and shift codes,
//!   or the NUL bytes of UTF-16 and UTF-32;
//! - surrounding whitespace (and a byte-order mark) trimmed;
//! - case, as frameworks that fold it (ASP.NET, Java's `equalsIgnoreCase`) do,
//!   including the non-ASCII letters that fold to ASCII (`K` KELVIN SIGN, `ſ`, `ı`, `İ`).
//!
//! Separators are `&`, and `;` as Rack 2 and older Python and Go split on.
//! A parameter certbound reads (a *judged* name) must be spelled so that every
//! stack reads the same name and value, else the request is refused; a name
//! certbound refuses outright (`access_token` on a protected route) is
//! refused under every reading. Bodies whose charset is not ASCII-transparent
//! are refused ([`check_charset`]), as is a byte-order mark ([`check_bom`]).

use crate::error::Reason;

/// Why a query or a form body cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// A name that some server reads as the judged `name`, spelled otherwise.
    Spelling { name: &'static str },
    /// A judged name present more than once (RFC 6749 §3.2).
    Repeated { name: &'static str },
    /// A judged value that servers could read differently, and why.
    BadValue { name: &'static str, why: &'static str },
    /// A `charset` that is not ASCII-transparent (its label, printable).
    Charset(String),
    /// The body starts with a byte-order mark.
    ByteOrderMark,
}

impl ParamError {
    /// The reason counted and logged.
    pub fn reason(&self) -> Reason {
        match self {
            ParamError::Spelling { .. } => Reason::AmbiguousParameter,
            ParamError::Repeated { .. } => Reason::BadRequest,
            ParamError::BadValue { .. } => Reason::MalformedParameter,
            ParamError::Charset(_) | ParamError::ByteOrderMark => Reason::UnsupportedCharset,
        }
    }
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamError::Spelling { name } => {
                write!(f, "a parameter name is read as {name} by some servers; send it as {name}, once")
            }
            ParamError::Repeated { name } => write!(f, "parameter {name} is included more than once"),
            ParamError::BadValue { name, why } => write!(f, "parameter {name} {why}"),
            ParamError::Charset(label) => {
                write!(
                    f,
                    "charset {label:?} is not accepted: use UTF-8, US-ASCII or an ISO-8859 / Windows-125x charset"
                )
            }
            ParamError::ByteOrderMark => f.write_str("the body starts with a byte-order mark"),
        }
    }
}

/// One `name=value` of a query or body, as sent (not decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Raw<'a> {
    name: &'a [u8],
    value: &'a [u8],
}

fn split_pair(piece: &[u8]) -> Raw<'_> {
    match piece.iter().position(|b| *b == b'=') {
        Some(i) => Raw { name: piece.get(..i).unwrap_or_default(), value: piece.get(i + 1..).unwrap_or_default() },
        None => Raw { name: piece, value: &[] },
    }
}

/// The `&`-separated pieces, empty ones skipped.
fn amp_pieces(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'&').filter(|p| !p.is_empty())
}

/// The names a piece yields when `;` separates too (Rack 2, older Python and Go).
fn semicolon_names(piece: &[u8]) -> impl Iterator<Item = &[u8]> {
    piece.split(|b| *b == b';').filter(|p| !p.is_empty()).map(|p| split_pair(p).name)
}

/// Every name a server could read in `data`: the `&`-separated names, and
/// when a piece holds a `;`, the names it splits into.
fn all_names(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    amp_pieces(data).flat_map(|piece| {
        let whole = std::iter::once(split_pair(piece).name);
        let more = piece.contains(&b';').then(|| semicolon_names(piece));
        whole.chain(more.into_iter().flatten())
    })
}

/// The first of `names` that some parameter of `data` is read as, by any
/// server (see the module's rule). `names` are lowercase ASCII.
pub fn first_reading<'n>(data: &[u8], names: &[&'n str]) -> Option<&'n str> {
    all_names(data).find_map(|raw| reads_as(raw, names))
}

/// The value of each judged name found, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judged {
    found: Vec<(&'static str, String)>,
}

impl Judged {
    /// The value of `name` (`Some("")` when sent empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.found.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Reads the `judged` parameters of a query or form body so that every
/// server reads the same: each is spelled exactly as its name (after plain
/// percent-decoding), at most once, and no other spelling or `;`-piece is read
/// as it; its value decodes strictly to printable ASCII (RFC 6749 Appendix A:
/// `VSCHAR`) without surrounding spaces or a `;`. Names not judged are not
/// read (their encoding, charset and repeats are the server's business).
pub fn judge(data: &[u8], judged: &[&'static str]) -> Result<Judged, ParamError> {
    let mut out = Judged::default();
    for piece in amp_pieces(data) {
        let raw = split_pair(piece);
        if let Some(semi) = piece.iter().position(|b| *b == b';') {
            // A judged name behind a ';' is read by servers that split there
            // (the first piece is this pair's own name when '=' comes first).
            let own = usize::from(piece.iter().position(|b| *b == b'=').is_some_and(|eq| eq < semi));
            if let Some(name) = semicolon_names(piece).skip(own).find_map(|n| reads_as(n, judged)) {
                return Err(ParamError::Spelling { name });
            }
        }
        let Some(name) = reads_as(raw.name, judged) else { continue };
        if strict_decode(raw.name).as_deref() != Some(name.as_bytes()) {
            return Err(ParamError::Spelling { name });
        }
        if out.contains(name) {
            return Err(ParamError::Repeated { name });
        }
        out.found.push((name, judged_value(name, raw.value)?));
    }
    Ok(out)
}

/// A judged value: strict percent-decoding, printable ASCII, no surrounding
/// spaces, no `;` (a separator to some servers).
fn judged_value(name: &'static str, raw: &[u8]) -> Result<String, ParamError> {
    if raw.contains(&b';') {
        return Err(ParamError::BadValue { name, why: "contains ';', which some servers read as a separator" });
    }
    let bad = |why| ParamError::BadValue { name, why };
    let decoded = strict_decode(raw).ok_or(bad("is not valid percent-encoding"))?;
    if !decoded.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(bad("holds characters outside printable ASCII, which servers decode by different charsets"));
    }
    if decoded.first() == Some(&b' ') || decoded.last() == Some(&b' ') {
        return Err(bad("begins or ends with a space"));
    }
    // Printable ASCII is UTF-8.
    String::from_utf8(decoded).map_err(|_| bad("is not text"))
}

/// Form decoding as every server agrees on it: `+` a space, `%XX` a byte; an
/// invalid `%` is `None` (servers then keep it, skip the pair or fail).
pub fn strict_decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(hex_byte(raw.get(i + 1..i + 3)?)?);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    match two {
        [h, l] => Some(hex(*h)? * 16 + hex(*l)?),
        _ => None,
    }
}

/// Percent-decoding as lenient decoders do it: `+` a space, a valid `%XX` a
/// byte, anything else kept; with `percent_u`, IIS's `%uXXXX` too.
fn lenient_decode(raw: &[u8], percent_u: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                if let Some(v) = raw.get(i + 1..i + 3).and_then(hex_byte) {
                    out.push(v);
                    i += 3;
                    continue;
                }
                let u = raw.get(i + 1).is_some_and(|c| c.eq_ignore_ascii_case(&b'u'));
                let code = raw.get(i + 2..i + 6).and_then(|h| {
                    let hi = hex_byte(h.get(..2)?)?;
                    let lo = hex_byte(h.get(2..)?)?;
                    char::from_u32(u32::from_be_bytes([0, 0, hi, lo]))
                });
                match code {
                    Some(c) if percent_u && u => {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        i += 6;
                        continue;
                    }
                    _ => out.push(b),
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// The decodings of a raw name: once, until stable (a server behind a
/// decoding proxy, or one that decodes twice), and with `%uXXXX`.
fn decodings(raw: &[u8]) -> Vec<Vec<u8>> {
    let once = lenient_decode(raw, false);
    let mut again = once.clone();
    for _ in 0..4 {
        let next = lenient_decode(&again, false);
        if next == again {
            break;
        }
        again = next;
    }
    let iis = lenient_decode(raw, true);
    let mut out = vec![once];
    for other in [again, iis] {
        if !out.contains(&other) {
            out.push(other);
        }
    }
    out
}

/// What a charset decoder reads that a byte reader does not: ISO-2022 escape
/// sequences (ESC, intermediates 0x20-0x2F, a final byte) and SO/SI shifts
/// produce no characters.
fn drop_shifts(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            0x1b => {
                i += 1;
                while s.get(i).is_some_and(|c| (0x20..=0x2f).contains(c)) {
                    i += 1;
                }
                i += 1; // the final byte
                continue;
            }
            0x0e | 0x0f => {}
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// UTF-16 or UTF-32 text of ASCII letters, read byte by byte: the letters with NULs between.
fn drop_nuls(s: &[u8]) -> Vec<u8> {
    s.iter().copied().filter(|b| *b != 0).collect()
}

/// Whitespace and a byte-order mark around a name, trimmed; and a leading
/// `?`, which `URLSearchParams` drops from the start of what it is given (a
/// query taken with its `?`, or after a second one).
fn trim(s: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c | 0);
    let s = s.strip_prefix(b"?").unwrap_or(s);
    let s = s.strip_prefix(b"\xef\xbb\xbf").unwrap_or(s);
    let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

fn cut_at(s: &[u8], stop: impl Fn(&u8) -> bool) -> &[u8] {
    s.get(..s.iter().position(stop).unwrap_or(s.len())).unwrap_or_default()
}

/// PHP's `php_register_variable_ex`: leading spaces dropped, the name ends at
/// NUL, space and `.` become `_`; `a[...]` is the array `a`; an unclosed `[`
/// becomes `_`, and so do the spaces, dots and brackets after it (PHP 7 keeps
/// those; a name that matches either way matches this way).
fn php(s: &[u8]) -> Vec<u8> {
    let s = cut_at(s, |b| *b == 0);
    let start = s.iter().position(|b| *b != b' ').unwrap_or(s.len());
    let s = s.get(start..).unwrap_or_default();
    let underscored = |part: &[u8]| -> Vec<u8> {
        part.iter().map(|b| if matches!(b, b' ' | b'.' | b'[') { b'_' } else { *b }).collect()
    };
    match s.iter().position(|b| *b == b'[') {
        Some(open) if s.get(open..).is_some_and(|rest| rest.contains(&b']')) => {
            underscored(s.get(..open).unwrap_or_default())
        }
        _ => underscored(s),
    }
}

/// Nested names as Rack 2 and `qs` read them (`qs` with `allowDots` reads
/// `.x` as `[x]`): leading brackets and dots dropped, the name ends at the
/// next bracket or dot. (Rack alone stops at brackets only: a name that
/// matches its way matches this way.)
fn nested(s: &[u8]) -> &[u8] {
    let sep = |b: &u8| matches!(b, b'[' | b']' | b'.');
    let start = s.iter().position(|b| !sep(b)).unwrap_or(s.len());
    cut_at(s.get(start..).unwrap_or_default(), sep)
}

/// True when `candidate` is `name` once case is folded, as a framework that
/// ignores case folds it (ASCII, and the four non-ASCII letters that fold to ASCII).
fn folds_to(candidate: &[u8], name: &str) -> bool {
    let mut want = name.bytes();
    let mut i = 0;
    while let Some(&b) = candidate.get(i) {
        let (c, len) = match (b, candidate.get(i + 1), candidate.get(i + 2)) {
            (0xe2, Some(0x84), Some(0xaa)) => (b'k', 3), // U+212A KELVIN SIGN
            (0xc5, Some(0xbf), _) => (b's', 2),          // U+017F LATIN SMALL LETTER LONG S
            (0xc4, Some(0xb0 | 0xb1), _) => (b'i', 2),   // U+0130, U+0131 (dotted and dotless I)
            _ => (b.to_ascii_lowercase(), 1),
        };
        if want.next() != Some(c) {
            return false;
        }
        i += len;
    }
    want.next().is_none()
}

/// True when a raw name holds nothing any reading changes: letters, digits, `_` and `-`.
fn is_plain(raw: &[u8]) -> bool {
    raw.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

/// The first of `names` (lowercase ASCII) that some server reads the raw
/// name `raw` as.
pub fn reads_as<'n>(raw: &[u8], names: &[&'n str]) -> Option<&'n str> {
    let hit = |candidate: &[u8]| names.iter().copied().find(|n| folds_to(candidate, n));
    if is_plain(raw) {
        return hit(raw);
    }
    // Each reading is the weakest that covers the stacks it stands for: a
    // name PHP 7, Rack or a plain bracket cut reads as a judged name, the
    // readings below read as it too (so they are not listed apart).
    for decoded in decodings(raw) {
        for p in [trim(&decoded).to_vec(), trim(&drop_shifts(&decoded)).to_vec(), drop_nuls(&decoded)] {
            let found = hit(&p).or_else(|| hit(&php(&p))).or_else(|| hit(nested(&p)));
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

/// Charsets whose bytes 0x00-0x7F are ASCII (so a name in them reads as a byte
/// reader reads it): UTF-8, US-ASCII, ISO-8859-n, Windows-125x, by their
/// common labels. Compared after dropping case, `-`, `_` and spaces.
fn is_ascii_transparent(label: &str) -> bool {
    let l: String = label.chars().filter(|c| !matches!(c, '-' | '_' | ' ')).collect::<String>().to_ascii_lowercase();
    let numbered = |prefix: &str, range: std::ops::RangeInclusive<u32>| {
        l.strip_prefix(prefix).and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| range.contains(&n))
    };
    matches!(l.as_str(), "utf8" | "usascii" | "ascii" | "cp819" | "ibm819" | "csisolatin1")
        || numbered("iso8859", 1..=16)
        || numbered("latin", 1..=10)
        || numbered("windows", 1250..=1258)
        || numbered("cp", 1250..=1258)
}

/// Refuses a `Content-Type` naming a charset that is not ASCII-transparent
/// (UTF-16, UTF-32, EBCDIC, ISO-2022, UTF-7, Shift_JIS, ...): a servlet
/// container or Django decodes the body with it and reads names certbound
/// does not. Every `charset=` anywhere in the value counts (servers differ
/// in which one they take); none means the server's default (ASCII-transparent).
pub fn check_charset(content_type: Option<&str>) -> Result<(), ParamError> {
    let Some(ct) = content_type else { return Ok(()) };
    let lower = ct.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower.get(from..).and_then(|s| s.find("charset")) {
        let after = lower.get(from + at + "charset".len()..).unwrap_or_default();
        from += at + "charset".len();
        let Some(value) = after.trim_start().strip_prefix('=') else { continue };
        let value = value.trim_start().trim_start_matches(['"', '\'']);
        let label = cut_at(value.as_bytes(), |b| matches!(b, b'"' | b'\'' | b';' | b',' | b' ' | b'\t'));
        let label = String::from_utf8_lossy(label);
        if !is_ascii_transparent(&label) {
            return Err(ParamError::Charset(label.chars().filter(|c| !c.is_control()).take(40).collect()));
        }
    }
    Ok(())
}

/// Refuses a body that starts with a byte-order mark (UTF-8, UTF-16 or
/// UTF-32): a decoder that honours it reads another charset than the one declared.
pub fn check_bom(body: &[u8]) -> Result<(), ParamError> {
    let boms: [&[u8]; 3] = [b"\xef\xbb\xbf", b"\xfe\xff", b"\xff\xfe"];
    if boms.iter().any(|m| body.starts_with(m)) || body.starts_with(b"\x00\x00\xfe\xff") {
        return Err(ParamError::ByteOrderMark);
    }
    Ok(())
}

/// A form body's declared charset and its first bytes, checked together.
pub fn check_form_encoding(content_type: Option<&str>, body: &[u8]) -> Result<(), ParamError> {
    check_charset(content_type)?;
    check_bom(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN_NAMES: &[&str] = &["access_token", "refresh_token", "token", "client_id"];

    fn read(raw: &str) -> Option<&'static str> {
        reads_as(raw.as_bytes(), TOKEN_NAMES)
    }

    #[test]
    fn a_plain_name_is_read_as_itself_in_any_case() {
        assert_eq!(read("access_token"), Some("access_token"));
        assert_eq!(read("Access_Token"), Some("access_token"));
        assert_eq!(read("TOKEN"), Some("token"));
        assert_eq!(read("my_access_token"), None);
        assert_eq!(read("tokens"), None);
        assert_eq!(read("token-type"), None);
        assert_eq!(read(""), None);
    }

    #[test]
    fn percent_encoding_is_decoded_once_twice_and_as_iis_unicode() {
        assert_eq!(read("access%5ftoken"), Some("access_token"));
        assert_eq!(read("%61ccess_token"), Some("access_token"));
        assert_eq!(read("access%255ftoken"), Some("access_token"));
        assert_eq!(read("access%25255Ftoken"), Some("access_token"));
        assert_eq!(read("access%u005ftoken"), Some("access_token"));
        assert_eq!(read("%zzaccess_token"), None);
        // A valid escape after an invalid one is still decoded by lenient decoders.
        assert_eq!(read("access%5ftoken%zz"), None);
    }

    #[test]
    fn php_reads_spaces_dots_brackets_and_nul_its_own_way() {
        // php_register_variable_ex: leading spaces dropped, ' ' and '.' as '_', an unclosed '[' as '_'.
        for raw in
            ["+access_token", "%20access_token", "access+token", "access.token", "access[token", "access_token%00x"]
        {
            assert_eq!(read(raw), Some("access_token"), "{raw}");
        }
        assert_eq!(read("access_token[]"), Some("access_token"));
        assert_eq!(read("access_token[x]"), Some("access_token"));
        assert_eq!(read("refresh_token[]"), Some("refresh_token"));
        // PHP: an unclosed '[' is '_', and the name goes on as it is.
        assert_eq!(read("refresh[token[x"), None);
        assert_eq!(read("refresh[token.x"), None);
        assert_eq!(php(b"refresh[token.x"), b"refresh_token_x".to_vec());
        assert_eq!(php(b" a.b c[x]"), b"a_b_c".to_vec());
        assert_eq!(php(b"a[b[c"), b"a_b_c".to_vec());
        assert_eq!(php(b"a\0b"), b"a".to_vec());
    }

    #[test]
    fn qs_and_rack_read_the_name_before_brackets_and_dots() {
        assert_eq!(read("token[0]"), Some("token"));
        assert_eq!(read("[token]"), Some("token"));
        assert_eq!(read("]]token"), Some("token"));
        assert_eq!(read("token.0"), Some("token"));
        // qs allowDots reads ".token" as "[token]", a top-level token (found by tests/decoders).
        assert_eq!(read(".token"), Some("token"));
        assert_eq!(read("%2Erefresh_token"), Some("refresh_token"));
        assert_eq!(read(".client_id[0]"), Some("client_id"));
        assert_eq!(read("x[token]"), None);
        assert_eq!(read("x.token"), None);
    }

    #[test]
    fn charset_decoders_drop_iso_2022_escapes_and_the_nuls_of_utf_16() {
        assert_eq!(read("access_%1B%28Btoken"), Some("access_token"));
        assert_eq!(read("access_%1B%24%28Dtoken"), Some("access_token"));
        assert_eq!(read("acc%0E%0Fess_token"), Some("access_token"));
        assert_eq!(read("t%00o%00k%00e%00n%00"), Some("token"));
        assert_eq!(read("%EF%BB%BFtoken"), Some("token"));
        assert_eq!(read("%09token%0D%0A"), Some("token"));
        // URLSearchParams drops a leading '?' (found by tests/decoders: "/oauth2/token??token=").
        assert_eq!(read("?token"), Some("token"));
    }

    #[test]
    fn letters_that_fold_to_ascii_are_folded() {
        assert_eq!(read("access_to%E2%84%AAen"), Some("access_token"));
        assert_eq!(read("acce%C5%BF%C5%BF_token"), Some("access_token"));
        assert_eq!(read("cl%C4%B1ent_%C4%B0d"), Some("client_id"));
        assert_eq!(read("acc%C3%A9ss_token"), None);
    }

    #[test]
    fn only_names_no_reading_changes_take_the_short_way() {
        assert!(is_plain(b"access_token-2"));
        for raw in [&b"a.b"[..], b"a b", b"a%5f", b"a+b", b"a[", b"\xc4\xb1"] {
            assert!(!is_plain(raw), "{raw:?}");
        }
        // The short way folds case as the long way does.
        assert_eq!(read("ACCESS_TOKEN"), read("ACCESS%5FTOKEN"));
    }

    #[test]
    fn iis_percent_u_decodes_a_whole_code_point() {
        // %u212A is the Kelvin sign, which folds to 'k': not '*' (0x2A) nor '!' (0x21).
        assert_eq!(read("access_to%u212Aen"), Some("access_token"));
        assert_eq!(lenient_decode(b"%u212A", true), "\u{212a}".as_bytes().to_vec());
        assert_eq!(decodings(b"a%u0062").len(), 2);
        assert_eq!(decodings(b"abc").len(), 1);
    }

    #[test]
    fn every_name_of_a_query_counts_including_after_a_semicolon() {
        let names = &["access_token"];
        assert_eq!(first_reading(b"a=1&b=2", names), None);
        assert_eq!(first_reading(b"a=1&access.token=2", names), Some("access_token"));
        assert_eq!(first_reading(b"a=1;access_token=2", names), Some("access_token"));
        assert_eq!(first_reading(b"a=x;y&&access_token", names), Some("access_token"));
        assert_eq!(first_reading(b"q=access_token", names), None);
    }

    const JUDGED: &[&str] = &["client_id", "grant_type", "refresh_token"];

    fn judged(body: &str) -> Result<Judged, ParamError> {
        judge(body.as_bytes(), JUDGED)
    }

    #[test]
    fn judged_parameters_are_read_when_every_server_reads_them_alike() {
        let j = judged("grant_type=refresh_token&refresh_token=rt-1&client_id=c%5F1&scope=a+b&x=%E9%zz").unwrap();
        assert_eq!(j.get("grant_type"), Some("refresh_token"));
        assert_eq!(j.get("refresh_token"), Some("rt-1"));
        assert_eq!(j.get("client_id"), Some("c_1"));
        assert_eq!(j.get("scope"), None);
        // An escaped name that strictly decodes to the judged name is that name for every server.
        assert_eq!(judged("refresh%5Ftoken=rt").unwrap().get("refresh_token"), Some("rt"));
        assert_eq!(judged("client_id=").unwrap().get("client_id"), Some(""));
        assert_eq!(judged("").unwrap(), Judged::default());
    }

    #[test]
    fn another_spelling_of_a_judged_name_is_refused() {
        for body in [
            "refresh_token[]=rt",
            "Refresh_Token=rt",
            "refresh.token=rt",
            "+refresh_token=rt",
            "refresh_token%00=rt",
            "refresh[token=rt",
            "grant_type=refresh_token;refresh_token=rt",
            "a=1;REFRESH_TOKEN=rt",
            "refresh_token;x=rt",
            "client%255Fid=c",
        ] {
            let e = judged(body).unwrap_err();
            assert!(matches!(e, ParamError::Spelling { .. }), "{body}: {e:?}");
            assert_eq!(e.reason(), Reason::AmbiguousParameter);
        }
    }

    #[test]
    fn a_judged_name_sent_twice_is_refused() {
        assert_eq!(judged("client_id=a&client_id=b"), Err(ParamError::Repeated { name: "client_id" }));
        assert_eq!(judged("client_id=a&client%5fid=a"), Err(ParamError::Repeated { name: "client_id" }));
        assert_eq!(judged("client_id=a&client.id=b"), Err(ParamError::Spelling { name: "client_id" }));
    }

    #[test]
    fn a_judged_value_servers_could_read_differently_is_refused() {
        for (body, why) in [
            ("refresh_token=a%zz", "is not valid percent-encoding"),
            ("refresh_token=a%2", "is not valid percent-encoding"),
            ("refresh_token=r%C3%A9", "holds characters outside printable ASCII"),
            ("refresh_token=r%00t", "holds characters outside printable ASCII"),
            ("refresh_token=rt;x=1", "contains ';'"),
            ("refresh_token=+rt", "begins or ends with a space"),
            ("refresh_token=rt%20", "begins or ends with a space"),
        ] {
            match judged(body) {
                Err(e @ ParamError::BadValue { .. }) => {
                    assert!(e.to_string().contains(why), "{body}: {e}");
                    assert_eq!(e.reason(), Reason::MalformedParameter);
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        assert_eq!(judged("refresh_token=a+b%3B").unwrap().get("refresh_token"), Some("a b;"));
    }

    #[test]
    fn charsets_that_are_not_ascii_transparent_are_refused() {
        for ct in [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "application/x-www-form-urlencoded;charset=\"utf-8\"",
            "application/x-www-form-urlencoded; charset=ISO-8859-1",
            "application/x-www-form-urlencoded; charset=iso_8859-15",
            "application/x-www-form-urlencoded; charset=latin1",
            "application/x-www-form-urlencoded; charset=windows-1252",
            "application/x-www-form-urlencoded; charset=Cp1250",
            "application/x-www-form-urlencoded; charset=us-ascii",
        ] {
            assert_eq!(check_charset(Some(ct)), Ok(()), "{ct}");
        }
        for (ct, label) in [
            ("application/x-www-form-urlencoded; charset=UTF-16", "utf-16"),
            ("application/x-www-form-urlencoded; charset=utf-16le", "utf-16le"),
            ("application/x-www-form-urlencoded; charset=ISO-2022-JP", "iso-2022-jp"),
            ("application/x-www-form-urlencoded; charset=IBM037", "ibm037"),
            ("application/x-www-form-urlencoded; charset=utf-7", "utf-7"),
            ("application/x-www-form-urlencoded; charset=Shift_JIS", "shift_jis"),
            ("application/x-www-form-urlencoded; charset=utf-8; charset=utf-32", "utf-32"),
            ("application/x-www-form-urlencoded; x=\"charset=utf-16\"", "utf-16"),
            ("application/x-www-form-urlencoded; charset = 'cp037'", "cp037"),
            ("application/x-www-form-urlencoded; charset=", ""),
            ("application/x-www-form-urlencoded; charset=iso-8859-17", "iso-8859-17"),
        ] {
            assert_eq!(check_charset(Some(ct)), Err(ParamError::Charset(label.into())), "{ct}");
        }
        assert_eq!(check_charset(None), Ok(()));
        assert_eq!(check_charset(Some("text/plain; charsetx")), Ok(()));
    }

    #[test]
    fn a_byte_order_mark_before_the_first_name_is_refused() {
        for body in [&b"\xef\xbb\xbftoken=x"[..], b"\xff\xfet\x00", b"\xfe\xff\x00t", b"\x00\x00\xfe\xff"] {
            assert_eq!(check_bom(body), Err(ParamError::ByteOrderMark));
        }
        assert_eq!(check_bom(b"token=\xef\xbb\xbf"), Ok(()));
        assert_eq!(check_form_encoding(Some("application/x-www-form-urlencoded"), b"a=1"), Ok(()));
        assert_eq!(
            check_form_encoding(Some("application/x-www-form-urlencoded; charset=utf-16"), b"a=1"),
            Err(ParamError::Charset("utf-16".into()))
        );
    }

    #[test]
    fn strict_decoding_refuses_what_servers_read_differently() {
        assert_eq!(strict_decode(b"a+b%41"), Some(b"a bA".to_vec()));
        assert_eq!(strict_decode(b"%4"), None);
        assert_eq!(strict_decode(b"%zz"), None);
        assert_eq!(lenient_decode(b"%zz%41%u0041", false), b"%zzA%u0041".to_vec());
        assert_eq!(lenient_decode(b"%zz%41%u0041", true), b"%zzAA".to_vec());
        assert_eq!(lenient_decode(b"%u00", true), b"%u00".to_vec());
    }
}
