"""RFC 8705 §3 in front of a resource server: a bound token is accepted only
with its certificate (RFC 6750 §3 errors)."""

import base64
import json
from urllib.parse import quote

import requests

import harness
from conftest import JWT_CLIENT_SECRET, THUMBPRINT_HEADER, UPSTREAM_SECRETS, x5t_by_openssl


def bound_token(client, stack, name="good", client_id="good-client"):
    r = client.token(stack.clients[name], client_id)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def unbound_token(stack):
    r = requests.post(stack.auth_server.url + "/oauth2/token", data={"grant_type": "client_credentials"},
                      auth=("good-client", UPSTREAM_SECRETS["good-client"]), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def assert_invalid_token(r):
    assert r.status_code == 401, r.text
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="'), challenge
    assert r.json()["error"] == "invalid_token"


def test_bound_token_with_its_certificate_reaches_the_resource_with_the_thumbprint(client, stack):
    cert = stack.clients["good"]
    r = client.get("/api/orders", cert=cert, token=bound_token(client, stack),
                   headers={THUMBPRINT_HEADER: "forged-by-the-client"})
    assert r.status_code == 200, r.text
    [seen] = client.api_saw(r)
    assert seen["path"] == "/api/orders"
    assert seen["headers"][THUMBPRINT_HEADER] == x5t_by_openssl(cert.cert_path)


def test_bound_token_with_another_certificate_is_invalid_token_and_never_reaches_the_resource(client, stack):
    r = client.get("/api/orders", cert=stack.clients["stranger"], token=bound_token(client, stack))
    assert_invalid_token(r)
    assert client.api_saw(r) == []


def test_bound_token_without_a_certificate_is_invalid_token_and_never_reaches_the_resource(client, stack):
    before = stack.envoy.counter("certbound.refused.token_without_certificate")
    r = client.get("/api/orders", token=bound_token(client, stack))
    assert_invalid_token(r)
    assert client.api_saw(r) == []
    assert stack.envoy.counter("certbound.refused.token_without_certificate") == before + 1


def test_unbound_token_is_refused_where_binding_is_required(client, stack):
    r = client.get("/api/orders", cert=stack.clients["good"], token=unbound_token(stack))
    assert_invalid_token(r)
    assert client.api_saw(r) == []


def test_unbound_token_passes_where_the_route_allows_bearer_tokens(client, stack):
    token = unbound_token(stack)
    before = stack.envoy.counter("certbound.resource_allowed_unbound")
    r = client.get("/api/open/catalog", token=token)
    assert r.status_code == 200, r.text
    [seen] = client.api_saw(r)
    assert seen["headers"]["authorization"] == f"Bearer {token}"
    assert stack.envoy.counter("certbound.resource_allowed_unbound") == before + 1


def test_bound_token_is_still_enforced_on_a_route_that_allows_unbound_ones(client, stack):
    before = stack.envoy.counter("certbound.refused.token_certificate_mismatch")
    r = client.get("/api/open/catalog", cert=stack.clients["stranger"], token=bound_token(client, stack))
    assert_invalid_token(r)
    assert client.api_saw(r) == []
    assert stack.envoy.counter("certbound.refused.token_certificate_mismatch") == before + 1


def test_missing_token_is_401_without_an_error_code(client, stack):
    r = client.get("/api/orders", cert=stack.clients["good"])
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "error" not in r.json()
    assert client.api_saw(r) == []


def test_missing_token_passes_where_the_route_says_so(client, stack):
    r = client.get("/api/open/catalog")
    assert r.status_code == 200
    assert THUMBPRINT_HEADER not in client.api_saw(r)[0]["headers"]


def test_token_in_the_query_is_not_accepted(client, stack):
    token = bound_token(client, stack)
    r = client.get(f"/api/orders?access_token={token}", cert=stack.clients["good"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert client.api_saw(r) == []


def test_token_in_a_form_body_is_not_accepted(client, stack):
    token = bound_token(client, stack)
    # On /api/ a request without a Bearer header is already refused; /api/open/ passes such requests,
    # so the form body is what must not smuggle a token past the binding.
    r = client.post("/api/open/orders", cert=stack.clients["stranger"], data={"access_token": token, "item": "x"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert not [x for x in stack.api.received if x["headers"].get("x-test-id") == r.test_id]


def test_form_body_without_a_token_reaches_the_resource(client, stack):
    token = bound_token(client, stack)
    r = client.post("/api/orders", cert=stack.clients["good"], data={"item": "x"},
                    headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["body"] == "item=x"


def native_jwt(stack, cert):
    """A JWT access token the AS bound itself (RFC 8705 in the AS), carrying cnf."""
    r = requests.post(
        stack.auth_server.url + "/oauth2/token",
        data={"grant_type": "client_credentials", "resource": "https://api.certbound.test"},
        auth=("jwt-client", JWT_CLIENT_SECRET),
        headers={harness.AuthorizationServer.NATIVE_MTLS_HEADER: quote(cert.pem)},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["cnf"] == {"x5t#S256": x5t_by_openssl(cert.cert_path)}
    return token


@harness.wasm_only("jwt_claims (nested dynamic metadata the dynamic-module ABI of Envoy 1.40 cannot read)")
def test_jwt_with_cnf_verified_by_envoy_is_enforced_without_the_store(client, stack):
    cert = stack.clients["jwt"]
    token = native_jwt(stack, cert)
    ok = client.get("/api/orders", cert=cert, token=token)
    assert ok.status_code == 200, ok.text
    assert client.api_saw(ok)[0]["headers"][THUMBPRINT_HEADER] == x5t_by_openssl(cert.cert_path)
    assert_invalid_token(client.get("/api/orders", cert=stack.clients["stranger"], token=token))
    assert_invalid_token(client.get("/api/orders", token=token))


def test_forged_jwt_payload_is_not_believed(client, stack):
    stranger = stack.clients["stranger"]
    claims = {"iss": stack.auth_server.url, "cnf": {"x5t#S256": x5t_by_openssl(stranger.cert_path)}}
    b64 = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    unsigned = f'{b64({"alg": "none"})}.{b64(claims)}.'
    forged_header = {"x-jwt-payload": b64(claims), "jwt_payload": json.dumps(claims)}
    # An unsigned JWT naming the stranger's certificate, and the payload in headers: both unbelieved.
    for token in (unsigned.rstrip("."), unbound_token(stack)):
        r = client.get("/api/orders", cert=stranger, token=token, headers=forged_header)
        assert_invalid_token(r)
        assert client.api_saw(r) == []


def test_route_protected_by_envoy_route_metadata(client, stack):
    # /meta-api/ is protected in Envoy's route config (filter_metadata.certbound), not by a prefix in certbound's.
    token = bound_token(client, stack)
    ok = client.get("/meta-api/x", cert=stack.clients["good"], token=token)
    assert ok.status_code == 200, ok.text
    assert client.api_saw(ok)[0]["headers"][THUMBPRINT_HEADER] == x5t_by_openssl(stack.clients["good"].cert_path)
    assert_invalid_token(client.get("/meta-api/x", cert=stack.clients["stranger"], token=token))
    # Its policy allows unbound tokens, and requires a token.
    assert client.get("/meta-api/x", token=unbound_token(stack)).status_code == 200
    r = client.get("/meta-api/x")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_each_binding_stored_moves_the_slot_gauge_by_one_whichever_worker_stored_it(client, stack):
    # The stack's Envoy has 2 workers; the gauge is one number for the process, kept from the count in shared data.
    envoy = stack.envoy
    slots = envoy.counter("certbound.store_slots_capacity")
    assert slots >= 100000 and slots & (slots - 1) == 0, slots
    before = envoy.counter("certbound.store_slots_used")
    tokens = [bound_token(client, stack) for _ in range(6)]
    assert len(set(tokens)) == 6
    # A tick of another worker may have set the gauge from a count read just before the last write: it is
    # set again every second.
    harness.wait_until("the slot gauge to count 6 more bindings",
                       lambda: envoy.counter("certbound.store_slots_used") == before + 6, timeout=10)
