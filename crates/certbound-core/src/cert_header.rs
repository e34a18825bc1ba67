//! Certificate in, from a header: every format real TLS terminators write
//! (WSO2 IS one-line PEM, nginx and AWS ALB URL-encoded PEM, HAProxy base64
//! DER, RFC 9440 `Client-Cert`, Envoy XFCC, Traefik), and the formats
//! certbound writes when it forwards a verified certificate to the AS.

use crate::cert::{read_der, CertError, ClientCert, Thumbprint};
use base64::engine::general_purpose::STANDARD as B64_OUT;
use base64::Engine;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFormat {
    Auto,
    /// PEM, on one line or several, spaces allowed in place of newlines.
    Pem,
    /// Percent-encoded PEM (nginx `$ssl_client_escaped_cert`; AWS ALB leaves `+/=` as they are).
    UrlEncodedPem,
    /// Base64 DER without armour (HAProxy `ssl_c_der,base64`).
    Base64Der,
    /// RFC 9440 `Client-Cert: :<base64 DER>:`.
    Rfc9440,
    /// Envoy `x-forwarded-client-cert`.
    Xfcc,
    /// Traefik `X-Forwarded-Tls-Client-Cert`: URL-encoded base64 DER, comma-separated chain.
    Traefik,
}

impl HeaderFormat {
    pub fn parse(s: &str) -> Option<HeaderFormat> {
        Some(match s {
            "auto" => HeaderFormat::Auto,
            "pem" => HeaderFormat::Pem,
            "url_encoded_pem" => HeaderFormat::UrlEncodedPem,
            "base64_der" => HeaderFormat::Base64Der,
            "rfc9440" => HeaderFormat::Rfc9440,
            "xfcc" => HeaderFormat::Xfcc,
            "traefik" => HeaderFormat::Traefik,
            _ => return None,
        })
    }
}

/// Which XFCC element (one per proxy hop) to believe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XfccElement {
    /// The element the proxy nearest to certbound added (APPEND_FORWARD puts it last).
    Last,
    First,
}

/// What a header gave: the whole certificate, or (XFCC `Hash=` alone) its thumbprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderCert {
    Full(ClientCert),
    HashOnly(Thumbprint),
}

impl HeaderCert {
    pub fn thumbprint(&self) -> Thumbprint {
        match self {
            HeaderCert::Full(c) => c.thumbprint,
            HeaderCert::HashOnly(t) => *t,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    Empty,
    BadBase64,
    PemWithoutEnd,
    BadPercentEncoding,
    NotX509(String),
    BadXfcc(&'static str),
    NoCertificateInXfcc,
    BadHash,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Empty => f.write_str("the certificate header is empty"),
            HeaderError::BadBase64 => f.write_str("the certificate is not valid base64"),
            HeaderError::PemWithoutEnd => f.write_str("the PEM certificate has no END line"),
            HeaderError::BadPercentEncoding => f.write_str("the certificate is not valid URL encoding"),
            HeaderError::NotX509(e) => write!(f, "not an X.509 certificate: {e}"),
            HeaderError::BadXfcc(why) => write!(f, "malformed x-forwarded-client-cert: {why}"),
            HeaderError::NoCertificateInXfcc => {
                f.write_str("x-forwarded-client-cert names no certificate (Cert, Chain or Hash)")
            }
            HeaderError::BadHash => f.write_str("x-forwarded-client-cert Hash is not a hex SHA-256"),
        }
    }
}

fn full(der: &[u8]) -> Result<HeaderCert, HeaderError> {
    read_der(der).map(HeaderCert::Full).map_err(|e| match e {
        CertError::NotX509(m) => HeaderError::NotX509(m),
        other => HeaderError::NotX509(other.to_string()),
    })
}

fn b64(s: &str) -> Result<Vec<u8>, HeaderError> {
    if s.bytes().all(|b| b.is_ascii_whitespace()) {
        return Err(HeaderError::Empty);
    }
    crate::cert::base64_lenient(s).ok_or(HeaderError::BadBase64)
}

/// Percent-decoding where `+` stays `+` (it is base64 here, not a space).
pub fn percent_decode(s: &str) -> Result<String, HeaderError> {
    crate::form::percent_decode(s.as_bytes(), false).map_err(|_| HeaderError::BadPercentEncoding)
}

/// The first certificate of PEM text (a chain's first is the client's).
fn pem(s: &str) -> Result<HeaderCert, HeaderError> {
    let start = s.find(BEGIN).ok_or(HeaderError::BadBase64)? + BEGIN.len();
    let rest = s.get(start..).unwrap_or_default();
    let end = rest.find(END).ok_or(HeaderError::PemWithoutEnd)?;
    full(&b64(rest.get(..end).unwrap_or_default())?)
}

fn rfc9440(s: &str) -> Result<HeaderCert, HeaderError> {
    let s = s.trim();
    let inner = s.strip_prefix(':').and_then(|r| r.strip_suffix(':')).ok_or(HeaderError::BadBase64)?;
    full(&b64(inner)?)
}

/// Traefik's value: URL-encoded, comma-separated, each base64 DER (or PEM).
fn traefik(s: &str) -> Result<HeaderCert, HeaderError> {
    let decoded = percent_decode(s.trim())?;
    let first = decoded.split(',').next().unwrap_or_default();
    if first.contains(BEGIN) {
        pem(first)
    } else {
        full(&b64(first)?)
    }
}

/// A separator of XFCC (`,` between hops, `;` between pairs) and the bytes a
/// split on it stops at, made at compile time.
struct Separator {
    byte: u8,
    stops: [bool; 256],
}

const HOPS: Separator = Separator::new(b',');
const PAIRS: Separator = Separator::new(b';');

impl Separator {
    const fn new(byte: u8) -> Separator {
        let mut stops = [false; 256];
        stops[byte as usize] = true;
        stops[b'"' as usize] = true;
        stops[b'\\' as usize] = true;
        Separator { byte, stops }
    }
}

/// Splits on `sep` outside double quotes; a quote inside quotes is escaped as `\"`.
fn split_quoted<'s>(s: &'s str, sep: &Separator) -> Result<Vec<&'s str>, HeaderError> {
    // Separators and quotes are ASCII, so a byte scan splits on char boundaries;
    // it jumps from one byte that matters (separator, quote, backslash) to the next.
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut i, mut quoted) = (0, 0, false);
    while let Some(at) = bytes.get(i..).and_then(|r| r.iter().position(|&c| sep.stops[usize::from(c)])) {
        let at = i + at;
        match bytes.get(at) {
            // A backslash escapes the next byte inside quotes.
            Some(b'\\') if quoted => i = at + 2,
            Some(b'"') => {
                quoted = !quoted;
                i = at + 1;
            }
            Some(&c) if c == sep.byte && !quoted => {
                parts.push(s.get(start..at).unwrap_or_default());
                start = at + 1;
                i = at + 1;
            }
            _ => i = at + 1,
        }
    }
    if quoted {
        return Err(HeaderError::BadXfcc("unbalanced quotes"));
    }
    parts.push(s.get(start..).unwrap_or_default());
    Ok(parts)
}

fn unquote(v: &str) -> std::borrow::Cow<'_, str> {
    let v = v.trim();
    match v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if inner.contains('\\') => inner.replace("\\\"", "\"").into(),
        Some(inner) => inner.into(),
        None => v.into(),
    }
}

/// Envoy's `x-forwarded-client-cert`: `Key=value;...` elements, comma-separated, one per hop.
fn xfcc(s: &str, which: XfccElement) -> Result<HeaderCert, HeaderError> {
    let elements = split_quoted(s, &HOPS)?;
    let element = match which {
        XfccElement::Last => elements.last(),
        XfccElement::First => elements.first(),
    }
    .ok_or(HeaderError::Empty)?;
    let (mut cert, mut chain, mut hash) = (None, None, None);
    for pair in split_quoted(element, &PAIRS)? {
        if pair.trim().is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').ok_or(HeaderError::BadXfcc("an element is not Key=value"))?;
        match k.trim() {
            "Cert" => cert = Some(unquote(v)),
            "Chain" => chain = Some(unquote(v)),
            "Hash" => hash = Some(unquote(v)),
            _ => {}
        }
    }
    if let Some(c) = cert.or(chain) {
        return pem(&percent_decode(&c)?);
    }
    match hash {
        Some(h) => Thumbprint::from_hex_digest(&h)
            .map_err(|_| HeaderError::BadHash)?
            .map(HeaderCert::HashOnly)
            .ok_or(HeaderError::BadHash),
        None => Err(HeaderError::NoCertificateInXfcc),
    }
}

fn looks_like_xfcc(s: &str) -> bool {
    ["Hash=", "Cert=", "Chain=", "By="].iter().any(|k| s.starts_with(k) || s.contains(&format!(";{k}")))
}

/// Reads the client certificate from a header value.
pub fn parse(value: &str, format: HeaderFormat, element: XfccElement) -> Result<HeaderCert, HeaderError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(HeaderError::Empty);
    }
    match format {
        HeaderFormat::Pem => pem(v),
        HeaderFormat::UrlEncodedPem => pem(&percent_decode(v)?),
        HeaderFormat::Base64Der => full(&b64(v)?),
        HeaderFormat::Rfc9440 => rfc9440(v),
        HeaderFormat::Xfcc => xfcc(v, element),
        HeaderFormat::Traefik => traefik(v),
        HeaderFormat::Auto => {
            if v.starts_with(':') {
                rfc9440(v)
            } else if v.starts_with("-----BEGIN") && !v.contains('%') {
                pem(v)
            } else if looks_like_xfcc(v) {
                xfcc(v, element)
            } else if v.contains('%') {
                let decoded = percent_decode(v)?;
                if decoded.contains(BEGIN) {
                    pem(&decoded)
                } else {
                    traefik(v)
                }
            } else if v.contains(',') {
                traefik(v)
            } else {
                full(&b64(v)?)
            }
        }
    }
}

/// Formats certbound writes when it forwards the verified certificate upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardFormat {
    /// One-line PEM, as WSO2 IS reads `x-wso2-mtls-cert`.
    PemOneLine,
    UrlEncodedPem,
    Base64Der,
    Rfc9440,
}

impl ForwardFormat {
    pub fn parse(s: &str) -> Option<ForwardFormat> {
        Some(match s {
            "pem" => ForwardFormat::PemOneLine,
            "url_encoded_pem" => ForwardFormat::UrlEncodedPem,
            "base64_der" => ForwardFormat::Base64Der,
            "rfc9440" => ForwardFormat::Rfc9440,
            _ => return None,
        })
    }
}

pub fn encode(der: &[u8], format: ForwardFormat) -> String {
    let b = B64_OUT.encode(der);
    match format {
        ForwardFormat::PemOneLine => format!("{BEGIN}{b}{END}"),
        ForwardFormat::Base64Der => b,
        ForwardFormat::Rfc9440 => format!(":{b}:"),
        ForwardFormat::UrlEncodedPem => {
            let mut pem = format!("{BEGIN}\n");
            for line in b.as_bytes().chunks(64) {
                pem.push_str(std::str::from_utf8(line).unwrap_or_default());
                pem.push('\n');
            }
            pem.push_str(END);
            pem.push('\n');
            let mut out = String::with_capacity(pem.len() * 2);
            for byte in pem.bytes() {
                if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                    out.push(byte as char);
                } else {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sample {
        der: Vec<u8>,
        pem: String,
    }

    fn sample() -> Sample {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["client".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        Sample { der: cert.der().to_vec(), pem: cert.pem() }
    }

    fn thumb(s: &Sample) -> Thumbprint {
        Thumbprint::of_der(&s.der)
    }

    fn read(value: &str, format: HeaderFormat) -> Thumbprint {
        parse(value, format, XfccElement::Last).unwrap().thumbprint()
    }

    fn url_encode_all(s: &str) -> String {
        s.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect()
    }

    fn one_line(pem: &str) -> String {
        pem.replace('\n', "")
    }

    #[test]
    fn wso2_one_line_pem_is_read() {
        let s = sample();
        for f in [HeaderFormat::Pem, HeaderFormat::Auto] {
            assert_eq!(read(&one_line(&s.pem), f), thumb(&s));
            assert_eq!(read(&s.pem.replace('\n', " "), f), thumb(&s));
        }
    }

    #[test]
    fn multi_line_pem_is_read() {
        let s = sample();
        assert_eq!(read(&s.pem, HeaderFormat::Auto), thumb(&s));
    }

    #[test]
    fn nginx_escaped_pem_is_read() {
        let s = sample();
        for f in [HeaderFormat::UrlEncodedPem, HeaderFormat::Auto] {
            assert_eq!(read(&url_encode_all(&s.pem), f), thumb(&s));
        }
    }

    #[test]
    fn aws_alb_pem_with_unescaped_plus_slash_equals_is_read() {
        let s = sample();
        // ALB escapes newlines and spaces but leaves the base64 alphabet alone.
        let alb = s.pem.replace(' ', "%20").replace('\n', "%0A");
        for f in [HeaderFormat::UrlEncodedPem, HeaderFormat::Auto] {
            assert_eq!(read(&alb, f), thumb(&s));
        }
    }

    #[test]
    fn haproxy_base64_der_is_read() {
        let s = sample();
        for f in [HeaderFormat::Base64Der, HeaderFormat::Auto] {
            assert_eq!(read(&B64_OUT.encode(&s.der), f), thumb(&s));
        }
    }

    #[test]
    fn rfc9440_client_cert_is_read() {
        let s = sample();
        for f in [HeaderFormat::Rfc9440, HeaderFormat::Auto] {
            assert_eq!(read(&format!(":{}:", B64_OUT.encode(&s.der)), f), thumb(&s));
        }
    }

    #[test]
    fn envoy_xfcc_cert_chain_and_hash_are_read() {
        let other = sample();
        let cert = format!(
            "By=spiffe://proxy;Hash={FIXED_SHA256_HEX};Cert=\"{FIXED_URL_ENCODED_PEM}\";Subject=\"CN=client,O=x\""
        );
        assert_eq!(read(&cert, HeaderFormat::Xfcc), fixed_thumbprint());
        assert_eq!(read(&cert, HeaderFormat::Auto), fixed_thumbprint());
        let chain = format!("Chain=\"{FIXED_URL_ENCODED_PEM}{}\"", url_encode_all(&other.pem));
        assert_eq!(read(&chain, HeaderFormat::Xfcc), fixed_thumbprint());
        let hash = format!("Hash={FIXED_SHA256_HEX}");
        assert_eq!(parse(&hash, HeaderFormat::Auto, XfccElement::Last), Ok(HeaderCert::HashOnly(fixed_thumbprint())));
        assert_eq!(parse(&hash, HeaderFormat::Xfcc, XfccElement::Last).unwrap().thumbprint().x5t_s256(), FIXED_X5T);
    }

    #[test]
    fn xfcc_hop_is_chosen_by_config() {
        // SHA-256 of the empty string: `printf '' | openssl dgst -sha256`, and its x5t#S256 form.
        let empty_hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let empty_x5t = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";
        let v = format!("Hash={FIXED_SHA256_HEX};Subject=\"CN=a,O=x\",Hash={empty_hex}");
        assert_eq!(parse(&v, HeaderFormat::Xfcc, XfccElement::First).unwrap().thumbprint().x5t_s256(), FIXED_X5T);
        assert_eq!(parse(&v, HeaderFormat::Xfcc, XfccElement::Last).unwrap().thumbprint().x5t_s256(), empty_x5t);
    }

    #[test]
    fn traefik_chain_is_read_and_its_first_certificate_is_the_clients() {
        let (s, ca) = (sample(), sample());
        let v = format!("{},{}", url_encode_all(&B64_OUT.encode(&s.der)), url_encode_all(&B64_OUT.encode(&ca.der)));
        for f in [HeaderFormat::Traefik, HeaderFormat::Auto] {
            assert_eq!(read(&v, f), thumb(&s));
        }
    }

    #[test]
    fn a_pem_chains_first_certificate_is_the_clients() {
        let (s, ca) = (sample(), sample());
        assert_eq!(read(&format!("{}{}", s.pem, ca.pem), HeaderFormat::Auto), thumb(&s));
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let s = sample();
        let b = B64_OUT.encode(&s.der);
        let cases: Vec<(String, HeaderFormat)> = vec![
            ("!!garbage!!".into(), HeaderFormat::Auto),
            (b[..b.len() / 2].to_string(), HeaderFormat::Base64Der),
            (format!("{BEGIN}{b}"), HeaderFormat::Auto),
            (B64_OUT.encode(b"not a certificate"), HeaderFormat::Auto),
            ("Cert=\"abc;Hash=00".into(), HeaderFormat::Xfcc),
            ("Subject=\"CN=x\"".into(), HeaderFormat::Xfcc),
            ("Hash=zz".into(), HeaderFormat::Xfcc),
            ("%zz".into(), HeaderFormat::UrlEncodedPem),
            (":abc".into(), HeaderFormat::Rfc9440),
            ("   ".into(), HeaderFormat::Auto),
        ];
        for (v, f) in cases {
            assert!(parse(&v, f, XfccElement::Last).is_err(), "{v:?} as {f:?}");
        }
        assert_eq!(
            parse(&format!("{BEGIN}{b}"), HeaderFormat::Pem, XfccElement::Last),
            Err(HeaderError::PemWithoutEnd)
        );
        assert_eq!(
            parse("Cert=\"x", HeaderFormat::Xfcc, XfccElement::Last),
            Err(HeaderError::BadXfcc("unbalanced quotes"))
        );
    }

    #[test]
    fn forwarded_formats_read_back_to_the_same_certificate() {
        let s = sample();
        for (f, back) in [
            (ForwardFormat::PemOneLine, HeaderFormat::Pem),
            (ForwardFormat::UrlEncodedPem, HeaderFormat::UrlEncodedPem),
            (ForwardFormat::Base64Der, HeaderFormat::Base64Der),
            (ForwardFormat::Rfc9440, HeaderFormat::Rfc9440),
        ] {
            let v = encode(&s.der, f);
            assert!(!v.contains('\n'));
            assert_eq!(read(&v, back), thumb(&s), "{f:?}");
            assert_eq!(read(&v, HeaderFormat::Auto), thumb(&s), "{f:?} auto");
        }
        assert!(encode(&s.der, ForwardFormat::PemOneLine).starts_with("-----BEGIN CERTIFICATE-----MII"));
    }

    // A fixed certificate, made once with `openssl req -x509` (EC P-256, CN=client), and what other tools
    // make of it: every expected string below was computed outside certbound and pasted here.
    const FIXED_PEM: &str = "-----BEGIN CERTIFICATE-----\n\
        MIICHDCCAcKgAwIBAgIUOudoGTdR26KKAsn9olehTfZ/fuAwCgYIKoZIzj0EAwIw\n\
        MDELMAkGA1UEBhMCVVMxEDAOBgNVBAoMB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVu\n\
        dDAgFw0yNjExMjgwNDEzNTlaGA8yMTI2MTEwNDA0MTM1OVowMDELMAkGA1UEBhMC\n\
        VVMxEDAOBgNVBAoMB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVudDBZMBMGByqGSM49\n\
        AgEGCCqGSM49AwEHA0IABBlXvRixLtQqNpq78/YFIigH/l3nGifcqvE7I3pbXgLy\n\
        owmc9bQB2dKylJG9q5jfaXrorRoWNUbJ+nB/kpnvlIujgbcwgbQwHQYDVR0OBBYE\n\
        FB2ddeXD0gkE5QrogMVWTM3tXigUMB8GA1UdIwQYMBaAFB2ddeXD0gkE5QrogMVW\n\
        TM3tXigUMA8GA1UdEwEB/wQFMAMBAf8wTAYDVR0RBEUwQ4IOY2xpZW50LmV4YW1w\n\
        bGWGF3NwaWZmZTovL2V4YW1wbGUvY2xpZW50hwQKAQIDgRJjbGllbnRAZXhhbXBs\n\
        ZS5jb20wEwYDVR0lBAwwCgYIKwYBBQUHAwIwCgYIKoZIzj0EAwIDSAAwRQIhALIp\n\
        kcDFbdhkE1Tiw9GQ3b5B+Ei2BTgLOAxY3YbKi4Y3AiBRqwqc2kyLbC+rIFLpVsHt\n\
        JgDaTJYWEc+4MnvRdPdiXg==\n\
        -----END CERTIFICATE-----\n";
    /// `openssl x509 -in fixed.pem -outform der | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '='`
    const FIXED_X5T: &str = "ptREEOXMSsPkpNuu0Zs158qKdpDHlugk1OovHIiHguM";
    /// `openssl x509 -in fixed.pem -outform der | openssl dgst -sha256` (XFCC `Hash=`)
    const FIXED_SHA256_HEX: &str = "a6d44410e5cc4ac3e4a4dbaed19b35e7ca8a7690c796e824d4ea2f1c888782e3";
    /// Python: `base64.b64encode(der)`
    const FIXED_B64: &str =
        "MIICHDCCAcKgAwIBAgIUOudoGTdR26KKAsn9olehTfZ/fuAwCgYIKoZIzj0EAwIwMDELMAkGA1UEBhMCVVMxEDAOBgNVBAoM\
        B0V4YW1wbGUxDzANBgNVBAMMBmNsaWVudDAgFw0yNjExMjgwNDEzNTlaGA8yMTI2MTEwNDA0MTM1OVowMDELMAkGA1UEBhMC\
        VVMxEDAOBgNVBAoMB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVudDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABBlXvRixLtQq\
        Npq78/YFIigH/l3nGifcqvE7I3pbXgLyowmc9bQB2dKylJG9q5jfaXrorRoWNUbJ+nB/kpnvlIujgbcwgbQwHQYDVR0OBBYE\
        FB2ddeXD0gkE5QrogMVWTM3tXigUMB8GA1UdIwQYMBaAFB2ddeXD0gkE5QrogMVWTM3tXigUMA8GA1UdEwEB/wQFMAMBAf8w\
        TAYDVR0RBEUwQ4IOY2xpZW50LmV4YW1wbGWGF3NwaWZmZTovL2V4YW1wbGUvY2xpZW50hwQKAQIDgRJjbGllbnRAZXhhbXBs\
        ZS5jb20wEwYDVR0lBAwwCgYIKwYBBQUHAwIwCgYIKoZIzj0EAwIDSAAwRQIhALIpkcDFbdhkE1Tiw9GQ3b5B+Ei2BTgLOAxY\
        3YbKi4Y3AiBRqwqc2kyLbC+rIFLpVsHtJgDaTJYWEc+4MnvRdPdiXg==";
    /// `"-----BEGIN CERTIFICATE-----" + base64.b64encode(der) + "-----END CERTIFICATE-----"` (WSO2 one line)
    const FIXED_PEM_ONE_LINE: &str =
        "-----BEGIN CERTIFICATE-----MIICHDCCAcKgAwIBAgIUOudoGTdR26KKAsn9olehTfZ/fuAwCgYIKoZIzj0EAwIwMDELM\
        AkGA1UEBhMCVVMxEDAOBgNVBAoMB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVudDAgFw0yNjExMjgwNDEzNTlaGA8yMTI2MTEwN\
        DA0MTM1OVowMDELMAkGA1UEBhMCVVMxEDAOBgNVBAoMB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVudDBZMBMGByqGSM49AgEGC\
        CqGSM49AwEHA0IABBlXvRixLtQqNpq78/YFIigH/l3nGifcqvE7I3pbXgLyowmc9bQB2dKylJG9q5jfaXrorRoWNUbJ+nB/k\
        pnvlIujgbcwgbQwHQYDVR0OBBYEFB2ddeXD0gkE5QrogMVWTM3tXigUMB8GA1UdIwQYMBaAFB2ddeXD0gkE5QrogMVWTM3tX\
        igUMA8GA1UdEwEB/wQFMAMBAf8wTAYDVR0RBEUwQ4IOY2xpZW50LmV4YW1wbGWGF3NwaWZmZTovL2V4YW1wbGUvY2xpZW50h\
        wQKAQIDgRJjbGllbnRAZXhhbXBsZS5jb20wEwYDVR0lBAwwCgYIKwYBBQUHAwIwCgYIKoZIzj0EAwIDSAAwRQIhALIpkcDFb\
        dhkE1Tiw9GQ3b5B+Ei2BTgLOAxY3YbKi4Y3AiBRqwqc2kyLbC+rIFLpVsHtJgDaTJYWEc+4MnvRdPdiXg==-----END CERT\
        IFICATE-----";
    /// Python: `':' + base64.b64encode(der) + ':'` (RFC 9440)
    const FIXED_RFC9440: &str =
        ":MIICHDCCAcKgAwIBAgIUOudoGTdR26KKAsn9olehTfZ/fuAwCgYIKoZIzj0EAwIwMDELMAkGA1UEBhMCVVMxEDAOBgNVBAo\
        MB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVudDAgFw0yNjExMjgwNDEzNTlaGA8yMTI2MTEwNDA0MTM1OVowMDELMAkGA1UEBhM\
        CVVMxEDAOBgNVBAoMB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVudDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABBlXvRixLtQ\
        qNpq78/YFIigH/l3nGifcqvE7I3pbXgLyowmc9bQB2dKylJG9q5jfaXrorRoWNUbJ+nB/kpnvlIujgbcwgbQwHQYDVR0OBBY\
        EFB2ddeXD0gkE5QrogMVWTM3tXigUMB8GA1UdIwQYMBaAFB2ddeXD0gkE5QrogMVWTM3tXigUMA8GA1UdEwEB/wQFMAMBAf8\
        wTAYDVR0RBEUwQ4IOY2xpZW50LmV4YW1wbGWGF3NwaWZmZTovL2V4YW1wbGUvY2xpZW50hwQKAQIDgRJjbGllbnRAZXhhbXB\
        sZS5jb20wEwYDVR0lBAwwCgYIKwYBBQUHAwIwCgYIKoZIzj0EAwIDSAAwRQIhALIpkcDFbdhkE1Tiw9GQ3b5B+Ei2BTgLOAx\
        Y3YbKi4Y3AiBRqwqc2kyLbC+rIFLpVsHtJgDaTJYWEc+4MnvRdPdiXg==:";
    /// Python: `urllib.parse.quote(openssl_pem, safe='')` (nginx `$ssl_client_escaped_cert`)
    const FIXED_URL_ENCODED_PEM: &str =
        "-----BEGIN%20CERTIFICATE-----%0AMIICHDCCAcKgAwIBAgIUOudoGTdR26KKAsn9olehTfZ%2FfuAwCgYIKoZIzj0EAw\
        Iw%0AMDELMAkGA1UEBhMCVVMxEDAOBgNVBAoMB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVu%0AdDAgFw0yNjExMjgwNDEzNTla\
        GA8yMTI2MTEwNDA0MTM1OVowMDELMAkGA1UEBhMC%0AVVMxEDAOBgNVBAoMB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVudDBZM\
        BMGByqGSM49%0AAgEGCCqGSM49AwEHA0IABBlXvRixLtQqNpq78%2FYFIigH%2Fl3nGifcqvE7I3pbXgLy%0Aowmc9bQB2dK\
        ylJG9q5jfaXrorRoWNUbJ%2BnB%2FkpnvlIujgbcwgbQwHQYDVR0OBBYE%0AFB2ddeXD0gkE5QrogMVWTM3tXigUMB8GA1Ud\
        IwQYMBaAFB2ddeXD0gkE5QrogMVW%0ATM3tXigUMA8GA1UdEwEB%2FwQFMAMBAf8wTAYDVR0RBEUwQ4IOY2xpZW50LmV4YW1\
        w%0AbGWGF3NwaWZmZTovL2V4YW1wbGUvY2xpZW50hwQKAQIDgRJjbGllbnRAZXhhbXBs%0AZS5jb20wEwYDVR0lBAwwCgYIK\
        wYBBQUHAwIwCgYIKoZIzj0EAwIDSAAwRQIhALIp%0AkcDFbdhkE1Tiw9GQ3b5B%2BEi2BTgLOAxY3YbKi4Y3AiBRqwqc2kyL\
        bC%2BrIFLpVsHt%0AJgDaTJYWEc%2B4MnvRdPdiXg%3D%3D%0A-----END%20CERTIFICATE-----%0A";
    /// Python: `openssl_pem.replace(' ', '%20').replace('\n', '%0A')` (AWS ALB: base64 alphabet left alone)
    const FIXED_ALB: &str =
        "-----BEGIN%20CERTIFICATE-----%0AMIICHDCCAcKgAwIBAgIUOudoGTdR26KKAsn9olehTfZ/fuAwCgYIKoZIzj0EAwIw\
        %0AMDELMAkGA1UEBhMCVVMxEDAOBgNVBAoMB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVu%0AdDAgFw0yNjExMjgwNDEzNTlaGA\
        8yMTI2MTEwNDA0MTM1OVowMDELMAkGA1UEBhMC%0AVVMxEDAOBgNVBAoMB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVudDBZMBM\
        GByqGSM49%0AAgEGCCqGSM49AwEHA0IABBlXvRixLtQqNpq78/YFIigH/l3nGifcqvE7I3pbXgLy%0Aowmc9bQB2dKylJG9q\
        5jfaXrorRoWNUbJ+nB/kpnvlIujgbcwgbQwHQYDVR0OBBYE%0AFB2ddeXD0gkE5QrogMVWTM3tXigUMB8GA1UdIwQYMBaAFB\
        2ddeXD0gkE5QrogMVW%0ATM3tXigUMA8GA1UdEwEB/wQFMAMBAf8wTAYDVR0RBEUwQ4IOY2xpZW50LmV4YW1w%0AbGWGF3Nw\
        aWZmZTovL2V4YW1wbGUvY2xpZW50hwQKAQIDgRJjbGllbnRAZXhhbXBs%0AZS5jb20wEwYDVR0lBAwwCgYIKwYBBQUHAwIwC\
        gYIKoZIzj0EAwIDSAAwRQIhALIp%0AkcDFbdhkE1Tiw9GQ3b5B+Ei2BTgLOAxY3YbKi4Y3AiBRqwqc2kyLbC+rIFLpVsHt%0\
        AJgDaTJYWEc+4MnvRdPdiXg==%0A-----END%20CERTIFICATE-----%0A";
    /// Python: `urllib.parse.quote(base64.b64encode(der), safe='')` (Traefik)
    const FIXED_TRAEFIK: &str =
        "MIICHDCCAcKgAwIBAgIUOudoGTdR26KKAsn9olehTfZ%2FfuAwCgYIKoZIzj0EAwIwMDELMAkGA1UEBhMCVVMxEDAOBgNVBA\
        oMB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVudDAgFw0yNjExMjgwNDEzNTlaGA8yMTI2MTEwNDA0MTM1OVowMDELMAkGA1UEBh\
        MCVVMxEDAOBgNVBAoMB0V4YW1wbGUxDzANBgNVBAMMBmNsaWVudDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABBlXvRixLt\
        QqNpq78%2FYFIigH%2Fl3nGifcqvE7I3pbXgLyowmc9bQB2dKylJG9q5jfaXrorRoWNUbJ%2BnB%2FkpnvlIujgbcwgbQwHQ\
        YDVR0OBBYEFB2ddeXD0gkE5QrogMVWTM3tXigUMB8GA1UdIwQYMBaAFB2ddeXD0gkE5QrogMVWTM3tXigUMA8GA1UdEwEB%2\
        FwQFMAMBAf8wTAYDVR0RBEUwQ4IOY2xpZW50LmV4YW1wbGWGF3NwaWZmZTovL2V4YW1wbGUvY2xpZW50hwQKAQIDgRJjbGll\
        bnRAZXhhbXBsZS5jb20wEwYDVR0lBAwwCgYIKwYBBQUHAwIwCgYIKoZIzj0EAwIDSAAwRQIhALIpkcDFbdhkE1Tiw9GQ3b5B\
        %2BEi2BTgLOAxY3YbKi4Y3AiBRqwqc2kyLbC%2BrIFLpVsHtJgDaTJYWEc%2B4MnvRdPdiXg%3D%3D";

    fn fixed_thumbprint() -> Thumbprint {
        Thumbprint::from_x5t_s256(FIXED_X5T).unwrap()
    }

    #[test]
    fn forwarded_formats_of_a_fixed_certificate_are_the_strings_other_tools_write() {
        let der = crate::cert::parse_pem(FIXED_PEM).unwrap().der;
        assert_eq!(encode(&der, ForwardFormat::PemOneLine), FIXED_PEM_ONE_LINE);
        assert_eq!(encode(&der, ForwardFormat::UrlEncodedPem), FIXED_URL_ENCODED_PEM);
        assert_eq!(encode(&der, ForwardFormat::Base64Der), FIXED_B64);
        assert_eq!(encode(&der, ForwardFormat::Rfc9440), FIXED_RFC9440);
    }

    #[test]
    fn every_terminator_format_of_a_fixed_certificate_reads_to_the_openssl_thumbprint() {
        let xfcc = format!("By=spiffe://proxy;Hash={FIXED_SHA256_HEX};Cert=\"{FIXED_URL_ENCODED_PEM}\"");
        let cases: [(&str, HeaderFormat); 9] = [
            (FIXED_PEM, HeaderFormat::Pem),
            (FIXED_PEM_ONE_LINE, HeaderFormat::Pem),
            (FIXED_URL_ENCODED_PEM, HeaderFormat::UrlEncodedPem),
            (FIXED_ALB, HeaderFormat::UrlEncodedPem),
            (FIXED_B64, HeaderFormat::Base64Der),
            (FIXED_RFC9440, HeaderFormat::Rfc9440),
            (FIXED_TRAEFIK, HeaderFormat::Traefik),
            (&xfcc, HeaderFormat::Xfcc),
            (&xfcc, HeaderFormat::Auto),
        ];
        for (value, format) in cases {
            let got = parse(value, format, XfccElement::Last).unwrap();
            assert_eq!(got.thumbprint().x5t_s256(), FIXED_X5T, "{format:?}");
            assert!(matches!(got, HeaderCert::Full(_)), "{format:?}");
            if format != HeaderFormat::Auto {
                assert_eq!(read(value, HeaderFormat::Auto).x5t_s256(), FIXED_X5T, "{format:?} read as auto");
            }
        }
    }
}
