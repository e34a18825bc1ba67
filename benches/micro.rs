#![allow(clippy::expect_used)] // benchmark setup, not filter code
//! The hot functions, natively: certificate from each header format to
//! `x5t#S256`, the client-authentication decision, binding records, the
//! introspection patch of a 1 KiB body, the token hash of every lookup.

use certbound_core::binding::{key_for_token, Binding, TokenKind};
use certbound_core::cert::Thumbprint;
use certbound_core::cert_header::{self, HeaderFormat, XfccElement};
use certbound_core::cert_source::{Origin, Presented};
use certbound_core::client_auth::{authenticate, TokenRequest};
use certbound_core::introspection::add_cnf;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn url_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn certificate_formats(c: &mut Criterion) {
    use base64::Engine;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert =
        rcgen::CertificateParams::new(vec!["client.example".into()]).expect("params").self_signed(&key).expect("cert");
    let pem = cert.pem();
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.der());
    let cases = [
        ("pem_one_line", pem.replace('\n', ""), HeaderFormat::Pem),
        ("url_encoded_pem", url_encode(&pem), HeaderFormat::UrlEncodedPem),
        ("base64_der", b64.clone(), HeaderFormat::Base64Der),
        ("rfc9440", format!(":{b64}:"), HeaderFormat::Rfc9440),
        ("xfcc", format!("Hash=00;Cert=\"{}\"", url_encode(&pem)), HeaderFormat::Xfcc),
        ("traefik", url_encode(&b64), HeaderFormat::Traefik),
        ("auto_pem_one_line", pem.replace('\n', ""), HeaderFormat::Auto),
    ];
    for (name, value, format) in cases {
        c.bench_function(&format!("x5t_from_{name}"), |b| {
            b.iter(|| {
                cert_header::parse(black_box(&value), format, XfccElement::Last).map(|h| h.thumbprint().x5t_s256())
            })
        });
    }
    let hex = Thumbprint::of_der(cert.der()).hex();
    c.bench_function("x5t_from_envoy_connection_digest", |b| {
        b.iter(|| Thumbprint::from_hex_digest(black_box(&hex)).map(|t| t.map(|t| t.x5t_s256())))
    });
}

fn client_authentication(c: &mut Criterion) {
    let pins: Vec<String> = (0..3).map(|i| Thumbprint::of_der(format!("cert-{i}").as_bytes()).x5t_s256()).collect();
    let mut clients = Vec::new();
    for i in 0..1000 {
        clients.push(serde_json::json!({"client_id": format!("client-{i}"),
            "token_endpoint_auth_method": "self_signed_tls_client_auth", "thumbprints": pins,
            "upstream": {"client_secret": "s"}}));
    }
    let config = certbound_core::config::parse(serde_json::json!({ "clients": clients }).to_string().as_bytes())
        .expect("config");
    let presented = Presented {
        thumbprint: Thumbprint::of_der(b"cert-2"),
        cert: None,
        chain_verified: false,
        origin: Origin::Connection,
    };
    let body = b"grant_type=client_credentials&client_id=client-500&scope=api";
    c.bench_function("client_authentication_decision_1000_clients", |b| {
        b.iter(|| {
            authenticate(
                &config.clients,
                &TokenRequest {
                    content_type: Some("application/x-www-form-urlencoded"),
                    authorization: None,
                    body: black_box(body),
                    certificate: Some(&presented),
                    now: 1_800_000_000,
                },
            )
        })
    });
}

fn bindings(c: &mut Criterion) {
    let b = Binding { thumbprint: Thumbprint::of_der(b"c"), kind: TokenKind::Access, expires_at: 1_800_000_000 };
    let encoded = b.encode();
    c.bench_function("binding_record_encode", |x| x.iter(|| black_box(&b).encode()));
    c.bench_function("binding_record_decode", |x| x.iter(|| Binding::decode(black_box(&encoded))));
    let token = "A".repeat(43);
    c.bench_function("token_hash_key", |x| x.iter(|| key_for_token(black_box(&token))));
    // A JWS (ES256) keyed on its decoded segments.
    let jws = format!(
        "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.{}.{}",
        "eyJzdWIiOiJjMSIsImNsaWVudF9pZCI6ImMxIiwiZXhwIjoxODAwMDAwMDAwfQ",
        "A".repeat(86)
    );
    c.bench_function("token_hash_key_jws", |x| x.iter(|| key_for_token(black_box(&jws))));
}

fn introspection_patch(c: &mut Criterion) {
    let mut body =
        String::from(r#"{"active":true,"client_id":"client-500","scope":"api","token_type":"Bearer","exp":1800000000"#);
    let mut i = 0;
    while body.len() < 1000 {
        body.push_str(&format!(r#","ext_{i}":"value-{i}-padding-padding""#));
        i += 1;
    }
    body.push('}');
    let t = Thumbprint::of_der(b"c");
    c.bench_function("introspection_patch_1kib", |b| b.iter(|| add_cnf(black_box(body.as_bytes()), &t)));
}

criterion_group!(benches, certificate_formats, client_authentication, bindings, introspection_patch);
criterion_main!(benches);
