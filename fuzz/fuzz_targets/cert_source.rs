//! Certificate-source resolution: CIDR parsing, trust by source address and
//! by the peer's subject or SAN, header parsing, conflicts. Properties: a
//! header is never believed from an untrusted sender (it is removed), and a
//! presented certificate comes from the connection or a trusted header.
#![no_main]
use certbound::cert::Thumbprint;
use certbound::cert_header::{HeaderFormat, XfccElement};
use certbound::cert_source::{resolve, Cidr, Facts, HeaderSource, Origin, Prefer, Sources, Trust};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\n');
    let (cidr, ip, subject, san, value) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    // CIDR parsing never panics, and a parsed range contains its own address.
    let parsed = Cidr::parse(cidr);
    if let (Some(c), Some(addr)) = (&parsed, cidr.split('/').next().and_then(|a| a.parse::<IpAddr>().ok())) {
        assert!(c.contains(addr), "{cidr:?} does not contain {addr}");
    }
    let trust = Trust {
        always: false,
        source_cidrs: parsed.into_iter().collect(),
        peer_subjects: certbound::dn::parse("CN=edge,O=certbound test").into_iter().collect(),
        peer_dns_sans: vec!["edge.example".into()],
    };
    let sources = Sources {
        connection: true,
        connection_chain_verified: true,
        headers: vec![HeaderSource {
            name: "x-client-cert".into(),
            format: HeaderFormat::Auto,
            xfcc_element: if data.len() % 2 == 0 { XfccElement::Last } else { XfccElement::First },
            trust: trust.clone(),
            chain_verified: false,
        }],
        prefer: if data.len() % 3 == 0 { Prefer::Header } else { Prefer::Connection },
        max_header_bytes: 16 * 1024,
        forward: None,
    };
    let facts = Facts {
        connection: (data.len() % 5 == 0).then(|| Thumbprint::of_der(b"connection")),
        source_ip: ip.parse().ok(),
        peer_subject: Some(subject),
        peer_dns_san: Some(san),
        headers: vec![if value.is_empty() { vec![] } else { vec![value] }],
        now: 1_800_000_000,
    };
    let trusted_sender = facts.source_ip.is_some_and(|a| trust.source_cidrs.iter().any(|c| c.contains(a)))
        || certbound::dn::parse(subject).is_ok_and(|d| trust.peer_subjects.contains(&d))
        || san.eq_ignore_ascii_case("edge.example");
    if let Ok(resolution) = resolve(&sources, &facts) {
        if let Some(p) = &resolution.presented {
            match p.origin {
                Origin::Connection => assert_eq!(Some(p.thumbprint), facts.connection),
                Origin::Header(_) => assert!(trusted_sender, "a header believed from {ip:?} {subject:?} {san:?}"),
            }
        }
        if !trusted_sender && !value.is_empty() {
            assert!(resolution.remove.iter().any(|h| h == "x-client-cert"), "an untrusted header was kept");
        }
    }
});
