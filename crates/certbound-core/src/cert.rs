//! Certificate in: the presented client certificate reduced to what RFC 8705
//! binds to, its `x5t#S256` thumbprint (SHA-256 over the DER, base64url).

use crate::dn::Dn;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// SHA-256 of a certificate's DER encoding (RFC 8705 §3.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Thumbprint([u8; 32]);

impl Thumbprint {
    pub fn of_der(der: &[u8]) -> Self {
        Thumbprint(Sha256::digest(der).into())
    }

    /// The `x5t#S256` value: base64url without padding.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Hex, as Envoy writes `connection.sha256_peer_certificate_digest` and XFCC `Hash=`.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses an `x5t#S256` string (base64url, no padding, 32 bytes).
    pub fn from_x5t_s256(s: &str) -> Result<Self, CertError> {
        if s.len() != 43 {
            return Err(CertError::BadThumbprint("must be 43 base64url characters without padding"));
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| CertError::BadThumbprint("not base64url"))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CertError::BadThumbprint("not 32 bytes"))?;
        Ok(Thumbprint(arr))
    }

    /// Parses the hex SHA-256 digest Envoy exposes for the peer certificate.
    /// An empty string (no certificate on the connection) is `Ok(None)`.
    pub fn from_hex_digest(s: &str) -> Result<Option<Self>, CertError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if s.len() != 64 {
            return Err(CertError::BadThumbprint("hex digest must be 64 characters"));
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hi = hex_val(pair.first().copied());
            let lo = hex_val(pair.get(1).copied());
            match (hi, lo, out.get_mut(i)) {
                (Some(h), Some(l), Some(slot)) => *slot = (h << 4) | l,
                _ => return Err(CertError::BadThumbprint("hex digest has a non-hex character")),
            }
        }
        Ok(Some(Thumbprint(out)))
    }

    /// Constant-time comparison: a timing difference must not tell an
    /// attacker how much of a registered thumbprint they matched.
    pub fn ct_eq(&self, other: &Thumbprint) -> bool {
        ct_eq_bytes(&self.0, &other.0)
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thumbprint({})", self.x5t_s256())
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.x5t_s256())
    }
}

fn hex_val(c: Option<u8>) -> Option<u8> {
    match c? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Equal-length byte comparison whose time does not depend on where the
/// first difference is. Lengths are not secret.
pub fn ct_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Validity period in Unix seconds, inclusive on both ends (RFC 5280 §4.1.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    pub fn contains(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Subject alternative names (RFC 5280 §4.2.1.6) that `tls_client_auth` matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sans {
    pub dns: Vec<String>,
    pub uri: Vec<String>,
    /// 4 bytes (IPv4) or 16 (IPv6), as encoded.
    pub ip: Vec<Vec<u8>>,
    pub email: Vec<String>,
}

/// A certificate as certbound holds it: its thumbprint, validity and DER. The
/// subject and SANs (only `tls_client_auth` needs them) are read on demand by
/// [`ClientCert::names`], so the resource path never pays for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub thumbprint: Thumbprint,
    pub validity: Validity,
    pub der: Vec<u8>,
}

/// What `tls_client_auth` matches (RFC 8705 §2.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub subject: Dn,
    pub sans: Sans,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertError {
    NotPem,
    WrongPemLabel(String),
    NotX509(String),
    TrailingData,
    BadThumbprint(&'static str),
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::NotPem => f.write_str("not a PEM certificate"),
            CertError::WrongPemLabel(l) => write!(f, "PEM label is {l:?}, expected \"CERTIFICATE\""),
            CertError::NotX509(e) => write!(f, "not an X.509 certificate: {e}"),
            CertError::TrailingData => f.write_str("more than one certificate where one is expected"),
            CertError::BadThumbprint(why) => write!(f, "bad x5t#S256 thumbprint: {why}"),
        }
    }
}

impl ClientCert {
    /// The subject and SANs, by x509-parser (a full parse of the certificate).
    pub fn names(&self) -> Result<Names, CertError> {
        let (rest, cert) = X509Certificate::from_der(&self.der).map_err(|e| CertError::NotX509(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertError::TrailingData);
        }
        let subject = Dn::from_rdns(
            cert.subject()
                .iter_rdn()
                .map(|rdn| {
                    rdn.iter()
                        .map(|atv| {
                            let value = match atv.as_str() {
                                Ok(s) => s.to_string(),
                                Err(_) => String::from_utf8_lossy(atv.as_slice()).into_owned(),
                            };
                            (atv.attr_type().to_id_string(), value)
                        })
                        .collect()
                })
                .collect(),
        );
        let mut sans = Sans::default();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(d) => sans.dns.push(d.to_string()),
                    GeneralName::URI(u) => sans.uri.push(u.to_string()),
                    GeneralName::IPAddress(ip) => sans.ip.push(ip.to_vec()),
                    GeneralName::RFC822Name(e) => sans.email.push(e.to_string()),
                    _ => {}
                }
            }
        }
        Ok(Names { subject, sans })
    }
}

/// Reads one DER certificate the way the request path needs it: the
/// structure of RFC 5280 §4.1 walked (every element of `Certificate` and
/// `TBSCertificate` a well-formed DER element of the expected tag, nothing
/// after the certificate) and the validity read; no allocation but the DER.
/// The thumbprint is over these exact bytes, so a binding made for a
/// certificate matches only this certificate. [`ClientCert::names`] parses
/// the rest when `tls_client_auth` asks for it.
pub fn read_der(der: &[u8]) -> Result<ClientCert, CertError> {
    let validity = der_walk::validity(der)?;
    Ok(ClientCert { thumbprint: Thumbprint::of_der(der), validity, der: der.to_vec() })
}

/// Parses one DER certificate completely (configuration, `jwks_uri`
/// documents): [`read_der`], and x509-parser must read the whole of it.
pub fn parse_der(der: &[u8]) -> Result<ClientCert, CertError> {
    let cert = read_der(der)?;
    cert.names()?;
    Ok(cert)
}

/// The few DER rules the request path needs (X.690 §8, §10; RFC 5280 §4.1).
mod der_walk {
    use super::{CertError, Validity};

    fn bad(why: &str) -> CertError {
        CertError::NotX509(why.to_string())
    }

    /// One element: (tag, contents, rest). Definite lengths only, at most 4 length octets.
    fn element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), CertError> {
        let (&tag, rest) = input.split_first().ok_or_else(|| bad("truncated DER"))?;
        if tag & 0x1f == 0x1f {
            return Err(bad("multi-byte DER tag"));
        }
        let (&first, mut rest) = rest.split_first().ok_or_else(|| bad("truncated DER"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(bad("indefinite or oversized DER length"));
            }
            let (octets, after) = rest.split_at_checked(n).ok_or_else(|| bad("truncated DER"))?;
            rest = after;
            octets.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (contents, after) = rest.split_at_checked(len).ok_or_else(|| bad("truncated DER"))?;
        Ok((tag, contents, after))
    }

    fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), CertError> {
        match element(input)? {
            (t, contents, rest) if t == tag => Ok((contents, rest)),
            _ => Err(bad(what)),
        }
    }

    const SEQUENCE: u8 = 0x30;
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;

    /// The validity period of a DER certificate, its structure checked on the way.
    pub fn validity(der: &[u8]) -> Result<Validity, CertError> {
        let (cert, after) = expect(der, SEQUENCE, "not a DER SEQUENCE")?;
        if !after.is_empty() {
            return Err(CertError::TrailingData);
        }
        let (tbs, rest) = expect(cert, SEQUENCE, "no tbsCertificate")?;
        let (_, rest) = expect(rest, SEQUENCE, "no signatureAlgorithm")?;
        let (_, rest) = expect(rest, 0x03, "no signatureValue")?;
        if !rest.is_empty() {
            return Err(bad("data after signatureValue"));
        }
        let mut rest = tbs;
        // Context-specific tags are read with or without the constructed bit, as x509-parser reads them.
        let tagged = |rest: &[u8], number: u8| rest.first().is_some_and(|t| t & !0x20 == 0x80 | number);
        if tagged(rest, 0) {
            rest = element(rest)?.2;
        }
        let (_, rest) = expect(rest, 0x02, "no serialNumber")?;
        let (_, rest) = expect(rest, SEQUENCE, "no signature algorithm")?;
        let (_, rest) = expect(rest, SEQUENCE, "no issuer")?;
        let (validity, rest) = expect(rest, SEQUENCE, "no validity")?;
        let (_, rest) = expect(rest, SEQUENCE, "no subject")?;
        let (_, mut rest) = expect(rest, SEQUENCE, "no subjectPublicKeyInfo")?;
        // issuerUniqueID, subjectUniqueID, extensions and whatever later versions add
        // (RFC 5912 leaves TBSCertificate extensible): well-formed elements, skipped.
        while !rest.is_empty() {
            rest = element(rest)?.2;
        }
        let (not_before, rest) = time(validity)?;
        let (not_after, rest) = time(rest)?;
        if !rest.is_empty() {
            return Err(bad("data after notAfter"));
        }
        Ok(Validity { not_before, not_after })
    }

    /// RFC 5280 §4.1.2.5: UTCTime `YYMMDDHHMMSSZ` (years 1950-2049) or
    /// GeneralizedTime `YYYYMMDDHHMMSSZ`, nothing else.
    fn time(input: &[u8]) -> Result<(i64, &[u8]), CertError> {
        let (tag, text, rest) = element(input)?;
        let (year, digits) = match (tag, text.len()) {
            (UTC_TIME, 13) => {
                let yy = number(&text[..2])?;
                (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
            }
            (GENERALIZED_TIME, 15) => (number(&text[..4])?, &text[4..]),
            _ => return Err(bad("validity time is not UTCTime or GeneralizedTime as RFC 5280 requires")),
        };
        if digits.get(10) != Some(&b'Z') {
            return Err(bad("validity time is not in UTC"));
        }
        let (month, day) = (number(&digits[0..2])?, number(&digits[2..4])?);
        let (hour, minute, second) = (number(&digits[4..6])?, number(&digits[6..8])?, number(&digits[8..10])?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(bad("validity time out of range"));
        }
        let days = days_from_civil(year, month, day);
        Ok((days * 86_400 + hour * 3_600 + minute * 60 + second, rest))
    }

    fn number(digits: &[u8]) -> Result<i64, CertError> {
        digits.iter().try_fold(0i64, |acc, &d| {
            if d.is_ascii_digit() {
                Ok(acc * 10 + i64::from(d - b'0'))
            } else {
                Err(bad("validity time has a non-digit"))
            }
        })
    }

    fn days_in_month(year: i64, month: i64) -> i64 {
        match month {
            2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
}

/// Parses exactly one PEM `CERTIFICATE` block (with newlines, as in a config file).
pub fn parse_pem(pem: &str) -> Result<ClientCert, CertError> {
    const BEGIN: &str = "-----BEGIN ";
    let text = pem.trim();
    let rest = text.strip_prefix(BEGIN).ok_or(CertError::NotPem)?;
    let (label, rest) = rest.split_once("-----").ok_or(CertError::NotPem)?;
    if label != "CERTIFICATE" {
        return Err(CertError::WrongPemLabel(label.to_string()));
    }
    let end = format!("-----END {label}-----");
    let (body, after) = rest.split_once(end.as_str()).ok_or(CertError::NotPem)?;
    if !after.trim().is_empty() {
        return Err(CertError::TrailingData);
    }
    parse_der(&base64_lenient(body).ok_or(CertError::NotPem)?)
}

/// Standard base64, padding optional (terminators differ on it), ASCII
/// whitespace ignored (PEM lines, or spaces in their place).
const B64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

pub fn base64_lenient(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let decoded = if bytes.iter().any(u8::is_ascii_whitespace) {
        let mut packed = Vec::with_capacity(bytes.len());
        packed.extend(bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()));
        B64_LENIENT.decode(packed)
    } else {
        B64_LENIENT.decode(bytes)
    };
    decoded.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x5t_s256_is_base64url_without_padding_of_sha256_over_der() {
        // SHA-256 of the empty string, a fixed vector.
        let t = Thumbprint::of_der(b"");
        assert_eq!(t.x5t_s256(), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
        assert_eq!(t.hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn thumbprint_round_trips_through_x5t_and_hex() {
        let t = Thumbprint::of_der(b"certificate");
        assert_eq!(Thumbprint::from_x5t_s256(&t.x5t_s256()), Ok(t));
        assert_eq!(Thumbprint::from_hex_digest(&t.hex()), Ok(Some(t)));
        assert_eq!(Thumbprint::from_hex_digest(&t.hex().to_uppercase()), Ok(Some(t)));
    }

    #[test]
    fn empty_envoy_digest_means_no_certificate() {
        assert_eq!(Thumbprint::from_hex_digest(""), Ok(None));
    }

    #[test]
    fn malformed_thumbprints_are_refused() {
        let good = Thumbprint::of_der(b"x").x5t_s256();
        assert!(Thumbprint::from_x5t_s256(&format!("{good}=")).is_err());
        assert!(Thumbprint::from_x5t_s256(&good[1..]).is_err());
        assert!(Thumbprint::from_x5t_s256(&good.replace(|c: char| c.is_alphanumeric(), "+")).is_err());
        assert!(Thumbprint::from_hex_digest("zz").is_err());
        assert!(Thumbprint::from_hex_digest(&"g".repeat(64)).is_err());
    }

    #[test]
    fn constant_time_compare_matches_equality() {
        let a = Thumbprint::of_der(b"a");
        let b = Thumbprint::of_der(b"b");
        assert!(a.ct_eq(&a));
        assert!(!a.ct_eq(&b));
        assert!(!ct_eq_bytes(b"ab", b"abc"));
    }

    fn openssl_x5t(pem: &str) -> String {
        use std::io::Write;
        use std::process::{Command, Stdio};
        // openssl x509 -outform der | openssl dgst -sha256 -binary, then base64url.
        let mut der = Command::new("openssl")
            .args(["x509", "-outform", "der"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl must be installed for this test");
        der.stdin.take().unwrap().write_all(pem.as_bytes()).unwrap();
        let der = der.wait_with_output().unwrap();
        assert!(der.status.success());
        let mut dgst = Command::new("openssl")
            .args(["dgst", "-sha256", "-binary"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        dgst.stdin.take().unwrap().write_all(&der.stdout).unwrap();
        let out = dgst.wait_with_output().unwrap();
        assert!(out.status.success());
        URL_SAFE_NO_PAD.encode(out.stdout)
    }

    fn generated_ec() -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["client.example".to_string()]).unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn thumbprint_of_generated_ec_certificate_matches_openssl() {
        let pem = generated_ec();
        assert_eq!(parse_pem(&pem).unwrap().thumbprint.x5t_s256(), openssl_x5t(&pem));
    }

    #[test]
    fn thumbprint_of_generated_rsa_certificate_matches_openssl() {
        // ring cannot generate RSA keys; openssl generates this one.
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "/dev/null"])
            .args(["-subj", "/CN=rsa-client", "-days", "1"])
            .output()
            .expect("openssl must be installed for this test");
        assert!(out.status.success());
        let pem = String::from_utf8(out.stdout).unwrap();
        assert_eq!(parse_pem(&pem).unwrap().thumbprint.x5t_s256(), openssl_x5t(&pem));
    }

    #[test]
    fn pem_validity_period_is_read() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["c".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let cert = parse_pem(&params.self_signed(&key).unwrap().pem()).unwrap();
        assert_eq!(cert.validity.not_before, 1_577_836_800);
        assert_eq!(cert.validity.not_after, 1_609_459_200);
        assert!(cert.validity.contains(1_600_000_000));
        assert!(!cert.validity.contains(1_700_000_000));
    }

    #[test]
    fn non_certificate_pem_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        assert!(matches!(parse_pem(&key.serialize_pem()), Err(CertError::WrongPemLabel(_))));
        assert_eq!(parse_pem("hello"), Err(CertError::NotPem));
        let bogus = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert!(matches!(parse_pem(bogus), Err(CertError::NotX509(_))));
    }

    #[test]
    fn two_certificates_where_one_is_expected_are_refused() {
        let pem = generated_ec();
        assert_eq!(parse_pem(&format!("{pem}{pem}")), Err(CertError::TrailingData));
    }

    #[test]
    fn subject_and_sans_are_read_for_tls_client_auth() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client.example".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CountryName, "US");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Example");
        params.distinguished_name.push(rcgen::DnType::CommonName, "client");
        params.subject_alt_names.push(rcgen::SanType::URI("spiffe://example/client".try_into().unwrap()));
        params.subject_alt_names.push(rcgen::SanType::IpAddress("10.1.2.3".parse().unwrap()));
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name("client@example.com".try_into().unwrap()));
        let cert = parse_pem(&params.self_signed(&key).unwrap().pem()).unwrap();
        assert_eq!(cert.names().unwrap().subject, crate::dn::parse("CN=client,O=Example,C=US").unwrap());
        assert_eq!(cert.names().unwrap().sans.dns, vec!["client.example"]);
        assert_eq!(cert.names().unwrap().sans.uri, vec!["spiffe://example/client"]);
        assert_eq!(cert.names().unwrap().sans.ip, vec![vec![10, 1, 2, 3]]);
        assert_eq!(cert.names().unwrap().sans.email, vec!["client@example.com"]);
    }

    /// A fixed certificate, made once with `openssl req -x509` (EC P-256, `/C=US/O=Example/CN=client`,
    /// SANs `DNS:client.example, URI:spiffe://example/client, IP:10.1.2.3, email:client@example.com`).
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
    /// `openssl x509 -in fixed.pem -outform der | openssl dgst -sha256`
    const FIXED_SHA256_HEX: &str = "a6d44410e5cc4ac3e4a4dbaed19b35e7ca8a7690c796e824d4ea2f1c888782e3";

    #[test]
    fn fixed_certificate_gives_the_thumbprint_openssl_computed() {
        let cert = parse_pem(FIXED_PEM).unwrap();
        assert_eq!(cert.thumbprint.x5t_s256(), FIXED_X5T);
        assert_eq!(cert.thumbprint.hex(), FIXED_SHA256_HEX);
        assert_eq!(Thumbprint::from_x5t_s256(FIXED_X5T), Ok(cert.thumbprint));
        assert_eq!(Thumbprint::from_hex_digest(FIXED_SHA256_HEX), Ok(Some(cert.thumbprint)));
        assert_eq!(Thumbprint::from_hex_digest(&FIXED_SHA256_HEX.to_uppercase()), Ok(Some(cert.thumbprint)));
        // `openssl x509 -outform der | wc -c`
        assert_eq!(cert.der.len(), 544);
        // The same certificate on one line, as a terminator writes it, is the same thumbprint.
        assert_eq!(parse_pem(&FIXED_PEM.replace('\n', " ")).unwrap().thumbprint.x5t_s256(), FIXED_X5T);
    }

    #[test]
    fn fixed_certificate_gives_the_subject_sans_and_dates_openssl_shows() {
        let cert = parse_pem(FIXED_PEM).unwrap();
        // `openssl x509 -noout -subject -ext subjectAltName -dates`, dates by `date -u -d ... +%s`.
        assert_eq!(cert.names().unwrap().subject, crate::dn::parse("CN=client,O=Example,C=US").unwrap());
        assert_eq!(cert.names().unwrap().sans.dns, vec!["client.example"]);
        assert_eq!(cert.names().unwrap().sans.uri, vec!["spiffe://example/client"]);
        assert_eq!(cert.names().unwrap().sans.ip, vec![vec![10, 1, 2, 3]]);
        assert_eq!(cert.names().unwrap().sans.email, vec!["client@example.com"]);
        // notBefore=Nov 28 04:13:59 2026 GMT, notAfter=Nov  4 04:13:59 2126 GMT
        assert_eq!(cert.validity, Validity { not_before: 1_795_839_239, not_after: 4_949_439_239 });
    }

    fn x509_parser_reads(der: &[u8]) -> Option<Validity> {
        let (rest, c) = X509Certificate::from_der(der).ok()?;
        rest.is_empty().then(|| Validity {
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
        })
    }

    #[test]
    fn the_der_walk_reads_the_validity_x509_parser_reads() {
        // UTCTime both sides of 2000 and up to 2049, GeneralizedTime from 2050, leap days, before 1970.
        let dates = [
            ((1950, 1, 1), (1999, 12, 31)),
            ((1960, 2, 29), (2000, 2, 29)),
            ((2000, 1, 1), (2049, 12, 31)),
            ((2024, 2, 29), (2050, 1, 1)),
            ((2049, 12, 31), (9999, 12, 31)),
            ((2026, 12, 7), (2100, 2, 28)),
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        for ((y0, m0, d0), (y1, m1, d1)) in dates {
            let mut params = rcgen::CertificateParams::new(vec!["c".to_string()]).unwrap();
            params.not_before = rcgen::date_time_ymd(y0, m0, d0);
            params.not_after = rcgen::date_time_ymd(y1, m1, d1);
            let der = params.self_signed(&key).unwrap().der().to_vec();
            let walked = read_der(&der).unwrap();
            assert_eq!(Some(walked.validity), x509_parser_reads(&der), "{y0}-{m0}-{d0} .. {y1}-{m1}-{d1}");
            assert_eq!(walked.thumbprint, Thumbprint::of_der(&der));
        }
        let fixed = parse_pem(FIXED_PEM).unwrap();
        assert_eq!(read_der(&fixed.der).unwrap(), fixed);
    }

    #[test]
    fn every_byte_changed_the_der_walk_and_x509_parser_read_the_same_validity() {
        // Each byte of a real certificate set to a few values. Where both read one
        // certificate, the dates are the same. What the walk reads and x509-parser
        // does not is refused by `names` (tls_client_auth). What x509-parser reads and
        // the walk refuses is x509-parser's leniency (it skips what follows a field it
        // cannot read in tbsCertificate, and a malformed length there): counted, never
        // a change to the validity itself.
        let der = parse_pem(FIXED_PEM).unwrap().der;
        let validity_at = der.windows(13).position(|w| w == b"261128041359Z").unwrap() - 4;
        let validity = validity_at..validity_at + 34;
        let (mut both, mut walk_only, mut x509_only) = (0, 0, 0);
        for i in 0..der.len() {
            for v in [0x00, 0x01, 0x17, 0x18, 0x30, 0x7f, 0x80, 0x81, 0xa0, 0xff, der[i] ^ 0x01] {
                let mut m = der.clone();
                m[i] = v;
                match (read_der(&m), x509_parser_reads(&m)) {
                    (Ok(c), Some(dates)) => {
                        assert_eq!(c.validity, dates, "byte {i} = {v:#04x}");
                        both += 1;
                    }
                    (Ok(c), None) => {
                        assert!(c.names().is_err() && parse_der(&m).is_err(), "byte {i} = {v:#04x}");
                        walk_only += 1;
                    }
                    (Err(_), Some(_)) => {
                        assert!(!validity.contains(&i), "byte {i} = {v:#04x} of the validity");
                        x509_only += 1;
                    }
                    (Err(_), None) => {}
                }
            }
        }
        assert!(both > 1000, "{both}");
        assert!(walk_only < both && x509_only * 20 < both, "{both} {walk_only} {x509_only}");
    }

    #[test]
    fn the_der_walk_refuses_truncations_trailing_bytes_and_other_time_forms() {
        let der = parse_pem(FIXED_PEM).unwrap().der;
        for n in 0..der.len() {
            assert!(read_der(&der[..n]).is_err(), "truncated to {n}");
        }
        let mut longer = der.clone();
        longer.push(0);
        assert_eq!(read_der(&longer), Err(CertError::TrailingData));
        assert_eq!(parse_der(&longer), Err(CertError::TrailingData));
        // notBefore is the UTCTime `261128041359Z`: a local time, fractions or a 31st of November are refused.
        let at = der.windows(13).position(|w| w == b"261128041359Z").unwrap();
        for (bad, what) in
            [(b"261128041359+", "offset"), (b"261131041359Z", "31 November"), (b"26112804135aZ", "letter")]
        {
            let mut m = der.clone();
            m[at..at + 13].copy_from_slice(bad);
            assert!(matches!(read_der(&m), Err(CertError::NotX509(_))), "{what}");
        }
        assert!(matches!(read_der(&[0x30, 0x80, 0, 0]), Err(CertError::NotX509(_))));
        assert!(matches!(read_der(&[0x30, 0x85, 1, 1, 1, 1, 1]), Err(CertError::NotX509(_))));
    }
}
