"""The bad-input table: every endpoint certbound touches, the inputs that
break real systems, each with its status, OAuth error, who must not have seen
it, and the counter that moved."""

import base64
import http.client
import json
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote

import pytest
import requests

from conftest import UPSTREAM_SECRETS

FORM = "application/x-www-form-urlencoded"
CC = "grant_type=client_credentials&client_id=good-client"


@dataclass
class Row:
    id: str
    method: str
    path: str
    body: bytes | Callable = b""
    headers: list | Callable = field(default_factory=list)
    cert: str | None = None
    status: int = 400
    error: str | None = "invalid_request"
    # "as", "api" or None: who must not have seen the request.
    unseen: str | None = "as"
    counter: str | None = None
    # "main": the session Envoy (client certificates on the TLS connection);
    # "terminator": the Envoy that trusts x-wso2-mtls-cert from a terminator.
    envoy: str = "main"


def pem_line(cert):
    return cert.pem.replace("\n", "")


def b64(cert):
    return base64.b64encode(cert.der()).decode()


def bound_token(ctx):
    r = ctx["client"].token(ctx["stack"].clients["good"], "good-client")
    return r.json()["access_token"]


def unbound_token(ctx):
    r = requests.post(ctx["stack"].auth_server.url + "/oauth2/token", data={"grant_type": "client_credentials"},
                      auth=("good-client", UPSTREAM_SECRETS["good-client"]), timeout=10)
    return r.json()["access_token"]


def bound_refresh_token(ctx):
    import harness

    code, verifier = harness.authorization_code(ctx["stack"].auth_server.url, "spa")
    r = ctx["client"].post("/oauth2/token", cert=ctx["stack"].clients["spa"], data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": harness.REDIRECT_URI,
        "code_verifier": verifier, "client_id": "spa"})
    return r.json()["refresh_token"]


def basic(user, password=""):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def form(body: str):
    return [("content-type", FORM)], body.encode()


ROWS = [
    # ---------------------------------------------------------------- token endpoint: client authentication
    Row("unknown_client", "POST", "/oauth2/token", b"grant_type=client_credentials&client_id=nobody", [("content-type", FORM)],
        cert="good", status=401, error="invalid_client", counter="refused.unknown_client"),
    Row("no_certificate", "POST", "/oauth2/token", CC.encode(), [("content-type", FORM)],
        status=401, error="invalid_client", counter="refused.no_certificate"),
    Row("unregistered_certificate", "POST", "/oauth2/token", CC.encode(), [("content-type", FORM)],
        cert="stranger", status=401, error="invalid_client", counter="refused.certificate_not_registered"),
    Row("another_clients_certificate", "POST", "/oauth2/token", CC.encode(), [("content-type", FORM)],
        cert="rsa", status=401, error="invalid_client", counter="refused.certificate_not_registered"),
    Row("expired_pinned_certificate", "POST", "/oauth2/token", b"grant_type=client_credentials&client_id=expired-client",
        [("content-type", FORM)], cert="expired", status=401, error="invalid_client", counter="refused.certificate_expired"),
    Row("public_client_registered_for_bound_tokens_without_certificate", "POST", "/oauth2/token",
        b"grant_type=client_credentials&client_id=spa-bound", [("content-type", FORM)],
        status=400, error="invalid_grant", counter="refused.no_certificate"),
    Row("forged_untrusted_header_alone", "POST", "/oauth2/token", CC.encode(),
        lambda ctx: [("content-type", FORM), ("x-wso2-mtls-cert", pem_line(ctx["stack"].clients["good"]))],
        status=401, error="invalid_client", counter="untrusted_header_removed"),
    # ---------------------------------------------------------------- token endpoint: ambiguous or malformed requests
    Row("missing_client_id", "POST", "/oauth2/token", b"grant_type=client_credentials", [("content-type", FORM)],
        cert="good", counter="refused.missing_client_id"),
    Row("client_id_twice", "POST", "/oauth2/token", (CC + "&client_id=good-client").encode(), [("content-type", FORM)],
        cert="good", counter="refused.bad_request"),
    Row("client_id_basic_and_body_disagree", "POST", "/oauth2/token", CC.encode(),
        [("content-type", FORM), ("authorization", basic("rsa-client"))], cert="good", counter="refused.client_id_mismatch"),
    Row("client_secret_in_body", "POST", "/oauth2/token", (CC + "&client_secret=s").encode(), [("content-type", FORM)],
        cert="good", counter="refused.mixed_client_authentication"),
    Row("client_secret_in_basic", "POST", "/oauth2/token", b"grant_type=client_credentials",
        [("content-type", FORM), ("authorization", basic("good-client", "s"))], cert="good",
        counter="refused.mixed_client_authentication"),
    Row("client_assertion_in_body", "POST", "/oauth2/token", (CC + "&client_assertion=x.y.z").encode(),
        [("content-type", FORM)], cert="good", counter="refused.mixed_client_authentication"),
    Row("bearer_at_token_endpoint", "POST", "/oauth2/token", CC.encode(),
        [("content-type", FORM), ("authorization", "Bearer abc")], cert="good", counter="refused.bad_request"),
    Row("malformed_basic", "POST", "/oauth2/token", CC.encode(),
        [("content-type", FORM), ("authorization", "Basic !!!")], cert="good", counter="refused.bad_request"),
    Row("two_authorization_headers", "POST", "/oauth2/token", b"grant_type=client_credentials",
        [("content-type", FORM), ("authorization", basic("good-client")), ("authorization", basic("rsa-client"))],
        cert="good", counter="refused.bad_request"),
    Row("json_body", "POST", "/oauth2/token", b'{"grant_type":"client_credentials","client_id":"good-client"}',
        [("content-type", "application/json")], cert="good", counter="refused.bad_request"),
    Row("no_content_type", "POST", "/oauth2/token", CC.encode(), [], cert="good", counter="refused.bad_request"),
    Row("bad_percent_encoding", "POST", "/oauth2/token", b"grant_type=client_credentials&client_id=good%2", [("content-type", FORM)],
        cert="good", counter="refused.malformed_parameter"),
    Row("body_not_utf8", "POST", "/oauth2/token", b"grant_type=client_credentials&client_id=%ff%fe", [("content-type", FORM)],
        cert="good", counter="refused.malformed_parameter"),
    Row("client_id_spelled_for_php", "POST", "/oauth2/token", b"grant_type=client_credentials&client.id=good-client",
        [("content-type", FORM)], cert="good", counter="refused.ambiguous_parameter"),
    Row("body_in_utf16", "POST", "/oauth2/token", "grant_type=client_credentials&client_id=good-client".encode("utf-16-le"),
        [("content-type", FORM + "; charset=utf-16le")], cert="good", counter="refused.unsupported_charset"),
    Row("body_with_a_byte_order_mark", "POST", "/oauth2/token", b"\xef\xbb\xbfgrant_type=client_credentials&client_id=good-client",
        [("content-type", FORM)], cert="good", counter="refused.unsupported_charset"),
    Row("body_too_large", "POST", "/oauth2/token", (CC + "&pad=" + "x" * 70000).encode(), [("content-type", FORM)],
        cert="good", status=413, counter="refused.body_too_large"),
    Row("get_token_endpoint", "GET", "/oauth2/token", b"", [], cert="good", status=405, counter="refused.method_not_allowed"),
    Row("post_without_body", "POST", "/oauth2/token", b"", [("content-type", FORM), ("content-length", "0")], cert="good",
        counter="refused.bad_request"),
    Row("refresh_token_twice", "POST", "/oauth2/token",
        b"grant_type=refresh_token&refresh_token=a&refresh_token=b&client_id=good-client", [("content-type", FORM)],
        cert="good", counter="refused.bad_request"),
    Row("refresh_with_another_certificate", "POST", "/oauth2/token",
        lambda ctx: f"grant_type=refresh_token&client_id=spa&refresh_token={bound_refresh_token(ctx)}".encode(),
        [("content-type", FORM)], cert="stranger", status=400, error="invalid_grant",
        counter="refused.refresh_certificate_mismatch"),
    Row("refresh_without_certificate", "POST", "/oauth2/token",
        lambda ctx: f"grant_type=refresh_token&client_id=spa&refresh_token={bound_refresh_token(ctx)}".encode(),
        [("content-type", FORM)], status=400, error="invalid_grant", counter="refused.refresh_without_certificate"),
    # ---------------------------------------------------------------- certificate headers from a trusted terminator
    Row("header_garbage", "POST", "/oauth2/token", CC.encode(),
        [("content-type", FORM), ("x-wso2-mtls-cert", "!!! not a certificate !!!")],
        counter="refused.bad_certificate_header", envoy="terminator"),
    Row("header_truncated_base64", "POST", "/oauth2/token", CC.encode(),
        lambda ctx: [("content-type", FORM), ("x-wso2-mtls-cert", b64(ctx["stack"].clients["good"])[:101])],
        counter="refused.bad_certificate_header", envoy="terminator"),
    Row("header_pem_without_end", "POST", "/oauth2/token", CC.encode(),
        lambda ctx: [("content-type", FORM), ("x-wso2-mtls-cert", pem_line(ctx["stack"].clients["good"]).split("-----END")[0])],
        counter="refused.bad_certificate_header", envoy="terminator"),
    Row("header_not_x509", "POST", "/oauth2/token", CC.encode(),
        [("content-type", FORM), ("x-wso2-mtls-cert", base64.b64encode(b"\x30\x03\x02\x01\x01").decode())],
        counter="refused.bad_certificate_header", envoy="terminator"),
    Row("header_20_kib", "POST", "/oauth2/token", CC.encode(), [("content-type", FORM), ("x-wso2-mtls-cert", "A" * 20480)],
        counter="refused.certificate_header_too_large", envoy="terminator"),
    Row("header_twice", "POST", "/oauth2/token", CC.encode(),
        lambda ctx: [("content-type", FORM), ("x-wso2-mtls-cert", pem_line(ctx["stack"].clients["good"])),
                     ("x-wso2-mtls-cert", pem_line(ctx["stack"].clients["good"]))],
        counter="refused.duplicate_certificate_header", envoy="terminator"),
    Row("header_expired_certificate", "POST", "/oauth2/token", b"grant_type=client_credentials&client_id=expired-client",
        lambda ctx: [("content-type", FORM), ("x-wso2-mtls-cert", pem_line(ctx["stack"].clients["expired"]))],
        status=401, error="invalid_client", counter="refused.certificate_expired", envoy="terminator"),
    Row("header_not_yet_valid_certificate", "POST", "/oauth2/token", b"grant_type=client_credentials&client_id=expired-client",
        lambda ctx: [("content-type", FORM), ("x-wso2-mtls-cert", pem_line(ctx["hop"]["certs"]["not-yet"]))],
        status=401, error="invalid_client", counter="refused.certificate_not_yet_valid", envoy="terminator"),
    Row("header_xfcc_unbalanced_quotes", "POST", "/oauth2/token", CC.encode(),
        [("content-type", FORM), ("x-wso2-mtls-cert", 'Hash=00;Cert="%2D%2D')],
        counter="refused.bad_certificate_header", envoy="terminator"),
    Row("tls_client_auth_chain_not_verified", "POST", "/oauth2/token", b"grant_type=client_credentials&client_id=rsa-client",
        lambda ctx: [("content-type", FORM), ("x-wso2-mtls-cert", pem_line(ctx["hop"]["certs"]["tls-client"]))],
        status=401, error="invalid_client", counter="refused.chain_not_verified", envoy="terminator"),
    # What users send in practice, and certbound accepts: the client's certificate is read right.
    Row("header_whitespace_mangled_pem", "POST", "/oauth2/token", CC.encode(),
        lambda ctx: [("content-type", FORM),
                     ("x-wso2-mtls-cert", ctx["stack"].clients["good"].pem.replace("\n", " \t ").strip())],
        status=200, error=None, unseen=None, counter="client_authenticated", envoy="terminator"),
    Row("header_chain_where_one_certificate_is_expected", "POST", "/oauth2/token", CC.encode(),
        lambda ctx: [("content-type", FORM),
                     ("x-wso2-mtls-cert", pem_line(ctx["stack"].clients["good"]) + pem_line(ctx["stack"].clients["rsa"]))],
        status=200, error=None, unseen=None, counter="client_authenticated", envoy="terminator"),
    Row("header_trailing_newline_url_encoded", "POST", "/oauth2/token", CC.encode(),
        lambda ctx: [("content-type", FORM), ("x-wso2-mtls-cert", quote(ctx["stack"].clients["good"].pem + "\n", safe=""))],
        status=200, error=None, unseen=None, counter="client_authenticated", envoy="terminator"),
    # ---------------------------------------------------------------- protected resources
    Row("resource_token_other_certificate", "GET", "/api/orders", b"",
        lambda ctx: [("authorization", f"Bearer {bound_token(ctx)}")], cert="stranger", status=401, error="invalid_token",
        unseen="api", counter="refused.token_certificate_mismatch"),
    Row("resource_token_without_certificate", "GET", "/api/orders", b"",
        lambda ctx: [("authorization", f"Bearer {bound_token(ctx)}")], status=401, error="invalid_token",
        unseen="api", counter="refused.token_without_certificate"),
    Row("resource_unbound_token_where_binding_is_required", "GET", "/api/orders", b"",
        lambda ctx: [("authorization", f"Bearer {unbound_token(ctx)}")], cert="good", status=401, error="invalid_token",
        unseen="api", counter="refused.unbound_token"),
    Row("resource_no_token", "GET", "/api/orders", b"", [], cert="good", status=401, error=None, unseen="api",
        counter="refused.missing_token"),
    Row("resource_token_outside_rfc6750_characters", "GET", "/api/orders", b"",
        [("authorization", "Bearer abc{}<>def")], cert="good", unseen="api", counter="refused.bad_request"),
    Row("resource_basic_instead_of_bearer", "GET", "/api/orders", b"", [("authorization", basic("u", "p"))], cert="good",
        unseen="api", counter="refused.other_scheme"),
    Row("resource_token_in_query", "GET", "/api/orders?access_token=abc", b"", [], cert="good", unseen="api",
        counter="refused.token_in_uri"),
    Row("resource_token_in_form_body", "POST", "/api/open/orders", b"access_token=abc&item=1", [("content-type", FORM)],
        cert="good", unseen="api", counter="refused.token_in_uri"),
    Row("resource_two_authorization_headers", "GET", "/api/orders", b"",
        lambda ctx: [("authorization", f"Bearer {bound_token(ctx)}"), ("authorization", "Bearer other")], cert="good",
        unseen="api", counter="refused.bad_request"),
    Row("resource_form_body_too_large", "POST", "/api/open/orders", ("item=" + "x" * 70000).encode(), [("content-type", FORM)],
        cert="good", status=413, unseen="api", counter="refused.body_too_large"),
    # Bytes that are not UTF-8 in a header (HTTP/1.1 lets obs-text through): refused, never a trapped VM.
    Row("resource_non_utf8_authorization", "GET", "/api/orders", b"", [("authorization", b"Bearer ab\xffcd")],
        cert="good", unseen="api", counter="refused.bad_request"),
    Row("token_non_utf8_content_type", "POST", "/oauth2/token", CC.encode(),
        [("content-type", b"application/x-www-form-urlencoded\xff")], cert="good", counter="refused.bad_request"),
    Row("header_non_utf8_certificate", "POST", "/oauth2/token", CC.encode(),
        [("content-type", FORM), ("x-wso2-mtls-cert", b"-----BEGIN CERTIFICATE-----\xff\xfe")],
        counter="refused.bad_certificate_header", envoy="terminator"),
    # ---------------------------------------------------------------- introspection
    Row("introspection_body_too_large", "POST", "/oauth2/introspect", ("token=" + "x" * 70000).encode(),
        [("content-type", FORM), ("authorization", basic("demo-rs", "demo-rs-secret"))], status=413,
        counter="refused.body_too_large"),
]


def send(port, ca, cert, method, path, headers, body):
    """A raw HTTP/1.1 request (repeated headers allowed), with an optional client certificate."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert is not None:
        ctx.load_cert_chain(*cert.pair)
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=20)
    conn.putrequest(method, path, skip_accept_encoding=True)
    names = {k.lower() for k, _ in headers}
    for k, v in headers:
        conn.putheader(k, v)
    if body and "content-length" not in names:
        conn.putheader("content-length", str(len(body)))
    conn.endheaders(body or None)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row, client, stack, hop):
    ctx = {"client": client, "stack": stack, "hop": hop}
    envoy = stack.envoy if row.envoy == "main" else hop["inner"]
    headers = row.headers(ctx) if callable(row.headers) else list(row.headers)
    body = row.body(ctx) if callable(row.body) else row.body
    test_id = uuid.uuid4().hex
    headers.append(("x-test-id", test_id))
    counter = f"certbound.{row.counter}" if row.counter else None
    before = envoy.counter(counter) if counter else 0
    cert = stack.clients[row.cert] if row.cert else None
    status, resp_headers, data = send(envoy.port, str(stack.pki.ca_path), cert, row.method, row.path, headers, body)
    assert status == row.status, data[:500]
    if row.error is not None:
        assert json.loads(data)["error"] == row.error
        assert json.loads(data)["error_description"]
    if status in (400, 401, 405, 413) and row.path.startswith("/oauth2/"):
        assert resp_headers["content-type"] == "application/json"
        assert resp_headers["cache-control"] == "no-store"
    if row.unseen == "as":
        assert not stack.auth_server.saw(test_id)
    if row.unseen == "api":
        assert not [x for x in stack.api.received if x["headers"].get("x-test-id") == test_id]
        if row.status == 401:
            assert resp_headers["www-authenticate"].startswith("Bearer")
    if counter:
        assert envoy.counter(counter) == before + 1, counter

