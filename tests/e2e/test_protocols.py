"""HTTP/2 clients, bodies in many chunks, and compression: never a corrupted
body, never an unbound token."""

import json
import subprocess
import time

import requests

from conftest import x5t_by_openssl


def curl_h2(stack, *args):
    out = subprocess.run(["curl", "-s", "--http2", "--cacert", str(stack.pki.ca_path), "-w", "\n%{http_version} %{http_code}",
                          *args], capture_output=True, text=True, timeout=30, check=True).stdout
    body, _, tail = out.rpartition("\n")
    version, code = tail.split()
    return version, int(code), body


def test_http2_client_gets_bound_tokens_introspection_and_enforcement(stack):
    good, url = stack.clients["good"], stack.envoy.url
    cert = ["--cert", str(good.cert_path), "--key", str(good.key_path)]
    version, code, body = curl_h2(stack, *cert, "-d", "grant_type=client_credentials&client_id=good-client",
                                  f"{url}/oauth2/token")
    assert (version, code) == ("2", 200), body
    token = json.loads(body)["access_token"]
    version, code, body = curl_h2(stack, "-u", "demo-rs:demo-rs-secret", "-d", f"token={token}", f"{url}/oauth2/introspect")
    assert (version, code) == ("2", 200)
    assert json.loads(body)["cnf"]["x5t#S256"] == x5t_by_openssl(good.cert_path)
    version, code, _ = curl_h2(stack, *cert, "-H", f"Authorization: Bearer {token}", f"{url}/api/x")
    assert (version, code) == ("2", 200)
    stranger = stack.clients["stranger"]
    version, code, body = curl_h2(stack, "--cert", str(stranger.cert_path), "--key", str(stranger.key_path),
                                  "-H", f"Authorization: Bearer {token}", f"{url}/api/x")
    assert (version, code) == ("2", 401)
    version, code, body = curl_h2(stack, "--cert", str(stranger.cert_path), "--key", str(stranger.key_path),
                                  "-d", "grant_type=client_credentials&client_id=good-client", f"{url}/oauth2/token")
    assert (version, code) == ("2", 401) and json.loads(body)["error"] == "invalid_client"


def slowly(*parts):
    for p in parts:
        time.sleep(0.05)
        yield p


def test_token_request_body_in_many_chunks(client, stack):
    good = stack.clients["good"]
    r = requests.post(stack.envoy.url + "/oauth2/token",
                      data=slowly(b"grant_type=", b"client_cred", b"entials&cli", b"ent_id=good", b"-client"),
                      headers={"content-type": "application/x-www-form-urlencoded"},
                      cert=good.pair, verify=str(stack.pki.ca_path), timeout=15)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    i = requests.post(stack.envoy.url + "/oauth2/introspect", data=slowly(b"tok", b"en=", token.encode()),
                      headers={"content-type": "application/x-www-form-urlencoded"},
                      auth=("demo-rs", "demo-rs-secret"), verify=str(stack.pki.ca_path), timeout=15)
    assert i.json()["cnf"]["x5t#S256"] == x5t_by_openssl(good.cert_path)
    assert int(i.headers["content-length"]) == len(i.content)


def test_compression_is_not_asked_of_the_as_on_the_endpoints_certbound_reads(client, stack):
    r = client.token(stack.clients["good"], "good-client", headers={"accept-encoding": "gzip, br"})
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    [seen] = [x for x in stack.auth_server.requests() if x["test_id"] == r.test_id]
    assert "accept-encoding" not in seen["headers"]
    i = client.post("/oauth2/introspect", data={"token": r.json()["access_token"]}, auth=("demo-rs", "demo-rs-secret"),
                    headers={"accept-encoding": "gzip"})
    assert "cnf" in i.json()
