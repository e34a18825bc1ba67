"""RFC 8705 §3 and §4: tokens of every grant are bound; a bound refresh token
refreshes only with its certificate."""

import base64
import json

import pytest
import requests

import harness
from conftest import x5t_by_openssl


def code_exchange(client, stack, client_id, cert):
    code, verifier = harness.authorization_code(stack.auth_server.url, client_id)
    return client.post(
        "/oauth2/token",
        cert=cert,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": harness.REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": client_id,
        },
    ), code, verifier


def refresh(client, cert, client_id, refresh_token):
    return client.post(
        "/oauth2/token",
        cert=cert,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id},
    )


def cnf_of(client, token, **hint):
    body = client.introspect(token, **hint).json()
    assert body["active"] is True, body
    return body.get("cnf", {}).get("x5t#S256")


@pytest.fixture
def web_tokens(client, stack):
    r, _, _ = code_exchange(client, stack, "web-app", stack.clients["web"])
    assert r.status_code == 200, r.text
    return r.json()


def test_authorization_code_with_pkce_binds_access_and_refresh_tokens(client, stack, web_tokens):
    t = x5t_by_openssl(stack.clients["web"].cert_path)
    assert web_tokens["id_token"] and web_tokens["refresh_token"]
    assert cnf_of(client, web_tokens["access_token"]) == t
    assert cnf_of(client, web_tokens["refresh_token"]) == t
    assert cnf_of(client, web_tokens["refresh_token"], token_type_hint="refresh_token") == t


def test_code_exchange_response_reaches_the_client_unchanged(client, stack, web_tokens):
    assert set(web_tokens) == {"access_token", "expires_in", "id_token", "refresh_token", "scope", "token_type"}
    # The values the AS issues (oidc-provider: 600 s access tokens here, the scope authorized), untouched.
    assert (web_tokens["token_type"], web_tokens["expires_in"]) == ("Bearer", 600)
    assert set(web_tokens["scope"].split()) == {"openid", "offline_access"}
    # The ID token is the AS's, for this client, signed (three parts).
    header, payload, signature = web_tokens["id_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (claims["iss"], claims["aud"], claims["sub"]) == (stack.auth_server.url, "web-app", "alice")
    assert signature
    # Both tokens are the AS's own (asked directly, not through certbound) ...
    for kind in ("access_token", "refresh_token"):
        direct = requests.post(stack.auth_server.url + "/oauth2/introspect", data={"token": web_tokens[kind]},
                               auth=("demo-rs", "demo-rs-secret"), timeout=10).json()
        assert (direct["active"], direct["client_id"]) == (True, "web-app"), kind
        assert "cnf" not in direct, kind
    # ... and bound by certbound to the certificate presented, as openssl computes its thumbprint.
    t = x5t_by_openssl(stack.clients["web"].cert_path)
    assert cnf_of(client, web_tokens["access_token"]) == t
    assert cnf_of(client, web_tokens["refresh_token"]) == t


def test_refresh_with_the_same_certificate_binds_the_new_tokens(client, stack, web_tokens):
    cert = stack.clients["web"]
    r = refresh(client, cert, "web-app", web_tokens["refresh_token"])
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["refresh_token"] != web_tokens["refresh_token"], "the AS rotates refresh tokens"
    t = x5t_by_openssl(cert.cert_path)
    assert cnf_of(client, new["access_token"]) == t
    assert cnf_of(client, new["refresh_token"]) == t
    # The rotated-away refresh token no longer refreshes (the AS's rule), and certbound lets the AS say so.
    old = refresh(client, cert, "web-app", web_tokens["refresh_token"])
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"
    assert client.as_saw(old)


def test_refresh_with_another_certificate_is_invalid_grant_and_never_reaches_the_as(client, stack, web_tokens):
    before = stack.envoy.counter("certbound.refused.refresh_certificate_mismatch")
    # "spa" is a public client: any certificate passes client authentication, so only the binding refuses.
    r = refresh(client, stack.clients["spa"], "web-app", web_tokens["refresh_token"])
    assert r.status_code == 401  # web-app must present its own certificate first (invalid_client)
    spa = code_exchange(client, stack, "spa", stack.clients["spa"])[0].json()
    r = refresh(client, stack.clients["stranger"], "spa", spa["refresh_token"])
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_grant"
    assert not client.as_saw(r)
    assert stack.envoy.counter("certbound.refused.refresh_certificate_mismatch") == before + 1


def test_refresh_without_a_certificate_is_invalid_grant_and_never_reaches_the_as(client, stack):
    spa = code_exchange(client, stack, "spa", stack.clients["spa"])[0].json()
    r = refresh(client, None, "spa", spa["refresh_token"])
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_grant"
    assert not client.as_saw(r)


def test_public_client_with_a_certificate_gets_bound_tokens_that_refresh_only_with_it(client, stack):
    cert = stack.clients["spa"]
    r, _, _ = code_exchange(client, stack, "spa", cert)
    assert r.status_code == 200, r.text
    tokens = r.json()
    t = x5t_by_openssl(cert.cert_path)
    assert cnf_of(client, tokens["access_token"]) == t
    assert cnf_of(client, tokens["refresh_token"]) == t
    r = refresh(client, cert, "spa", tokens["refresh_token"])
    assert r.status_code == 200, r.text
    assert cnf_of(client, r.json()["refresh_token"]) == t


def test_public_client_without_a_certificate_gets_unbound_tokens_and_refreshes_without_one(client, stack):
    before = stack.envoy.counter("certbound.unbound_token_responses")
    r, _, _ = code_exchange(client, stack, "spa", None)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert cnf_of(client, tokens["access_token"]) is None
    assert cnf_of(client, tokens["refresh_token"]) is None
    r = refresh(client, None, "spa", tokens["refresh_token"])
    assert r.status_code == 200, r.text
    assert cnf_of(client, r.json()["access_token"]) is None
    assert stack.envoy.counter("certbound.unbound_token_responses") == before + 2


def test_public_client_registered_for_bound_tokens_without_certificate_is_invalid_grant(client, stack):
    """RFC 6749 §5.2: a public client is not authenticated, so the failure is the grant's (as oidc-provider's own
    RFC 8705 answers it)."""
    code, verifier = harness.authorization_code(stack.auth_server.url, "spa-bound")
    r = client.post(
        "/oauth2/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": harness.REDIRECT_URI,
              "code_verifier": verifier, "client_id": "spa-bound"},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert not client.as_saw(r)


def test_failed_grants_pass_the_as_error_through_and_bind_nothing(client, stack):
    cert = stack.clients["web"]
    before = stack.envoy.counter("certbound.tokens_bound")
    bad = client.post("/oauth2/token", cert=cert, data={
        "grant_type": "authorization_code", "code": "not-a-code", "redirect_uri": harness.REDIRECT_URI,
        "code_verifier": "x" * 43, "client_id": "web-app"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    assert client.as_saw(bad)

    first, code, verifier = code_exchange(client, stack, "web-app", cert)
    assert first.status_code == 200
    bound_after_first = stack.envoy.counter("certbound.tokens_bound")
    assert bound_after_first == before + 2
    replay = client.post("/oauth2/token", cert=cert, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": harness.REDIRECT_URI,
        "code_verifier": verifier, "client_id": "web-app"})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert stack.envoy.counter("certbound.tokens_bound") == bound_after_first


def test_unbound_refresh_token_is_left_to_the_as(client, stack):
    # A refresh token certbound never saw (issued by the AS directly) is the AS's to judge.
    code, verifier = harness.authorization_code(stack.auth_server.url, "spa")
    direct = requests.post(stack.auth_server.url + "/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": harness.REDIRECT_URI,
        "code_verifier": verifier, "client_id": "spa"}, timeout=10)
    assert direct.status_code == 200, direct.text
    r = refresh(client, stack.clients["spa"], "spa", direct.json()["refresh_token"])
    assert r.status_code == 200, r.text
    assert cnf_of(client, r.json()["access_token"]) == x5t_by_openssl(stack.clients["spa"].cert_path)
