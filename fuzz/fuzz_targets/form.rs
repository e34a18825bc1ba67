//! Form bodies, HTTP Basic and Bearer credentials, and the client
//! authentication decision on them, for each kind of client (public,
//! `self_signed_tls_client_auth` with a pinned thumbprint, `tls_client_auth`
//! by subject DN) and each kind of presented certificate.
//!
//! Input: one selector byte, then the request. The selector's low bits pick
//! the certificate presented; with its high bit set, the first line of the
//! rest is the `Authorization` header and the remainder the body.
#![no_main]
use certbound::cert::{ClientCert, Thumbprint, Validity};
use certbound::cert_source::{Origin, Presented};
use certbound::{binding, client_auth, config, form, introspection, resource};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;
/// Made once with `openssl req -x509 -newkey ec -subj "/C=US/O=Example Org/CN=client" -outform der`.
const PINNED_DER: &[u8] = include_bytes!("../data/pinned.der");
/// The same with `CN=other`.
const OTHER_DER: &[u8] = include_bytes!("../data/other.der");
const SUBJECT: &str = "CN=client,O=Example Org,C=US";

fn pinned() -> Thumbprint {
    Thumbprint::of_der(PINNED_DER)
}

thread_local! {
    static CONFIG: config::Config = config::parse(
        serde_json::json!({"clients": [
            {"client_id": "c", "token_endpoint_auth_method": "none"},
            {"client_id": "pinned", "token_endpoint_auth_method": "self_signed_tls_client_auth",
             "thumbprints": [pinned().x5t_s256()]},
            {"client_id": "dn-client", "token_endpoint_auth_method": "tls_client_auth",
             "tls_client_auth_subject_dn": SUBJECT},
        ]})
        .to_string()
        .as_bytes(),
    )
    .expect("the fuzz configuration parses");
}

/// A certificate as a header gives it, its validity set by the case.
fn cert(der: &[u8], validity: Validity) -> ClientCert {
    ClientCert { thumbprint: Thumbprint::of_der(der), validity, der: der.to_vec() }
}

/// The certificate presented, chosen by the selector.
fn presented(selector: u8) -> Option<Presented> {
    let always = Validity { not_before: 0, not_after: i64::MAX };
    let connection =
        |t: Thumbprint| Presented { thumbprint: t, cert: None, chain_verified: false, origin: Origin::Connection };
    let header = |c: ClientCert, verified: bool| Presented {
        thumbprint: c.thumbprint,
        cert: Some(c),
        chain_verified: verified,
        origin: Origin::Header(0),
    };
    match selector % 8 {
        0 => None,
        1 => Some(connection(pinned())),
        2 => Some(connection(Thumbprint::of_der(b"stranger"))),
        3 => Some(header(cert(PINNED_DER, always), true)),
        4 => Some(header(cert(b"dn-cert", always), false)),
        5 => Some(header(cert(OTHER_DER, always), true)),
        6 => Some(header(cert(b"expired-cert", Validity { not_before: 0, not_after: NOW - 1 }), true)),
        _ => Some(Presented { chain_verified: true, ..connection(pinned()) }),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let _ = certbound::params::judge(rest, client_auth::TOKEN_PARAMETERS);
    let _ = introspection::token_param(Some("application/x-www-form-urlencoded"), rest);
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = form::parse_basic(text);
        let _ = resource::credentials(Some(text));
        let _ = resource::check_query(text, None);
        let _ = certbound::params::check_charset(Some(text));
        let _ = form::is_form_content_type(text);
    }

    let (authorization, body) = if selector & 0x80 != 0 {
        let (line, body) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        let Ok(line) = std::str::from_utf8(line) else { return };
        (Some(line), body)
    } else {
        (None, rest)
    };
    let certificate = presented(selector);
    let req = client_auth::TokenRequest {
        content_type: Some("application/x-www-form-urlencoded"),
        authorization,
        body,
        certificate: certificate.as_ref(),
        now: NOW,
    };
    let result = CONFIG.with(|cfg| client_auth::authenticate(&cfg.clients, &req));
    match result {
        Err(e) => assert!(e.status == 400 || e.status == 401, "{e:?}"),
        Ok(a) => {
            let shown = certificate.as_ref().map(|p| p.thumbprint);
            match a.client_id.as_str() {
                // A public client's tokens are bound to whatever it presented, if anything.
                "c" => assert_eq!(a.thumbprint, shown),
                // Only the pinned certificate authenticates the pinned client.
                "pinned" => assert_eq!((a.thumbprint, shown), (Some(pinned()), Some(pinned()))),
                // Only a verified chain with the registered subject, within its validity.
                "dn-client" => {
                    let p = certificate.as_ref().expect("tls_client_auth without a certificate");
                    let c = p.cert.as_ref().expect("tls_client_auth without the certificate's subject");
                    assert!(p.chain_verified && c.validity.contains(NOW));
                    assert_eq!(c.names().unwrap().subject, certbound::dn::parse(SUBJECT).unwrap());
                    assert_eq!(a.thumbprint, Some(p.thumbprint));
                }
                other => panic!("authenticated as an unregistered client {other:?}"),
            }
            assert_eq!(a.upstream_authorization, None);
            if let Some(k) = &a.refresh_key {
                assert!(k.key.starts_with(binding::KEY_PREFIX));
            }
        }
    }
});
