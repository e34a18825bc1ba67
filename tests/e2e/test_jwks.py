"""Clients registered the way RFC 8705 §2.2 and RFC 7591 describe them: a
JWK Set whose keys carry the certificate in x5c, inline (`jwks`) or published
at a `jwks_uri` that certbound fetches through an Envoy cluster on an
interval, keeping the last good set when a fetch fails. A client rotates its
certificate by publishing a new set, with no change to certbound's config."""

import base64
import http.server
import json
import threading
import time

import pytest
import requests

import harness
from conftest import UPSTREAM_SECRETS, another_envoy, x5t_by_openssl


def jwk(cert: harness.Cert) -> dict:
    return {"kty": "EC", "use": "sig", "x5c": [base64.b64encode(cert.der()).decode()]}


class JwksServer:
    """The client's own web server publishing its JWK Set; what it serves can be changed, or made to fail."""

    def __init__(self):
        server = self
        self.doc, self.status, self.hits = {"keys": []}, 200, 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits += 1
                body = json.dumps(server.doc).encode() if server.status == 200 else b"unavailable"
                self.send_response(server.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def jwks_stack(stack, tmp_path_factory):
    c = stack.clients
    server = JwksServer()
    server.doc = {"keys": [jwk(c["rotation-old"])]}
    # rotating-client as the AS holds it (RFC 7591 metadata pasted), with its key set inline.
    pasted = {
        "client_id": "rotating-client", "token_endpoint_auth_method": "self_signed_tls_client_auth",
        "grant_types": ["client_credentials"], "redirect_uris": [], "response_types": [], "client_name": "Rotating",
        "tls_client_certificate_bound_access_tokens": True,
        "jwks": {"keys": [jwk(c["rsa"]), {"kty": "RSA", "n": "AQAB", "e": "AQAB"}]},
        "upstream": {"client_secret": UPSTREAM_SECRETS["rotating-client"]},
    }
    envoy = another_envoy(
        stack,
        tmp_path_factory.mktemp("jwks"),
        {
            "clients": [
                {"client_id": "pinned-client", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                 "jwks_uri": "http://client.example/.well-known/jwks.json",
                 "upstream": {"client_secret": UPSTREAM_SECRETS["pinned-client"]}},
                pasted,
            ],
            "jwks_fetch": {"cluster": "client_jwks", "refresh_seconds": 1, "timeout_ms": 1000},
        },
        name="jwks-envoy",
        extra_clusters=harness.static_cluster_yaml("client_jwks", server.port),
    )
    yield {"envoy": envoy, "server": server}
    harness.stop_all([server, envoy])


def token(envoy, stack, cert, client_id="pinned-client"):
    return requests.post(envoy.url + "/oauth2/token", data={"grant_type": "client_credentials", "client_id": client_id},
                         cert=cert.pair, verify=str(stack.pki.ca_path), timeout=15)


def cnf(envoy, stack, access_token):
    r = requests.post(envoy.url + "/oauth2/introspect", data={"token": access_token}, auth=("demo-rs", "demo-rs-secret"),
                      verify=str(stack.pki.ca_path), timeout=15)
    return r.json()["cnf"]["x5t#S256"]


def until(what, check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_a_client_rotates_its_certificate_by_publishing_a_new_jwk_set(stack, jwks_stack):
    envoy, server, c = jwks_stack["envoy"], jwks_stack["server"], stack.clients
    until("the published certificate authenticates", lambda: token(envoy, stack, c["rotation-old"]).status_code == 200)
    r = token(envoy, stack, c["rotation-old"])
    assert cnf(envoy, stack, r.json()["access_token"]) == x5t_by_openssl(c["rotation-old"].cert_path)
    assert token(envoy, stack, c["rotation-new"]).status_code == 401
    server.doc = {"keys": [jwk(c["rotation-new"])]}
    until("the newly published certificate authenticates", lambda: token(envoy, stack, c["rotation-new"]).status_code == 200)
    until("the withdrawn certificate is refused", lambda: token(envoy, stack, c["rotation-old"]).status_code == 401)
    r = token(envoy, stack, c["rotation-old"])
    assert r.json()["error"] == "invalid_client"


def test_the_last_good_jwk_set_is_kept_when_a_fetch_fails(stack, jwks_stack):
    envoy, server, c = jwks_stack["envoy"], jwks_stack["server"], stack.clients
    server.doc = {"keys": [jwk(c["pinned"])]}
    until("the published certificate authenticates", lambda: token(envoy, stack, c["pinned"]).status_code == 200)
    server.status = 503
    hits = server.hits
    until("certbound asked again", lambda: server.hits >= hits + 2)
    try:
        assert token(envoy, stack, c["pinned"]).status_code == 200
        server.status = 200
        server.doc = {"keys": []}
        # An answer that parses is the client's word: a set without its certificate withdraws it.
        until("the empty set is applied", lambda: token(envoy, stack, c["pinned"]).status_code == 401)
    finally:
        server.status = 200


def test_inline_jwks_in_pasted_as_metadata_registers_the_x5c_certificate(stack, jwks_stack):
    envoy, c = jwks_stack["envoy"], stack.clients
    r = token(envoy, stack, c["rsa"], "rotating-client")
    assert r.status_code == 200, r.text
    assert cnf(envoy, stack, r.json()["access_token"]) == x5t_by_openssl(c["rsa"].cert_path)
    r = token(envoy, stack, c["stranger"], "rotating-client")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
