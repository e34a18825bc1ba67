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

/// A parsed certificate: its thumbprint and what client authentication needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub thumbprint: Thumbprint,
    pub validity: Validity,
    pub subject: Dn,
    pub sans: Sans,
    pub der: Vec<u8>,
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

/// Parses one DER certificate.
pub fn parse_der(der: &[u8]) -> Result<ClientCert, CertError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CertError::NotX509(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::TrailingData);
    }
    let v = cert.validity();
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
    Ok(ClientCert {
        thumbprint: Thumbprint::of_der(der),
        validity: Validity { not_before: v.not_before.timestamp(), not_after: v.not_after.timestamp() },
        subject,
        sans,
        der: der.to_vec(),
    })
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
        B64_LENIENT.decode(bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect::<Vec<u8>>())
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
        assert_eq!(cert.subject, crate::dn::parse("CN=client,O=Example,C=US").unwrap());
        assert_eq!(cert.sans.dns, vec!["client.example"]);
        assert_eq!(cert.sans.uri, vec!["spiffe://example/client"]);
        assert_eq!(cert.sans.ip, vec![vec![10, 1, 2, 3]]);
        assert_eq!(cert.sans.email, vec!["client@example.com"]);
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
        assert_eq!(cert.subject, crate::dn::parse("CN=client,O=Example,C=US").unwrap());
        assert_eq!(cert.sans.dns, vec!["client.example"]);
        assert_eq!(cert.sans.uri, vec!["spiffe://example/client"]);
        assert_eq!(cert.sans.ip, vec![vec![10, 1, 2, 3]]);
        assert_eq!(cert.sans.email, vec!["client@example.com"]);
        // notBefore=Nov 28 04:13:59 2026 GMT, notAfter=Nov  4 04:13:59 2126 GMT
        assert_eq!(cert.validity, Validity { not_before: 1_795_839_239, not_after: 4_949_439_239 });
    }
}
