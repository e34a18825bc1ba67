"""RFC 8705 §3.2: introspection of bound tokens carries cnf.x5t#S256."""

import requests

from conftest import AS_ONLY_SECRET, UPSTREAM_SECRETS, another_envoy, x5t_by_openssl


def token_for(client, stack, name="good", client_id="good-client"):
    r = client.token(stack.clients[name], client_id)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def test_bound_token_introspects_with_the_openssl_thumbprint(client, stack):
    token = token_for(client, stack)
    r = client.introspect(token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["active"] is True
    assert body["client_id"] == "good-client"
    assert body["cnf"] == {"x5t#S256": x5t_by_openssl(stack.clients["good"].cert_path)}


def test_rsa_certificate_thumbprint_matches_openssl(client, stack):
    token = token_for(client, stack, "rsa", "rsa-client")
    body = client.introspect(token).json()
    assert body["cnf"]["x5t#S256"] == x5t_by_openssl(stack.clients["rsa"].cert_path)


def test_token_is_bound_to_the_certificate_actually_presented(client, stack):
    old = token_for(client, stack, "rotation-old", "rotating-client")
    new = token_for(client, stack, "rotation-new", "rotating-client")
    assert client.introspect(old).json()["cnf"]["x5t#S256"] == x5t_by_openssl(stack.clients["rotation-old"].cert_path)
    assert client.introspect(new).json()["cnf"]["x5t#S256"] == x5t_by_openssl(stack.clients["rotation-new"].cert_path)


def test_content_length_matches_the_patched_body(client, stack):
    token = token_for(client, stack)
    r = client.introspect(token)
    assert "cnf" in r.json()
    assert int(r.headers["content-length"]) == len(r.content)


def test_token_type_hint_does_not_change_the_answer(client, stack):
    token = token_for(client, stack)
    body = client.introspect(token, token_type_hint="access_token").json()
    assert body["cnf"]["x5t#S256"] == x5t_by_openssl(stack.clients["good"].cert_path)


def test_unbound_token_of_a_client_certbound_does_not_know_has_no_cnf(client, stack):
    # as-only-client is registered at the AS only: its tokens may be unbound, and pass as the AS said.
    direct = requests.post(
        stack.auth_server.url + "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("as-only-client", AS_ONLY_SECRET),
        timeout=10,
    )
    assert direct.status_code == 200, direct.text
    r = client.introspect(direct.json()["access_token"])
    body = r.json()
    assert body["active"] is True
    assert "cnf" not in body
    assert int(r.headers["content-length"]) == len(r.content)


def test_token_of_an_always_bound_client_with_no_binding_is_inactive(client, stack):
    """good-client authenticates by certificate, so all its tokens are bound: one issued around certbound
    (or whose binding was lost) is answered inactive, never active without cnf."""
    direct = requests.post(
        stack.auth_server.url + "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("good-client", UPSTREAM_SECRETS["good-client"]),
        timeout=10,
    )
    assert direct.status_code == 200, direct.text
    before = stack.envoy.counter("introspection_deactivated")
    r = client.introspect(direct.json()["access_token"])
    assert r.status_code == 200 and r.json() == {"active": False}, r.text
    assert int(r.headers["content-length"]) == len(r.content)
    assert stack.envoy.counter("introspection_deactivated") == before + 1


def test_token_nobody_issued_is_inactive_and_has_no_cnf(client, stack):
    body = client.introspect("not-a-token-anyone-issued").json()
    assert body == {"active": False}


def test_bound_token_that_became_inactive_gets_no_cnf(client, stack):
    # A refresh token certbound bound, then made inactive by the AS: oidc-provider rotates refresh
    # tokens, so after one refresh the first one is consumed. Its binding is still in the store.
    import harness

    code, verifier = harness.authorization_code(stack.auth_server.url, "web-app")
    first = client.post("/oauth2/token", cert=stack.clients["web"], data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": harness.REDIRECT_URI,
        "code_verifier": verifier, "client_id": "web-app"}).json()
    old = first["refresh_token"]
    x5t = x5t_by_openssl(stack.clients["web"].cert_path)
    assert client.introspect(old).json()["cnf"] == {"x5t#S256": x5t}  # bound, active
    r = client.post("/oauth2/token", cert=stack.clients["web"],
                    data={"grant_type": "refresh_token", "refresh_token": old, "client_id": "web-app"})
    assert r.status_code == 200, r.text
    # The AS, asked directly, now says the old refresh token is inactive ...
    direct = requests.post(stack.auth_server.url + "/oauth2/introspect", data={"token": old},
                           auth=("demo-rs", "demo-rs-secret"), timeout=10)
    assert direct.json() == {"active": False}
    before = {n: stack.envoy.counter(f"certbound.{n}") for n in ("introspection_patched", "introspection_unpatched")}
    r = client.introspect(old)
    # ... and through certbound the answer is the AS's, unchanged: no cnf on an inactive token.
    assert r.status_code == 200
    assert r.content == direct.content
    after = {n: stack.envoy.counter(f"certbound.{n}") for n in before}
    assert {n: after[n] - before[n] for n in before} == {"introspection_patched": 0, "introspection_unpatched": 1}


def test_introspection_error_passes_unchanged(client, stack):
    # Wrong introspecting credentials: the AS's own error reaches the caller.
    r = client.post("/oauth2/introspect", data={"token": token_for(client, stack)}, auth=("demo-rs", "wrong"))
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert "cnf" not in r.json()


def test_introspection_patches_are_counted(client, stack):
    before = stack.envoy.counter("certbound.introspection_patched")
    client.introspect(token_for(client, stack))
    assert stack.envoy.counter("certbound.introspection_patched") == before + 1


def test_wso2s_member_is_added_beside_the_rfc_one_when_configured(client, stack, tmp_path):
    # Resource servers written against WSO2 IS read cnf.x5t#SHA256; the option adds it beside x5t#S256.
    import harness

    good = stack.clients["good"]
    envoy = another_envoy(
        stack,
        tmp_path,
        {"introspection": {"wso2_x5t_sha256": True},
         "clients": [harness.certbound_client("good-client", certificates=[good.pem],
                                              upstream_secret=UPSTREAM_SECRETS["good-client"])]},
        name="wso2-member")
    try:
        kw = {"verify": str(stack.pki.ca_path), "timeout": 15}
        t = requests.post(envoy.url + "/oauth2/token", data={"grant_type": "client_credentials", "client_id": "good-client"},
                          cert=good.pair, **kw).json()["access_token"]
        r = requests.post(envoy.url + "/oauth2/introspect", data={"token": t}, auth=("demo-rs", "demo-rs-secret"), **kw)
        x5t = x5t_by_openssl(good.cert_path)
        assert r.json()["cnf"] == {"x5t#S256": x5t, "x5t#SHA256": x5t}
        assert int(r.headers["content-length"]) == len(r.content)
    finally:
        envoy.stop()
    # Off by default (the session Envoy): RFC 8705's member only.
    assert client.introspect(token_for(client, stack)).json()["cnf"] == {"x5t#S256": x5t_by_openssl(good.cert_path)}
