"""RFC 8705 §2 at the token endpoint, through real Envoy to a real AS."""

import base64

import requests

from conftest import UPSTREAM_SECRETS, x5t_by_openssl


def assert_oauth_error(r, status, error):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["error"] == error
    assert body["error_description"]
    return body


def test_registered_certificate_gets_a_token_without_sending_a_secret(client, stack):
    r = client.token(stack.clients["good"], "good-client")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["access_token"]
    assert body["expires_in"] > 0
    # The AS got the request, authenticated with the upstream credentials certbound holds.
    seen = [x for x in stack.auth_server.requests() if x["test_id"] == r.test_id]
    assert len(seen) == 1
    assert (seen[0]["method"], seen[0]["path"], seen[0]["authorization"]) == ("POST", "/oauth2/token", "Basic")


def test_token_response_reaches_the_client_unchanged(client, stack):
    r = client.token(stack.clients["good"], "good-client", extra={"scope": "api"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "expires_in", "token_type", "scope"}
    # The values the AS issues (oidc-provider, access tokens of 600 s in the test stack), untouched.
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 600, "api")
    assert int(r.headers["content-length"]) == len(r.content)
    # The token is the AS's own: the AS, asked directly (not through certbound), knows it for this client and scope.
    direct = requests.post(stack.auth_server.url + "/oauth2/introspect", data={"token": body["access_token"]},
                           auth=("demo-rs", "demo-rs-secret"), timeout=10).json()
    assert (direct["active"], direct["client_id"], direct["scope"]) == (True, "good-client", "api")
    assert "cnf" not in direct, "the AS has RFC 8705 off: any cnf comes from certbound"
    # ... and certbound bound it to the certificate presented, as openssl computes its thumbprint.
    assert client.introspect(body["access_token"]).json()["cnf"] == {"x5t#S256": x5t_by_openssl(stack.clients["good"].cert_path)}


def test_rsa_client_certificate_authenticates(client, stack):
    r = client.token(stack.clients["rsa"], "rsa-client")
    assert r.status_code == 200, r.text


def test_client_registered_by_thumbprint_authenticates(client, stack):
    r = client.token(stack.clients["pinned"], "pinned-client")
    assert r.status_code == 200, r.text


def test_every_pinned_certificate_of_a_rotating_client_authenticates(client, stack):
    for name in ("rotation-old", "rotation-new"):
        r = client.token(stack.clients[name], "rotating-client")
        assert r.status_code == 200, (name, r.text)


def test_client_id_only_in_http_basic_is_invalid_request(client, stack):
    # RFC 8705 §2: the client MUST include client_id; oidc-provider's own RFC 8705 answers the same.
    r = client.token(stack.clients["good"], None, auth=("good-client", ""))
    assert_oauth_error(r, 400, "invalid_request")
    assert not client.as_saw(r)
    r = client.token(stack.clients["good"], "good-client", auth=("good-client", ""))
    assert r.status_code == 200, r.text


def test_unregistered_certificate_is_invalid_client_and_never_reaches_the_as(client, stack):
    r = client.token(stack.clients["stranger"], "good-client")
    assert_oauth_error(r, 401, "invalid_client")
    assert not client.as_saw(r)


def test_another_clients_certificate_is_invalid_client(client, stack):
    r = client.token(stack.clients["rsa"], "good-client")
    assert_oauth_error(r, 401, "invalid_client")
    assert not client.as_saw(r)


def test_no_certificate_is_invalid_client_and_never_reaches_the_as(client, stack):
    r = client.token(None, "good-client")
    assert_oauth_error(r, 401, "invalid_client")
    assert not client.as_saw(r)


def test_unknown_client_id_is_invalid_client_and_never_reaches_the_as(client, stack):
    r = client.token(stack.clients["good"], "nobody")
    body = assert_oauth_error(r, 401, "invalid_client")
    assert "nobody" in body["error_description"]
    assert not client.as_saw(r)


def test_expired_certificate_is_invalid_client(client, stack):
    r = client.token(stack.clients["expired"], "expired-client")
    body = assert_oauth_error(r, 401, "invalid_client")
    assert "validity" in body["error_description"]
    assert not client.as_saw(r)


def test_missing_client_id_is_invalid_request(client, stack):
    r = client.token(stack.clients["good"], None)
    assert_oauth_error(r, 400, "invalid_request")
    assert not client.as_saw(r)


def test_unreadable_body_is_invalid_request(client, stack):
    r = client.post("/oauth2/token", cert=stack.clients["good"], data=b"client_id=%zz&grant_type=client_credentials",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert_oauth_error(r, 400, "invalid_request")
    assert not client.as_saw(r)


def test_json_body_is_invalid_request(client, stack):
    r = client.post("/oauth2/token", cert=stack.clients["good"], data=b'{"client_id":"good-client"}',
                    headers={"content-type": "application/json"})
    assert_oauth_error(r, 400, "invalid_request")
    assert not client.as_saw(r)


def test_client_secret_beside_the_certificate_is_refused(client, stack):
    r = client.token(stack.clients["good"], "good-client", extra={"client_secret": UPSTREAM_SECRETS["good-client"]})
    assert_oauth_error(r, 400, "invalid_request")
    assert not client.as_saw(r)


def test_client_id_in_basic_and_body_disagreeing_is_refused(client, stack):
    r = client.token(stack.clients["good"], "good-client", auth=("rsa-client", ""))
    assert_oauth_error(r, 400, "invalid_request")
    assert not client.as_saw(r)


def test_token_endpoint_refuses_get(client, stack):
    import requests

    r = requests.get(stack.envoy.url + "/oauth2/token", cert=stack.clients["good"].pair, verify=client.ca, timeout=10)
    assert_oauth_error(r, 405, "invalid_request")


def test_oversized_token_request_is_refused_with_413(client, stack):
    r = client.token(stack.clients["good"], "good-client", extra={"pad": "x" * (70 * 1024)})
    assert_oauth_error(r, 413, "invalid_request")
    assert not client.as_saw(r)


def test_client_supplied_authorization_never_reaches_the_as(client, stack):
    # A client's own Basic header is replaced by the upstream credentials.
    r = client.token(stack.clients["good"], "good-client", auth=("good-client", ""))
    assert r.status_code == 200, r.text
    seen = [x for x in stack.auth_server.requests() if x["test_id"] == r.test_id]
    assert seen and seen[0]["authorization"] == "Basic"


def test_openssl_thumbprint_is_what_certbound_reports(client, stack):
    # The log line names the thumbprint the client authenticated with.
    cert = stack.clients["good"]
    r = client.token(cert, "good-client")
    assert r.status_code == 200
    assert f"x5t#S256={x5t_by_openssl(cert.cert_path)}" in stack.envoy.proc.log()


def test_refusals_are_logged_naming_the_request_and_counted(client, stack):
    before = stack.envoy.counter("certbound.refused.certificate_not_registered")
    r = client.token(stack.clients["stranger"], "good-client", headers={"x-request-id": "req-stranger-1"})
    assert r.status_code == 401
    log = stack.envoy.proc.log()
    assert "req-stranger-1" in log and "certificate_not_registered" in log
    assert stack.envoy.counter("certbound.refused.certificate_not_registered") == before + 1


def test_no_secret_or_token_appears_in_the_log(client, stack):
    r = client.token(stack.clients["good"], "good-client")
    token = r.json()["access_token"]
    client.introspect(token)
    log = stack.envoy.proc.log()
    assert token not in log
    for secret in UPSTREAM_SECRETS.values():
        assert secret not in log
        assert base64.b64encode(secret.encode()).decode() not in log
