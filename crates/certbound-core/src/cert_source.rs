//! Certificate in, from all configured sources: the TLS connection Envoy
//! terminated and headers written by TLS terminators. A header is believed
//! only when its sender is trusted; otherwise it is removed, never used.

use crate::cert::{ClientCert, Thumbprint};
use crate::cert_header::{self, ForwardFormat, HeaderCert, HeaderFormat, XfccElement};
use crate::dn::Dn;
use crate::error::Reason;
use std::net::IpAddr;

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client seen on an IPv6 socket (::ffff:a.b.c.d) is that IPv4
        // address, whether the range is written as IPv4 or IPv4-mapped IPv6.
        let (range, ip, bits) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
            (IpAddr::V4(a), IpAddr::V6(b)) => match b.to_ipv4_mapped() {
                Some(b) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
                None => return false,
            },
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            (IpAddr::V6(a), IpAddr::V4(b)) => (u128::from(a), u128::from(b.to_ipv6_mapped()), 128),
        };
        let host_bits = bits - u32::from(self.prefix.min(bits as u8));
        range.checked_shr(host_bits).unwrap_or(0) == ip.checked_shr(host_bits).unwrap_or(0)
    }
}

/// Who may write a certificate header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// Every request comes through a terminator that overwrites the header.
    pub always: bool,
    /// The downstream connection's source address is in one of these.
    pub source_cidrs: Vec<Cidr>,
    /// The downstream connection's peer certificate has one of these subjects.
    pub peer_subjects: Vec<Dn>,
    /// The downstream connection's peer certificate has this DNS SAN.
    pub peer_dns_sans: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSource {
    pub name: String,
    pub format: HeaderFormat,
    pub xfcc_element: XfccElement,
    pub trust: Trust,
    /// The terminator writing this header verified the client's chain (needed for `tls_client_auth`).
    pub chain_verified: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefer {
    Connection,
    Header,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub name: String,
    pub format: ForwardFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub connection: bool,
    /// This Envoy's listener verifies client chains (no `ACCEPT_UNTRUSTED`).
    pub connection_chain_verified: bool,
    pub headers: Vec<HeaderSource>,
    pub prefer: Prefer,
    pub max_header_bytes: usize,
    pub forward: Option<Forward>,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            connection: true,
            connection_chain_verified: false,
            headers: Vec::new(),
            prefer: Prefer::Connection,
            max_header_bytes: 16 * 1024,
            forward: None,
        }
    }
}

/// What the host knows of the request.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    pub connection: Option<Thumbprint>,
    pub source_ip: Option<IpAddr>,
    /// Envoy's `connection.subject_peer_certificate` (RFC 2253).
    pub peer_subject: Option<&'a str>,
    pub peer_dns_san: Option<&'a str>,
    /// Values of each configured header, in config order.
    pub headers: Vec<Vec<&'a str>>,
    pub now: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Connection,
    Header(usize),
}

/// The certificate this request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub thumbprint: Thumbprint,
    /// The parsed certificate, when a source carried it (headers do; the
    /// connection gives only its digest).
    pub cert: Option<ClientCert>,
    pub chain_verified: bool,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A header from a sender the config does not trust was removed.
    UntrustedHeaderRemoved(String),
    /// The connection and a trusted header named different certificates; the loser was removed.
    Conflict { kept: Origin },
}

/// The outcome: the certificate (if any), headers to remove before upstream, and what to log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    pub presented: Option<Presented>,
    pub remove: Vec<String>,
    pub events: Vec<Event>,
}

/// A certificate source that was trusted but unusable. `bad_request`: the
/// request is malformed (400); otherwise the certificate is refused (401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertProblem {
    pub reason: Reason,
    pub bad_request: bool,
    pub description: String,
}

fn problem(reason: Reason, bad_request: bool, description: impl Into<String>) -> CertProblem {
    CertProblem { reason, bad_request, description: description.into() }
}

fn trusted(t: &Trust, f: &Facts<'_>) -> bool {
    if t.always {
        return true;
    }
    if let Some(ip) = f.source_ip {
        if t.source_cidrs.iter().any(|c| c.contains(ip)) {
            return true;
        }
    }
    if let Some(subject) = f.peer_subject.and_then(|s| crate::dn::parse(s).ok()) {
        if t.peer_subjects.contains(&subject) {
            return true;
        }
    }
    if let Some(san) = f.peer_dns_san {
        if t.peer_dns_sans.iter().any(|s| s.eq_ignore_ascii_case(san)) {
            return true;
        }
    }
    false
}

fn check_validity(cert: &ClientCert, now: i64) -> Result<(), CertProblem> {
    if now < cert.validity.not_before {
        return Err(problem(Reason::CertificateNotYetValid, false, "the client certificate is not valid yet"));
    }
    if now > cert.validity.not_after {
        return Err(problem(Reason::CertificateExpired, false, "the client certificate has expired"));
    }
    Ok(())
}

/// Decides which certificate the request presented.
pub fn resolve(s: &Sources, f: &Facts<'_>) -> Result<Resolution, CertProblem> {
    let mut out = Resolution::default();
    let mut from_headers: Option<Presented> = None;
    for (i, h) in s.headers.iter().enumerate() {
        let values = f.headers.get(i).map(Vec::as_slice).unwrap_or_default();
        if values.is_empty() {
            continue;
        }
        if !trusted(&h.trust, f) {
            out.remove.push(h.name.clone());
            out.events.push(Event::UntrustedHeaderRemoved(h.name.clone()));
            continue;
        }
        if values.len() > 1 {
            return Err(problem(
                Reason::DuplicateCertificateHeader,
                true,
                format!("{} appears more than once", h.name),
            ));
        }
        let value = values.first().copied().unwrap_or_default();
        if value.len() > s.max_header_bytes {
            return Err(problem(
                Reason::CertificateHeaderTooLarge,
                true,
                format!("{} is larger than {} bytes", h.name, s.max_header_bytes),
            ));
        }
        let parsed = cert_header::parse(value, h.format, h.xfcc_element)
            .map_err(|e| problem(Reason::BadCertificateHeader, true, format!("{}: {e}", h.name)))?;
        let presented = match parsed {
            HeaderCert::Full(cert) => {
                check_validity(&cert, f.now)?;
                Presented {
                    thumbprint: cert.thumbprint,
                    cert: Some(cert),
                    chain_verified: h.chain_verified,
                    origin: Origin::Header(i),
                }
            }
            HeaderCert::HashOnly(t) => {
                Presented { thumbprint: t, cert: None, chain_verified: h.chain_verified, origin: Origin::Header(i) }
            }
        };
        match &from_headers {
            Some(first) if !first.thumbprint.ct_eq(&presented.thumbprint) => {
                return Err(problem(
                    Reason::ConflictingCertificates,
                    true,
                    "certificate headers name different certificates",
                ));
            }
            Some(_) => {}
            None => from_headers = Some(presented),
        }
    }

    let connection = if s.connection { f.connection } else { None };
    out.presented = match (connection, from_headers) {
        (None, None) => None,
        (Some(t), None) => Some(Presented {
            thumbprint: t,
            cert: None,
            chain_verified: s.connection_chain_verified,
            origin: Origin::Connection,
        }),
        (None, Some(h)) => Some(h),
        (Some(t), Some(h)) if t.ct_eq(&h.thumbprint) => {
            // The same certificate: the header adds its details.
            Some(Presented {
                chain_verified: h.chain_verified || s.connection_chain_verified,
                origin: Origin::Connection,
                ..h
            })
        }
        (Some(t), Some(h)) => match s.prefer {
            Prefer::Connection => {
                if let Origin::Header(i) = h.origin {
                    if let Some(hs) = s.headers.get(i) {
                        out.remove.push(hs.name.clone());
                    }
                }
                out.events.push(Event::Conflict { kept: Origin::Connection });
                Some(Presented {
                    thumbprint: t,
                    cert: None,
                    chain_verified: s.connection_chain_verified,
                    origin: Origin::Connection,
                })
            }
            Prefer::Header => {
                out.events.push(Event::Conflict { kept: h.origin });
                Some(h)
            }
        },
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before_year: i32, not_after_year: i32) -> (String, Thumbprint) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before_year, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        let c = params.self_signed(&key).unwrap();
        (c.pem().replace('\n', ""), Thumbprint::of_der(c.der()))
    }

    const NOW: i64 = 1_800_000_000; // 2027

    fn header(trust: Trust) -> HeaderSource {
        HeaderSource {
            name: "x-client-cert".into(),
            format: HeaderFormat::Auto,
            xfcc_element: XfccElement::Last,
            trust,
            chain_verified: true,
        }
    }

    fn sources(trust: Trust) -> Sources {
        Sources { headers: vec![header(trust)], ..Sources::default() }
    }

    fn always() -> Trust {
        Trust { always: true, ..Trust::default() }
    }

    fn facts<'a>(connection: Option<Thumbprint>, values: Vec<&'a str>) -> Facts<'a> {
        Facts { connection, headers: vec![values], now: NOW, ..Facts::default() }
    }

    #[test]
    fn cidrs_match_ipv4_and_ipv6() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense/8").is_none());
        assert!(Cidr::parse("10.0.0.0/7").unwrap().contains("11.255.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("192.0.2.1".parse().unwrap()));
        assert!(Cidr::parse("::/0").unwrap().contains("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn an_ipv4_mapped_range_matches_ipv4_clients_either_way_they_are_seen() {
        // Found by the `cert_source` fuzz target: the range did not contain its own address.
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains("::ffff:10.9.8.7".parse().unwrap()));
        assert!(mapped.contains("10.9.8.7".parse().unwrap()));
        assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::ffff:0:0/96").unwrap().contains("::ffff:0.0.0.0".parse().unwrap()));
        assert!(!Cidr::parse("10.0.0.0/8").unwrap().contains("::10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn connection_certificate_is_used_without_headers() {
        let t = Thumbprint::of_der(b"c");
        let r = resolve(&Sources::default(), &facts(Some(t), vec![])).unwrap();
        assert_eq!(r.presented.unwrap().thumbprint, t);
    }

    #[test]
    fn trusted_header_is_parsed_with_details() {
        let (pem, t) = cert(2020, 2030);
        let r = resolve(&sources(always()), &facts(None, vec![&pem])).unwrap();
        let p = r.presented.unwrap();
        assert_eq!(p.thumbprint, t);
        assert!(p.cert.is_some() && p.chain_verified);
        assert!(r.remove.is_empty());
    }

    #[test]
    fn untrusted_header_is_removed_and_never_believed() {
        let (pem, _) = cert(2020, 2030);
        let conn = Thumbprint::of_der(b"connection");
        let trust = Trust { source_cidrs: vec![Cidr::parse("10.0.0.0/8").unwrap()], ..Trust::default() };
        let mut f = facts(Some(conn), vec![&pem]);
        f.source_ip = Some("127.0.0.1".parse().unwrap());
        let r = resolve(&sources(trust), &f).unwrap();
        assert_eq!(r.presented.unwrap().thumbprint, conn);
        assert_eq!(r.remove, vec!["x-client-cert"]);
        assert_eq!(r.events, vec![Event::UntrustedHeaderRemoved("x-client-cert".into())]);
    }

    #[test]
    fn header_from_a_trusted_source_address_is_believed() {
        let (pem, t) = cert(2020, 2030);
        let trust = Trust { source_cidrs: vec![Cidr::parse("10.0.0.0/8").unwrap()], ..Trust::default() };
        let mut f = facts(None, vec![&pem]);
        f.source_ip = Some("10.9.9.9".parse().unwrap());
        assert_eq!(resolve(&sources(trust), &f).unwrap().presented.unwrap().thumbprint, t);
    }

    #[test]
    fn header_from_a_trusted_proxy_certificate_is_believed() {
        let (pem, t) = cert(2020, 2030);
        let trust = Trust { peer_subjects: vec![crate::dn::parse("CN=edge,O=Example").unwrap()], ..Trust::default() };
        let mut f = facts(None, vec![&pem]);
        f.peer_subject = Some("CN=edge, O=Example");
        assert_eq!(resolve(&sources(trust.clone()), &f).unwrap().presented.unwrap().thumbprint, t);
        f.peer_subject = Some("CN=mallory,O=Example");
        assert!(resolve(&sources(trust), &f).unwrap().presented.is_none());
        let by_san = Trust { peer_dns_sans: vec!["edge.example".into()], ..Trust::default() };
        let mut f = facts(None, vec![&pem]);
        f.peer_dns_san = Some("EDGE.example");
        assert!(resolve(&sources(by_san), &f).unwrap().presented.is_some());
    }

    #[test]
    fn connection_wins_a_conflict_by_default_and_the_header_is_removed() {
        let (pem, _) = cert(2020, 2030);
        let conn = Thumbprint::of_der(b"connection");
        let r = resolve(&sources(always()), &facts(Some(conn), vec![&pem])).unwrap();
        assert_eq!(r.presented.unwrap().thumbprint, conn);
        assert_eq!(r.remove, vec!["x-client-cert"]);
        assert_eq!(r.events, vec![Event::Conflict { kept: Origin::Connection }]);
    }

    #[test]
    fn header_wins_a_conflict_when_configured() {
        let (pem, t) = cert(2020, 2030);
        let s = Sources { prefer: Prefer::Header, ..sources(always()) };
        let r = resolve(&s, &facts(Some(Thumbprint::of_der(b"c")), vec![&pem])).unwrap();
        assert_eq!(r.presented.unwrap().thumbprint, t);
    }

    #[test]
    fn same_certificate_on_connection_and_header_keeps_the_details() {
        let (pem, t) = cert(2020, 2030);
        let p = resolve(&sources(always()), &facts(Some(t), vec![&pem])).unwrap().presented.unwrap();
        assert!(p.cert.is_some());
        assert_eq!(p.origin, Origin::Connection);
    }

    #[test]
    fn expired_and_not_yet_valid_certificates_are_refused() {
        let (old, _) = cert(2020, 2021);
        let e = resolve(&sources(always()), &facts(None, vec![&old])).unwrap_err();
        assert_eq!((e.reason, e.bad_request), (Reason::CertificateExpired, false));
        let (future, _) = cert(2030, 2031);
        assert_eq!(
            resolve(&sources(always()), &facts(None, vec![&future])).unwrap_err().reason,
            Reason::CertificateNotYetValid
        );
    }

    #[test]
    fn malformed_duplicate_and_oversized_headers_are_bad_requests() {
        let (pem, _) = cert(2020, 2030);
        let e = resolve(&sources(always()), &facts(None, vec!["garbage!"])).unwrap_err();
        assert_eq!((e.reason, e.bad_request), (Reason::BadCertificateHeader, true));
        let e = resolve(&sources(always()), &facts(None, vec![&pem, &pem])).unwrap_err();
        assert_eq!(e.reason, Reason::DuplicateCertificateHeader);
        let big = "A".repeat(64 * 1024);
        let e = resolve(&sources(always()), &facts(None, vec![&big])).unwrap_err();
        assert_eq!(e.reason, Reason::CertificateHeaderTooLarge);
    }

    /// Unix seconds of 1 January `year`, 00:00 UTC (rcgen's `date_time_ymd`).
    fn jan_first(year: i32) -> i64 {
        let days: i64 =
            (1970..year).map(|y| if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 { 366 } else { 365 }).sum();
        days * 86_400
    }

    #[test]
    fn a_certificate_is_valid_from_its_first_second_to_its_last() {
        let (pem, t) = cert(2027, 2028);
        let at = |now: i64| resolve(&sources(always()), &Facts { now, ..facts(None, vec![&pem]) });
        assert_eq!(at(jan_first(2027)).unwrap().presented.unwrap().thumbprint, t);
        assert_eq!(at(jan_first(2027) - 1).unwrap_err().reason, Reason::CertificateNotYetValid);
        assert_eq!(at(jan_first(2028)).unwrap().presented.unwrap().thumbprint, t);
        assert_eq!(at(jan_first(2028) + 1).unwrap_err().reason, Reason::CertificateExpired);
    }

    #[test]
    fn a_header_of_exactly_max_header_bytes_is_read_and_one_byte_more_is_refused() {
        let (pem, t) = cert(2020, 2030);
        let s = Sources { max_header_bytes: pem.len(), ..sources(always()) };
        assert_eq!(resolve(&s, &facts(None, vec![&pem])).unwrap().presented.unwrap().thumbprint, t);
        let s = Sources { max_header_bytes: pem.len() - 1, ..sources(always()) };
        assert_eq!(resolve(&s, &facts(None, vec![&pem])).unwrap_err().reason, Reason::CertificateHeaderTooLarge);
    }

    fn two_trusted_headers() -> Sources {
        let second = HeaderSource { name: "x-other-cert".into(), ..header(always()) };
        Sources { headers: vec![header(always()), second], ..Sources::default() }
    }

    #[test]
    fn two_trusted_headers_naming_one_certificate_agree_and_naming_two_conflict() {
        let (pem, t) = cert(2020, 2030);
        let (other, _) = cert(2020, 2030);
        let same = Facts { headers: vec![vec![&pem], vec![&pem]], ..facts(None, vec![]) };
        let r = resolve(&two_trusted_headers(), &same).unwrap();
        assert_eq!(r.presented.map(|p| (p.thumbprint, p.origin)), Some((t, Origin::Header(0))));
        let different = Facts { headers: vec![vec![&pem], vec![&other]], ..facts(None, vec![]) };
        let e = resolve(&two_trusted_headers(), &different).unwrap_err();
        assert_eq!((e.reason, e.bad_request), (Reason::ConflictingCertificates, true));
    }

    #[test]
    fn a_header_naming_the_connections_certificate_is_chain_verified_if_either_source_is() {
        let (pem, t) = cert(2020, 2030);
        let unverified = HeaderSource { chain_verified: false, ..header(always()) };
        for (header_verified, connection_verified) in [(false, true), (true, false), (false, false), (true, true)] {
            let h = HeaderSource { chain_verified: header_verified, ..unverified.clone() };
            let s = Sources { headers: vec![h], connection_chain_verified: connection_verified, ..Sources::default() };
            let p = resolve(&s, &facts(Some(t), vec![&pem])).unwrap().presented.unwrap();
            assert_eq!(
                p.chain_verified,
                header_verified || connection_verified,
                "{header_verified} {connection_verified}"
            );
            assert!(p.cert.is_some());
        }
    }

    #[test]
    fn garbage_in_an_untrusted_header_is_just_removed() {
        let r = resolve(&sources(Trust::default()), &facts(None, vec!["garbage!"])).unwrap();
        assert!(r.presented.is_none());
        assert_eq!(r.remove, vec!["x-client-cert"]);
    }

    #[test]
    fn connection_source_can_be_disabled() {
        let s = Sources { connection: false, ..Sources::default() };
        assert!(resolve(&s, &facts(Some(Thumbprint::of_der(b"c")), vec![])).unwrap().presented.is_none());
    }
}
