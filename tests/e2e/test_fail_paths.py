"""Paths the main stack never takes: token responses an AS should not send
(a tiny fake AS answers them), certificate headers trusted by address, by
the proxy's DNS SAN and by XFCC's first element, a JWT whose verified cnf is
malformed, and etcd that does not answer (fail closed, fail open, timeout).
Each row checks the status, what the client got (never a token without its
binding), who saw the request, and the exact counter deltas."""

import base64
import gzip
import http.server
import json
import socket
import subprocess
import threading
import time
import uuid

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import harness
from conftest import UPSTREAM_SECRETS, another_envoy, good_client, name, x5t_by_openssl

FORM = {"grant_type": "client_credentials", "client_id": "good-client"}
# What certbound must present upstream for good-client (RFC 6749 §2.3.1), computed here, not by certbound.
GOOD_BASIC = "Basic " + base64.b64encode(f"good-client:{UPSTREAM_SECRETS['good-client']}".encode()).decode()


def sha256_hex_by_openssl(cert: harness.Cert) -> str:
    """The hex SHA-256 of the DER, as Envoy writes XFCC Hash=, computed by openssl."""
    der = subprocess.run(["openssl", "x509", "-in", str(cert.cert_path), "-outform", "der"],
                         capture_output=True, check=True).stdout
    out = subprocess.run(["openssl", "dgst", "-sha256", "-r"], input=der, capture_output=True, check=True).stdout
    return out.split()[0].decode()


def pem_line(cert: harness.Cert) -> str:
    return cert.pem.replace("\n", "")


def counters(envoy, names):
    return {n: envoy.counter(f"certbound.{n}") for n in names}


def deltas(envoy, before):
    return {n: envoy.counter(f"certbound.{n}") - v for n, v in before.items()}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# ---------------------------------------------------------------- a fake AS


class FakeAs:
    """Answers /oauth2/token in the shape the request's x-shape header names, serves a JWK Set
    whose key signs JWTs here, and a metadata document that is not JSON. Records what it got and sent."""

    def __init__(self):
        self.key = rsa.generate_private_key(65537, 2048)
        self.seen: dict[str, dict] = {}
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body: bytes, content_type="application/json", extra=()):
                self.send_response(status)
                self.send_header("content-type", content_type)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/oauth2/jwks":
                    self._send(200, json.dumps({"keys": [fake.jwk()]}).encode())
                elif self.path == "/.well-known/openid-configuration":
                    self._send(200, b"<html>not a metadata document</html>", "text/html")
                else:
                    self._send(404, b'{"error":"not_found"}')

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                request_body = self.rfile.read(length)
                shape = self.headers.get("x-shape", "")
                token = f"fake-at-{uuid.uuid4().hex}"
                good = json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 600}).encode()
                # What is sent is recorded before it is written: the test may read it as soon as the answer arrives.
                sent = {
                    "not_json": f"access_token={token}&token_type=Bearer".encode(),
                    "no_access_token": json.dumps({"token_type": "Bearer", "expires_in": 600, "refresh_token": token}).encode(),
                    "empty": b"",
                    "gzip": gzip.compress(good),
                    "chunks": good,
                }.get(shape, b'{"error":"unsupported_shape"}')
                fake.seen[self.headers.get("x-test-id", "")] = {
                    "authorization": self.headers.get("authorization"), "body": request_body, "token": token, "sent": sent}
                if shape == "not_json":
                    self._send(200, sent, "application/x-www-form-urlencoded")
                elif shape in ("no_access_token", "empty"):
                    self._send(200, sent)
                elif shape == "gzip":
                    self._send(200, sent, extra=[("content-encoding", "gzip")])
                elif shape == "chunks":
                    # Transfer-Encoding: chunked, 3 bytes a chunk, each written on its own.
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(good), 3):
                        piece = good[i:i + 3]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                        time.sleep(0.005)
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self._send(400, sent)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def jwk(self) -> dict:
        n = self.key.public_key().public_numbers()
        return {"kty": "RSA", "kid": "fake", "use": "sig", "alg": "RS256",
                "n": b64url(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")), "e": b64url(n.e.to_bytes(3, "big"))}

    def jwt(self, claims: dict, *, key=None) -> str:
        """An RS256 JWT signed with this AS's key (or another key: a forgery)."""
        now = int(time.time())
        header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "fake"}).encode())
        payload = b64url(json.dumps({"iss": self.issuer, "sub": "good-client", "iat": now, "exp": now + 300,
                                     **claims}).encode())
        signature = (key or self.key).sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{b64url(signature)}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fake_as():
    fake = FakeAs()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def shaped(stack, fake_as, tmp_path_factory):
    """certbound in front of the fake AS (jwt_authn verifies JWTs against the fake AS's keys)."""
    envoy = harness.Envoy(
        tmp_path_factory.mktemp("shaped"),
        {"clients": [good_client(stack)],
         "protected_routes": [{"path_prefix": "/api/", "thumbprint_header": "x-certbound-x5t"}],
         **({"jwt_claims": {}} if harness.ARTIFACT == "wasm" else {})},
        cert_dir=stack.pki.dir, as_port=fake_as.port, api_port=stack.api.port, name="shaped")
    yield envoy
    envoy.stop()


def post_token(envoy, stack, cert="good", headers=None, data=None):
    test_id = uuid.uuid4().hex
    r = requests.post(envoy.url + "/oauth2/token", data=data or FORM, headers={"x-test-id": test_id, **(headers or {})},
                      cert=stack.clients[cert].pair if cert else None, verify=str(stack.pki.ca_path), timeout=15)
    r.test_id = test_id
    return r


def get_api(envoy, stack, token, cert="good", path="/api/x"):
    test_id = uuid.uuid4().hex
    r = requests.get(envoy.url + path, headers={"authorization": f"Bearer {token}", "x-test-id": test_id},
                     cert=stack.clients[cert].pair if cert else None, verify=str(stack.pki.ca_path), timeout=15)
    r.test_id = test_id
    return r


def api_saw(stack, r):
    return [x for x in stack.api.received if x["headers"].get("x-test-id") == r.test_id]


def introspect(envoy, stack, token):
    return requests.post(envoy.url + "/oauth2/introspect", data={"token": token}, auth=("demo-rs", "demo-rs-secret"),
                         verify=str(stack.pki.ca_path), timeout=15)


# ---------------------------------------------------------------- token responses that cannot be bound


@pytest.mark.parametrize("shape", ["not_json", "no_access_token", "empty", "gzip"])
def test_unbindable_token_response_is_502_and_its_token_never_leaves(stack, fake_as, shaped, shape):
    before = counters(shaped, ["client_authenticated", "tokens_bound", "refused.unbindable_token_response"])
    r = post_token(shaped, stack, headers={"x-shape": shape})
    assert r.status_code == 502, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    assert "content-encoding" not in r.headers
    body = r.json()
    assert body["error"] == "server_error" and body["error_description"]
    # The AS did issue a token (the client authenticated, certbound presented good-client's secret) ...
    seen = fake_as.seen[r.test_id]
    assert seen["authorization"] == GOOD_BASIC
    # ... and the client got none of it, in any form.
    assert seen["token"] not in r.text
    if seen["sent"]:
        assert seen["sent"] not in r.content
    assert deltas(shaped, before) == {"client_authenticated": 1, "tokens_bound": 0,
                                      "refused.unbindable_token_response": 1}


def test_token_response_in_many_small_chunks_is_bound_and_reaches_the_client_intact(stack, fake_as, shaped):
    before = counters(shaped, ["tokens_bound", "refused.unbindable_token_response"])
    r = post_token(shaped, stack, headers={"x-shape": "chunks"})
    assert r.status_code == 200, r.text
    seen = fake_as.seen[r.test_id]
    assert r.content == seen["sent"]
    token = r.json()["access_token"]
    assert token == seen["token"]
    assert deltas(shaped, before) == {"tokens_bound": 1, "refused.unbindable_token_response": 0}
    # Bound to the certificate presented: the API gets it with the openssl thumbprint, and only with it.
    ok = get_api(shaped, stack, token)
    assert ok.status_code == 200, ok.text
    [hit] = api_saw(stack, ok)
    assert hit["headers"]["x-certbound-x5t"] == x5t_by_openssl(stack.clients["good"].cert_path)
    bad = get_api(shaped, stack, token, cert="stranger")
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_token"
    assert api_saw(stack, bad) == []


def test_metadata_that_is_not_json_passes_unchanged_and_is_counted(stack, fake_as, shaped):
    direct = requests.get(fake_as.issuer + "/.well-known/openid-configuration", timeout=10)
    before = counters(shaped, ["metadata_patched", "metadata_unpatched"])
    r = requests.get(shaped.url + "/.well-known/openid-configuration", verify=str(stack.pki.ca_path), timeout=10)
    assert r.status_code == 200
    assert r.content == direct.content
    assert deltas(shaped, before) == {"metadata_patched": 0, "metadata_unpatched": 1}


# ---------------------------------------------------------------- JWT cnf claims verified by jwt_authn


@harness.wasm_only("jwt_claims (nested dynamic metadata the dynamic-module ABI of Envoy 1.40 cannot read)")
def test_verified_jwt_with_a_malformed_cnf_claim_is_refused(stack, fake_as, shaped):
    x5t = x5t_by_openssl(stack.clients["good"].cert_path)
    names = ["refused.bad_cnf_claim", "refused.unbound_token", "resource_allowed"]
    # Control: a signed JWT with a well-formed cnf passes on the claim alone (it is in no store).
    before = counters(shaped, names)
    ok = get_api(shaped, stack, fake_as.jwt({"cnf": {"x5t#S256": x5t}}))
    assert ok.status_code == 200, ok.text
    assert deltas(shaped, before) == {"refused.bad_cnf_claim": 0, "refused.unbound_token": 0, "resource_allowed": 1}
    # A signed JWT whose cnf.x5t#S256 is not a thumbprint: 401, the API never sees it.
    before = counters(shaped, names)
    r = get_api(shaped, stack, fake_as.jwt({"cnf": {"x5t#S256": "not-a-thumbprint"}}))
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_token"
    assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert api_saw(stack, r) == []
    assert deltas(shaped, before) == {"refused.bad_cnf_claim": 1, "refused.unbound_token": 0, "resource_allowed": 0}
    # The same claim under a signature jwt_authn does not verify is not read at all: just an unbound token.
    before = counters(shaped, names)
    forged = fake_as.jwt({"cnf": {"x5t#S256": "not-a-thumbprint"}}, key=rsa.generate_private_key(65537, 2048))
    r = get_api(shaped, stack, forged)
    assert r.status_code == 401
    assert deltas(shaped, before) == {"refused.bad_cnf_claim": 0, "refused.unbound_token": 1, "resource_allowed": 0}


# ---------------------------------------------------------------- header trust: source_cidrs, peer_dns_sans, XFCC


EDGE_SAN = "edge.certbound.test"


@pytest.fixture(scope="module")
def terminators(stack, tmp_path_factory):
    """A verifying listener (VERIFY_TRUST_CHAIN) trusting certificate headers by the sender's address,
    by the sender's certificate DNS SAN, and XFCC's first element."""
    pki = stack.pki
    peers = {
        "edge": pki.ca_signed("edge-proxy", name("edge-proxy"), [x509.DNSName(EDGE_SAN)]),
        "elsewhere": pki.ca_signed("elsewhere-proxy", name("elsewhere-proxy"), [x509.DNSName("elsewhere.certbound.test")]),
    }
    envoy = harness.Envoy(
        tmp_path_factory.mktemp("terminators"),
        {"clients": [good_client(stack)],
         "certificate_sources": {
             "connection_chain_verified": True,
             "prefer": "header",
             "headers": [
                 {"name": "x-client-cert", "format": "pem", "trust": {"source_cidrs": ["127.0.0.0/8"]}},
                 {"name": "x-far-cert", "format": "pem", "trust": {"source_cidrs": ["10.0.0.0/8"]}},
                 {"name": "x-forwarded-client-cert", "format": "xfcc", "xfcc_element": "first",
                  "trust": {"source_cidrs": ["127.0.0.1/32"]}},
                 {"name": "x-edge-cert", "format": "pem", "trust": {"peer_dns_sans": [EDGE_SAN]}},
             ],
         }},
        cert_dir=pki.dir, as_port=stack.auth_server.port, api_port=stack.api.port, name="terminators",
        xfcc_mode="ALWAYS_FORWARD_ONLY", trust_chain="VERIFY_TRUST_CHAIN")
    yield {"envoy": envoy, "peers": peers}
    envoy.stop()


def post_token_as(envoy, stack, peer: harness.Cert | None, headers):
    """A token request for good-client from a proxy (TLS client certificate `peer`, or none)."""
    test_id = uuid.uuid4().hex
    r = requests.post(envoy.url + "/oauth2/token", data=FORM, headers={"x-test-id": test_id, **headers},
                      cert=peer.pair if peer else None, verify=str(stack.pki.ca_path), timeout=15)
    r.test_id = test_id
    return r


def bound_to(envoy, stack, r) -> str:
    assert r.status_code == 200, r.text
    return introspect(envoy, stack, r.json()["access_token"]).json()["cnf"]["x5t#S256"]


def test_header_from_a_trusted_source_address_is_believed(stack, terminators):
    envoy, good = terminators["envoy"], stack.clients["good"]
    names = ["untrusted_header_removed", "refused.no_certificate", "client_authenticated"]
    before = counters(envoy, names)
    r = post_token_as(envoy, stack, None, {"x-client-cert": pem_line(good)})
    assert bound_to(envoy, stack, r) == x5t_by_openssl(good.cert_path)
    assert deltas(envoy, before) == {"untrusted_header_removed": 0, "refused.no_certificate": 0, "client_authenticated": 1}
    # The same certificate in a header trusted only from 10.0.0.0/8: removed, and the client has no certificate.
    before = counters(envoy, names)
    r = post_token_as(envoy, stack, None, {"x-far-cert": pem_line(good)})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    assert not stack.auth_server.saw(r.test_id)
    assert deltas(envoy, before) == {"untrusted_header_removed": 1, "refused.no_certificate": 1, "client_authenticated": 0}


def test_xfcc_first_element_is_the_one_believed_when_configured(stack, terminators):
    envoy, good, stranger = terminators["envoy"], stack.clients["good"], stack.clients["stranger"]
    good_hash, stranger_hash = sha256_hex_by_openssl(good), sha256_hex_by_openssl(stranger)
    r = post_token_as(envoy, stack, None,
                      {"x-forwarded-client-cert": f'Hash={good_hash};Subject="CN=good",Hash={stranger_hash}'})
    assert bound_to(envoy, stack, r) == x5t_by_openssl(good.cert_path)
    # Reversed, the first element is the stranger's: not registered for good-client.
    before = counters(envoy, ["refused.certificate_not_registered"])
    r = post_token_as(envoy, stack, None, {"x-forwarded-client-cert": f"Hash={stranger_hash},Hash={good_hash}"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    assert not stack.auth_server.saw(r.test_id)
    assert deltas(envoy, before) == {"refused.certificate_not_registered": 1}


def test_two_trusted_headers_naming_different_certificates_are_refused(stack, terminators):
    envoy = terminators["envoy"]
    before = counters(envoy, ["refused.conflicting_certificates", "client_authenticated"])
    r = post_token_as(envoy, stack, None, {"x-client-cert": pem_line(stack.clients["good"]),
                                           "x-forwarded-client-cert": f"Hash={sha256_hex_by_openssl(stack.clients['stranger'])}"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert not stack.auth_server.saw(r.test_id)
    assert deltas(envoy, before) == {"refused.conflicting_certificates": 1, "client_authenticated": 0}


def test_header_from_a_proxy_with_the_trusted_dns_san_is_believed(stack, terminators):
    envoy, good, peers = terminators["envoy"], stack.clients["good"], terminators["peers"]
    names = ["certificate_conflicts", "untrusted_header_removed", "refused.certificate_not_registered"]
    # The proxy's own certificate is on the connection, the client's in the header: they differ
    # (counted), and prefer: header keeps the header's.
    before = counters(envoy, names)
    r = post_token_as(envoy, stack, peers["edge"], {"x-edge-cert": pem_line(good)})
    assert bound_to(envoy, stack, r) == x5t_by_openssl(good.cert_path)
    assert deltas(envoy, before) == {"certificate_conflicts": 1, "untrusted_header_removed": 0,
                                     "refused.certificate_not_registered": 0}
    # A proxy with another SAN (same CA, verified chain) is not trusted for the header: removed, and its own
    # certificate is not good-client's.
    before = counters(envoy, names)
    r = post_token_as(envoy, stack, peers["elsewhere"], {"x-edge-cert": pem_line(good)})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    assert not stack.auth_server.saw(r.test_id)
    assert deltas(envoy, before) == {"certificate_conflicts": 0, "untrusted_header_removed": 1,
                                     "refused.certificate_not_registered": 1}


@pytest.mark.xfail(strict=True, reason="certbound compares only the first DNS SAN of the proxy's certificate "
                   "(Envoy's connection.dns_san_peer_certificate); the README says 'has that SAN'")
def test_header_from_a_proxy_whose_trusted_dns_san_is_not_its_first_is_believed(stack, terminators):
    envoy, good = terminators["envoy"], stack.clients["good"]
    peer = stack.pki.ca_signed("two-san-proxy", name("two-san-proxy"),
                               [x509.DNSName("first.certbound.test"), x509.DNSName(EDGE_SAN)])
    r = post_token_as(envoy, stack, peer, {"x-edge-cert": pem_line(good)})
    assert bound_to(envoy, stack, r) == x5t_by_openssl(good.cert_path)


# ---------------------------------------------------------------- etcd that does not answer


class BlackHole:
    """A TCP port that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def stop(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            c.close()


ETCD_TIMEOUT_MS = 200


@pytest.fixture(scope="module")
def silent_etcd(stack, tmp_path_factory):
    hole = BlackHole()
    envoy = another_envoy(
        stack,
        tmp_path_factory.mktemp("silent-etcd"),
        {"clients": [good_client(stack)],
         "protected_routes": [{"path_prefix": "/api/"}],
         "store": {"backend": "etcd", "etcd": {"cluster": "etcd", "timeout_ms": ETCD_TIMEOUT_MS}}},
        name="silent-etcd",
        extra_clusters=harness.static_cluster_yaml("etcd", hole.port))
    yield envoy
    harness.stop_all([hole, envoy])


STORE_NAMES = ["store_errors", "store_retries", "refused.binding_store_failed", "refused.store_unavailable",
               "tokens_bound"]


def test_etcd_that_never_answers_times_out_and_no_token_leaves(stack, silent_etcd):
    before = counters(silent_etcd, STORE_NAMES)
    started = time.monotonic()
    r = post_token(silent_etcd, stack)
    elapsed = time.monotonic() - started
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "temporarily_unavailable"
    assert r.headers["retry-after"]
    assert "access_token" not in r.text
    # The AS issued the token; certbound held it and, the binding unwritten, never released it.
    assert stack.auth_server.saw(r.test_id)
    # One call and its retry, each given up after timeout_ms.
    assert elapsed >= 2 * ETCD_TIMEOUT_MS / 1000, elapsed
    assert deltas(silent_etcd, before) == {"store_errors": 1, "store_retries": 1, "refused.binding_store_failed": 1,
                                           "refused.store_unavailable": 0, "tokens_bound": 0}


def test_etcd_that_never_answers_fails_reads_closed(stack, silent_etcd):
    before = counters(silent_etcd, STORE_NAMES)
    r = get_api(silent_etcd, stack, "a-token-only-etcd-could-know")
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_token"
    assert api_saw(stack, r) == []
    i = introspect(silent_etcd, stack, "a-token-only-etcd-could-know")
    assert i.status_code == 503 and i.json()["error"] == "temporarily_unavailable", i.text
    assert deltas(silent_etcd, before) == {"store_errors": 2, "store_retries": 2, "refused.binding_store_failed": 0,
                                           "refused.store_unavailable": 2, "tokens_bound": 0}


@pytest.fixture(scope="module")
def fail_open(stack, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fail-open")
    etcd = harness.EtcdCluster(workdir, members=1)
    envoy = another_envoy(
        stack,
        workdir,
        {"clients": [good_client(stack)],
         "protected_routes": [{"path_prefix": "/api/"},
                              {"path_prefix": "/api/open/", "unbound_tokens": "allow", "missing_token": "pass"}],
         # No read cache, and no per-worker cache of hits: every lookup asks etcd.
         "store": {"backend": "etcd", "vm_cache_entries": 0,
                   "etcd": {"cluster": "etcd", "timeout_ms": 300, "cache_capacity": 0, "on_unavailable": "fail_open"}}},
        name="fail-open",
        etcd_ports=etcd.client_ports)
    yield {"envoy": envoy, "etcd": etcd}
    harness.stop_all([etcd, envoy])


def test_fail_open_counts_a_token_as_unbound_while_etcd_is_down(stack, fail_open):
    envoy, etcd = fail_open["envoy"], fail_open["etcd"]
    r = post_token(envoy, stack)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    # etcd up: the binding is enforced, even on the route that allows unbound tokens.
    r = get_api(envoy, stack, token, cert="stranger", path="/api/open/x")
    assert r.status_code == 401 and r.json()["error"] == "invalid_token", r.text
    etcd.stop(0)
    names = ["store_errors", "store_retries", "resource_allowed_unbound", "refused.unbound_token",
             "refused.store_unavailable", "introspection_unpatched", "introspection_patched",
             "refused.binding_store_failed", "introspection_deactivated"]
    before = counters(envoy, names)
    # etcd down, fail_open: the token counts as unbound. The allow route lets it through, with any certificate ...
    r = get_api(envoy, stack, token, cert="stranger", path="/api/open/x")
    assert r.status_code == 200, r.text
    assert len(api_saw(stack, r)) == 1
    # ... the route that requires a binding refuses it as unbound (not as unavailable) ...
    r = get_api(envoy, stack, token, path="/api/x")
    assert r.status_code == 401 and r.json()["error"] == "invalid_token", r.text
    assert api_saw(stack, r) == []
    # ... introspection of good-client's token (all its tokens are bound) answers inactive, never active without cnf ...
    i = introspect(envoy, stack, token)
    assert i.status_code == 200 and i.json() == {"active": False}, i.text
    # ... and writes still fail closed: no token leaves unbound.
    t = post_token(envoy, stack)
    assert t.status_code == 503 and "access_token" not in t.text, t.text
    assert deltas(envoy, before) == {
        "store_errors": 4, "store_retries": 4, "resource_allowed_unbound": 1, "refused.unbound_token": 1,
        "refused.store_unavailable": 0, "introspection_unpatched": 0, "introspection_patched": 0,
        "refused.binding_store_failed": 1, "introspection_deactivated": 1,
    }
