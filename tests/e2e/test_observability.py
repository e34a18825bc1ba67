"""Every decision in Envoy's access log, for both artifacts, and a report-only rollout.

certbound writes what it decided about each request it judges: the dynamic
module to dynamic metadata (namespace `certbound`: decision, flow, reason,
client_id, x5t#S256), the .wasm to the filter state `wasm.certbound` (the same
members as one JSON object; Envoy's proxy-wasm cannot write dynamic metadata).
The test template's access log prints both (tests/templates/certbound.envoy.yaml.tmpl);
`Envoy.decision(test_id)` reads the line of one request.
"""

from __future__ import annotations

import pytest

import harness
from conftest import THUMBPRINT_HEADER, another_envoy, good_client, x5t_of

FORM = "application/x-www-form-urlencoded"


def bound_token(client, stack) -> str:
    r = client.token(stack.clients["good"], "good-client")
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def test_a_token_exchange_is_written_bound_with_its_client_and_certificate(client, stack):
    r = client.token(stack.clients["good"], "good-client")
    assert r.status_code == 200, r.text
    assert stack.envoy.decision(r.test_id) == {
        "decision": "bound", "flow": "token", "client_id": "good-client", "x5t#S256": x5t_of(stack.clients["good"])}


def test_a_bound_token_with_its_certificate_is_written_allowed(client, stack):
    token = bound_token(client, stack)
    r = client.get("/api/orders", cert=stack.clients["good"], token=token)
    assert r.status_code == 200, r.text
    assert stack.envoy.decision(r.test_id) == {
        "decision": "allowed", "flow": "resource", "x5t#S256": x5t_of(stack.clients["good"])}


def test_a_bound_token_with_another_certificate_is_written_refused_with_its_reason(client, stack):
    token = bound_token(client, stack)
    r = client.get("/api/orders", cert=stack.clients["stranger"], token=token)
    assert r.status_code == 401
    assert stack.envoy.decision(r.test_id) == {
        "decision": "refused", "flow": "resource", "reason": "token_certificate_mismatch",
        "x5t#S256": x5t_of(stack.clients["stranger"])}


def test_a_refresh_with_another_certificate_is_written_refused(client, stack):
    code, verifier = harness.authorization_code(stack.auth_server.url, "spa")
    issued = client.post("/oauth2/token", cert=stack.clients["spa"], data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": harness.REDIRECT_URI,
        "code_verifier": verifier, "client_id": "spa"})
    assert issued.status_code == 200, issued.text
    r = client.post("/oauth2/token", cert=stack.clients["stranger"], data={
        "grant_type": "refresh_token", "refresh_token": issued.json()["refresh_token"], "client_id": "spa"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    d = stack.envoy.decision(r.test_id)
    assert (d["decision"], d["flow"], d["reason"]) == ("refused", "token", "refresh_certificate_mismatch"), d


def test_an_introspection_is_written_patched(client, stack):
    token = bound_token(client, stack)
    r = client.introspect(token)
    assert r.json()["cnf"]["x5t#S256"] == x5t_of(stack.clients["good"])
    assert stack.envoy.decision(r.test_id) == {"decision": "patched", "flow": "introspection"}


def test_the_access_log_never_carries_a_token(client, stack):
    token = bound_token(client, stack)
    client.get("/api/orders", cert=stack.clients["good"], token=token)
    client.introspect(token)
    log = stack.envoy.access_log_path.read_text()
    assert token not in log
    assert token.rstrip("=") not in log


# ---------------------------------------------------------------- report-only rollout


@pytest.fixture(scope="module")
def reporting(stack, tmp_path_factory):
    """certbound with /api/ in report-only mode: decisions are made, counted, logged and written; requests go on."""
    workdir = tmp_path_factory.mktemp("report-only")
    envoy = another_envoy(
        stack,
        workdir,
        {
            "clients": [good_client(stack)],
            "protected_routes": [{"path_prefix": "/api/", "enforcement": "report",
                                  "thumbprint_header": THUMBPRINT_HEADER}],
        },
        name="report-only",
    )
    yield envoy
    envoy.stop()


def get(envoy, stack, path, *, cert=None, token=None, headers=None):
    import uuid

    import requests

    test_id = uuid.uuid4().hex
    h = {"x-test-id": test_id, **(headers or {})}
    if token:
        h["authorization"] = f"Bearer {token}"
    r = requests.get(envoy.url + path, headers=h, cert=cert.pair if cert else None, verify=str(stack.pki.ca_path),
                     timeout=15)
    r.test_id = test_id
    return r


def post(envoy, stack, path, data, *, cert=None):
    import uuid

    import requests

    test_id = uuid.uuid4().hex
    r = requests.post(envoy.url + path, data=data, headers={"x-test-id": test_id}, cert=cert.pair if cert else None,
                      verify=str(stack.pki.ca_path), timeout=15)
    r.test_id = test_id
    return r


def api_saw(stack, r):
    return [x for x in stack.api.received if x["headers"].get("x-test-id") == r.test_id]


@pytest.mark.parametrize("case", ["another_certificate", "no_certificate", "unbound_token", "token_in_query", "no_token"])
def test_a_report_only_route_lets_a_request_it_would_refuse_go_on_unchanged(stack, reporting, case):
    t = post(reporting, stack, "/oauth2/token", {"grant_type": "client_credentials", "client_id": "good-client"},
             cert=stack.clients["good"])
    assert t.status_code == 200, t.text
    token = t.json()["access_token"]
    cert, tok, path, reason = {
        "another_certificate": (stack.clients["stranger"], token, "/api/x", "token_certificate_mismatch"),
        "no_certificate": (None, token, "/api/x", "token_without_certificate"),
        "unbound_token": (stack.clients["good"], "not-a-token-certbound-bound", "/api/x", "unbound_token"),
        "token_in_query": (None, None, f"/api/x?access_token={token}", "token_in_uri"),
        "no_token": (None, None, "/api/x", "missing_token"),
    }[case]
    before = {k: reporting.counter(f"certbound.{k}.{reason}") for k in ("reported", "refused")}
    r = get(reporting, stack, path, cert=cert, token=tok, headers={THUMBPRINT_HEADER: "forged"})
    assert r.status_code == 200, r.text
    seen = api_saw(stack, r)
    assert len(seen) == 1, "the API got it once"
    # Unchanged but for the headers certbound always removes: no verified thumbprint, the forged one gone.
    assert THUMBPRINT_HEADER not in seen[0]["headers"]
    if tok:
        assert seen[0]["headers"].get("authorization") == f"Bearer {tok}"
    d = reporting.decision(r.test_id)
    assert (d["decision"], d["flow"], d["reason"]) == ("reported", "resource", reason), d
    assert reporting.counter(f"certbound.reported.{reason}") == before["reported"] + 1
    assert reporting.counter(f"certbound.refused.{reason}") == before["refused"], "reported, not refused"


def test_a_report_only_route_allows_what_it_would_allow_as_an_enforcing_one(stack, reporting):
    t = post(reporting, stack, "/oauth2/token", {"grant_type": "client_credentials", "client_id": "good-client"},
             cert=stack.clients["good"])
    r = get(reporting, stack, "/api/x", cert=stack.clients["good"], token=t.json()["access_token"])
    assert r.status_code == 200, r.text
    assert api_saw(stack, r)[0]["headers"][THUMBPRINT_HEADER] == x5t_of(stack.clients["good"])
    assert reporting.decision(r.test_id)["decision"] == "allowed"


def test_the_token_endpoint_enforces_whatever_the_routes_say(stack, reporting):
    """Report-only is for protected routes: the token endpoint always authenticates."""
    r = post(reporting, stack, "/oauth2/token", {"grant_type": "client_credentials", "client_id": "good-client"},
             cert=stack.clients["stranger"])
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert reporting.decision(r.test_id)["decision"] == "refused"
