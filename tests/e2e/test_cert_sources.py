"""Every way a client certificate arrives, and no way to forge one: a
two-hop topology (outer Envoy terminating mTLS, inner Envoy with certbound),
headers from a trusted terminator in every format, forgeries, tls_client_auth."""

import base64
from urllib.parse import quote

import pytest
import requests

import harness
from conftest import x5t_by_openssl

def token_via(url, stack, cert, client_id="good-client", headers=None):
    return requests.post(url + "/oauth2/token", data={"grant_type": "client_credentials", "client_id": client_id},
                         cert=cert.pair if cert else None, headers=headers or {}, verify=str(stack.pki.ca_path), timeout=15)


def cnf(client, token, envoy=None):
    """cnf of a token, introspected through the Envoy that bound it (bindings live in its shared data)."""
    url = (envoy.url if envoy else client.stack.envoy.url) + "/oauth2/introspect"
    body = requests.post(url, data={"token": token}, auth=("demo-rs", "demo-rs-secret"),
                         verify=client.ca, timeout=15).json()
    assert body["active"] is True
    return body.get("cnf", {}).get("x5t#S256")


def test_two_hop_xfcc_binds_to_the_clients_certificate_not_the_proxys(client, stack, hop):
    good = stack.clients["good"]
    r = token_via(hop["outer"].url("xfcc"), stack, good)
    assert r.status_code == 200, r.text
    t = cnf(client, r.json()["access_token"], hop["inner"])
    assert t == x5t_by_openssl(good.cert_path)
    assert t != x5t_by_openssl(hop["certs"]["outer-proxy"].cert_path)


def test_two_hop_custom_header_from_downstream_peer_cert_binds_to_the_client(client, stack, hop):
    good = stack.clients["good"]
    r = token_via(hop["outer"].url("header"), stack, good)
    assert r.status_code == 200, r.text
    assert cnf(client, r.json()["access_token"], hop["inner"]) == x5t_by_openssl(good.cert_path)


def test_verified_certificate_is_forwarded_to_the_as_replacing_what_the_client_sent(client, stack, hop):
    good = stack.clients["good"]
    r = token_via(hop["outer"].url("header"), stack, good, headers={"x-as-cert": "forged", "x-test-id": "fwd-1"})
    assert r.status_code == 200, r.text
    [seen] = [x for x in stack.auth_server.requests() if x["test_id"] == "fwd-1"]
    assert seen["forwarded_cert"] == good.pem.replace("\n", "")
    assert seen["forwarded_cert"].startswith("-----BEGIN CERTIFICATE-----MII")


def test_header_is_not_believed_from_a_client_without_the_proxy_certificate(client, stack, hop):
    # Straight to the inner Envoy, with a CA-issued certificate that is not the proxy's and a header naming another.
    own, other = hop["certs"]["tls-other"], stack.clients["rsa"]
    forged = {"x-client-cert-outer": quote(other.pem)}
    before = hop["inner"].counter("certbound.untrusted_header_removed")
    r = token_via(hop["inner"].url, stack, own, headers=forged)
    assert r.status_code == 200, r.text
    assert cnf(client, r.json()["access_token"], hop["inner"]) == x5t_by_openssl(own.cert_path)
    assert hop["inner"].counter("certbound.untrusted_header_removed") == before + 1


def test_a_self_signed_certificate_with_the_proxys_subject_gets_nowhere(client, stack, hop, tmp_path):
    # The inner listener verifies chains: a self-made certificate with the proxy's subject fails the handshake,
    # and with it the XFCC Hash= naming the victim's certificate.
    import hashlib

    impostor = harness.Pki(tmp_path / "impostor").client("outer-proxy")
    victim = stack.clients["good"]
    xfcc = {"x-forwarded-client-cert": f"Hash={hashlib.sha256(victim.der()).hexdigest()}"}
    with pytest.raises(requests.exceptions.SSLError):
        token_via(hop["inner"].url, stack, impostor, headers=xfcc)


@pytest.mark.parametrize("style", ["wso2_one_line", "wso2_spaces", "alb", "nginx", "haproxy", "rfc9440", "traefik"])
def test_header_from_a_trusted_terminator_in_every_format(client, stack, hop, style):
    # (PEM with newlines cannot cross HTTP/1.1 or Envoy; its parsing is unit-tested.)
    good = stack.clients["good"]
    pem = good.pem
    b64 = base64.b64encode(good.der()).decode()
    value = {
        "wso2_one_line": pem.replace("\n", ""),
        "wso2_spaces": pem.replace("\n", " "),
        "alb": pem.replace(" ", "%20").replace("\n", "%0A"),
        "nginx": quote(pem, safe=""),
        "haproxy": b64,
        "rfc9440": f":{b64}:",
        "traefik": quote(b64, safe="") + "," + quote(base64.b64encode(stack.clients["rsa"].der()).decode(), safe=""),
    }[style]
    r = token_via(hop["inner"].url, stack, None, headers={"x-wso2-mtls-cert": value})
    assert r.status_code == 200, r.text
    assert cnf(client, r.json()["access_token"], hop["inner"]) == x5t_by_openssl(good.cert_path)


def test_forged_header_on_a_listener_that_trusts_no_header_is_removed_before_the_as(client, stack):
    # The session Envoy trusts x-wso2-mtls-cert only from 10.0.0.0/8; this client is on loopback.
    good, other = stack.clients["good"], stack.clients["rsa"]
    before = stack.envoy.counter("certbound.untrusted_header_removed")
    r = client.token(good, "good-client", headers={"x-wso2-mtls-cert": other.pem.replace("\n", "")})
    assert r.status_code == 200, r.text
    assert cnf(client, r.json()["access_token"]) == x5t_by_openssl(good.cert_path)
    [seen] = [x for x in stack.auth_server.requests() if x["test_id"] == r.test_id]
    assert "x-wso2-mtls-cert" not in seen["headers"]
    assert stack.envoy.counter("certbound.untrusted_header_removed") == before + 1


def test_forged_header_alone_does_not_authenticate(client, stack):
    # No certificate on the connection, a forged header: the client has presented nothing.
    r = client.token(None, "good-client", headers={"x-wso2-mtls-cert": stack.clients["good"].pem.replace("\n", "")})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert not client.as_saw(r)


def test_tls_client_auth_by_subject_dn_through_a_verifying_terminator(client, stack, hop):
    c = hop["certs"]["tls-client"]
    r = token_via(hop["outer"].url("verified"), stack, c, client_id="rsa-client")
    assert r.status_code == 200, r.text
    assert cnf(client, r.json()["access_token"], hop["inner"]) == x5t_by_openssl(c.cert_path)


def test_tls_client_auth_by_san_dns(client, stack, hop):
    r = token_via(hop["outer"].url("verified"), stack, hop["certs"]["tls-client"], client_id="pinned-client")
    assert r.status_code == 200, r.text


def test_tls_client_auth_refuses_another_subject(client, stack, hop):
    r = token_via(hop["outer"].url("verified"), stack, hop["certs"]["tls-other"], client_id="rsa-client")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "subject" in r.json()["error_description"]


def test_tls_client_auth_dn_in_another_order_does_not_match(client, stack, hop):
    r = token_via(hop["outer"].url("verified"), stack, hop["certs"]["tls-client"], client_id="rotating-client")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_tls_client_auth_refuses_a_certificate_whose_chain_nobody_verified(client, stack, hop):
    # The right subject, but through the listener that accepts untrusted chains.
    r = token_via(hop["outer"].url("header"), stack, hop["certs"]["tls-client"], client_id="rsa-client")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "verified" in r.json()["error_description"]


BAD_INPUTS = [
    ("garbage", lambda s, h: "!!! not a certificate !!!", 400, "invalid_request", "bad_certificate_header"),
    ("truncated_base64", lambda s, h: base64.b64encode(s.clients["good"].der()).decode()[:101], 400, "invalid_request",
     "bad_certificate_header"),
    ("pem_without_end", lambda s, h: s.clients["good"].pem.replace("\n", "").split("-----END")[0], 400, "invalid_request",
     "bad_certificate_header"),
    ("not_x509", lambda s, h: base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), 400, "invalid_request",
     "bad_certificate_header"),
    ("oversized", lambda s, h: "A" * (20 * 1024), 400, "invalid_request", "certificate_header_too_large"),
    ("expired", lambda s, h: s.clients["expired"].pem.replace("\n", ""), 401, "invalid_client", "certificate_expired"),
    ("not_yet_valid", lambda s, h: h["certs"]["not-yet"].pem.replace("\n", ""), 401, "invalid_client",
     "certificate_not_yet_valid"),
    ("xfcc_unbalanced_quotes", lambda s, h: 'Hash=00;Cert="%2D%2D', 400, "invalid_request", "bad_certificate_header"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_certificate_header_input(client, stack, hop, case):
    _, make, status, error, reason = case
    before = hop["inner"].counter(f"certbound.refused.{reason}")
    r = token_via(hop["inner"].url, stack, None, client_id="expired-client",
                  headers={"x-wso2-mtls-cert": make(stack, hop), "x-test-id": f"bad-{case[0]}"})
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert hop["inner"].counter(f"certbound.refused.{reason}") == before + 1
    assert not stack.auth_server.saw(f"bad-{case[0]}")


def test_two_values_of_the_certificate_header_are_refused(client, stack, hop):
    import http.client
    import ssl

    ctx = ssl.create_default_context(cafile=str(stack.pki.ca_path))
    conn = http.client.HTTPSConnection("localhost", hop["inner"].port, context=ctx, timeout=15)
    pem = stack.clients["good"].pem.replace("\n", "")
    body = "grant_type=client_credentials&client_id=good-client"
    conn.putrequest("POST", "/oauth2/token")
    for k, v in [("content-type", "application/x-www-form-urlencoded"), ("content-length", str(len(body))),
                 ("x-wso2-mtls-cert", pem), ("x-wso2-mtls-cert", pem)]:
        conn.putheader(k, v)
    conn.endheaders(body.encode())
    r = conn.getresponse()
    assert r.status == 400
    assert b"invalid_request" in r.read()
