"""The attack catalogue: request shapes an attacker sends to get past the
binding, each over HTTP/1.1 and HTTP/2 (tests/e2e/rawhttp.py sends what
`requests` cannot). Every row says the status (and OAuth error) it must get,
who must never have seen it, and that no token ever comes out unbound.

The main Envoy (conftest `stack`): `good-client` (certificate `good`), public
clients `spa` and `spa-bound` (the latter requires a certificate), protected
routes `/api/` (require_binding, missing token rejected, thumbprint header
`x-certbound-x5t`) and `/api/open/` (unbound tokens allowed, missing token
passed), and `x-wso2-mtls-cert` trusted only from 10.0.0.0/8.
"""

from __future__ import annotations

import base64
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote

import pytest

import harness
import rawhttp
from conftest import THUMBPRINT_HEADER, UPSTREAM_SECRETS, x5t_of

FORM = "application/x-www-form-urlencoded"
PROTOCOLS = ["h1", "h2"]
TRAILER = [("x-checksum", "c2FtcGxl")]


@pytest.fixture(params=PROTOCOLS)
def proto(request):
    return request.param


# ---------------------------------------------------------------- helpers


def send(stack, proto, method, path, headers=(), body=None, *, cert=None, trailers=None, envoy=None) -> rawhttp.Response:
    """One raw request, tagged with a fresh x-test-id (so client.as_saw / api_saw work on the response)."""
    fn = rawhttp.h1 if proto == "h1" else rawhttp.h2
    return fn((envoy or stack.envoy).port, method, path, list(headers), body, ca=str(stack.pki.ca_path),
              cert=cert.pair if cert else None, trailers=trailers, test_id=rawhttp.new_test_id())


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def pem_line(cert):
    return cert.pem.replace("\n", "")


@pytest.fixture(scope="module")
def token(client, stack):
    """good-client's access token, bound to the `good` certificate."""
    r = client.token(stack.clients["good"], "good-client")
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def spa_refresh_token(client, stack) -> str:
    """A fresh refresh token of the public client `spa`, bound to the `spa` certificate."""
    code, verifier = harness.authorization_code(stack.auth_server.url, "spa")
    r = client.post("/oauth2/token", cert=stack.clients["spa"], data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": harness.REDIRECT_URI,
        "code_verifier": verifier, "client_id": "spa"})
    assert r.status_code == 200, r.text
    return r.json()["refresh_token"]


def refresh_body(client, stack) -> bytes:
    return f"grant_type=refresh_token&client_id=spa&refresh_token={spa_refresh_token(client, stack)}".encode()


def assert_refused(r: rawhttp.Response, status: int, error: str | None = None):
    assert r.status == status, r
    if error is not None:
        assert r.error == error, r
    if status == 401 and r.header("www-authenticate") is None:
        # A 401 on a protected route is a Bearer challenge (RFC 6750 §3); at the token endpoint the body says it.
        assert r.error is not None, r


def assert_api_never_saw(client, r):
    assert not client.api_saw(r), f"the API received it: {client.api_saw(r)}"


def assert_as_never_saw(client, r):
    assert not client.as_saw(r), "the AS received it"


def assert_no_unbound_token(client, r: rawhttp.Response):
    """Any token in the body introspects (through certbound) as active with cnf.x5t#S256."""
    try:
        doc = r.json()
    except ValueError:
        return
    if not isinstance(doc, dict):
        return
    for kind in ("access_token", "refresh_token"):
        if kind in doc:
            i = client.introspect(doc[kind]).json()
            assert "x5t#S256" in (i.get("cnf") or {}), f"{kind} came out unbound (status {r.status}): {i}"


def assert_no_token_in_body(r: rawhttp.Response):
    assert b"access_token" not in r.body and b"refresh_token" not in r.body, r


# ================================================================ A. request trailers
# HTTP/2 request trailers (a second HEADERS frame with END_STREAM); over HTTP/1.1
# chunked trailers, which Envoy drops by default: the outcome must be the same.


def test_trailers_resource_bound_token_without_certificate(client, stack, proto, token):
    """Trailers: a form POST with a bound token and no certificate must not slip past while certbound waits for end of stream."""
    r = send(stack, proto, "POST", "/api/orders", [("authorization", f"Bearer {token}"), ("content-type", FORM)],
             [b"a=1"], trailers=TRAILER)
    assert_refused(r, 401, "invalid_token")
    assert (r.header("www-authenticate") or "").startswith("Bearer"), r
    assert_api_never_saw(client, r)


@pytest.mark.parametrize("cert", [None, "stranger"], ids=["no_cert", "stranger_cert"])
def test_trailers_refresh_without_its_certificate(client, stack, proto, cert):
    """Trailers: a bound refresh token presented with no certificate, or another, must be refused before the AS."""
    r = send(stack, proto, "POST", "/oauth2/token", [("content-type", FORM)], [refresh_body(client, stack)],
             cert=stack.clients[cert] if cert else None, trailers=TRAILER)
    assert_refused(r, 400, "invalid_grant")
    assert_as_never_saw(client, r)
    assert_no_unbound_token(client, r)


def test_trailers_code_exchange_of_certificate_required_public_client_without_certificate(client, stack, proto):
    """Trailers: spa-bound (tls_client_certificate_bound_access_tokens) exchanging a code without a certificate."""
    code, verifier = harness.authorization_code(stack.auth_server.url, "spa-bound")
    body = (f"grant_type=authorization_code&code={code}&redirect_uri={harness.REDIRECT_URI}"
            f"&code_verifier={verifier}&client_id=spa-bound").encode()
    r = send(stack, proto, "POST", "/oauth2/token", [("content-type", FORM)], [body[:20], body[20:]], trailers=TRAILER)
    assert_refused(r, 401, "invalid_client")
    assert_as_never_saw(client, r)
    assert_no_unbound_token(client, r)


def test_trailers_introspection_still_gets_cnf(client, stack, proto, token):
    """Trailers: introspection with request trailers must still carry cnf for a bound token."""
    r = send(stack, proto, "POST", "/oauth2/introspect",
             [("content-type", FORM), ("authorization", basic("demo-rs", "demo-rs-secret"))],
             [b"token=", token.encode()], trailers=TRAILER)
    assert r.status == 200, r
    assert r.json()["active"] is True, r
    assert r.json()["cnf"]["x5t#S256"] == x5t_of(stack.clients["good"]), r


def test_trailers_token_request_is_still_bound(client, stack, proto):
    """Trailers: a good-client token request with trailers must not come back with an unbound token."""
    r = send(stack, proto, "POST", "/oauth2/token", [("content-type", FORM)],
             [b"grant_type=client_credentials", b"&client_id=good-client"], cert=stack.clients["good"], trailers=TRAILER)
    assert r.status == 200, r
    assert "access_token" in r.json(), r
    assert_no_unbound_token(client, r)


def test_trailers_without_body_at_token_endpoint(client, stack, proto):
    """Trailers without a body (HEADERS, trailers, no DATA): an empty token request is invalid_request, not passed on."""
    r = send(stack, proto, "POST", "/oauth2/token", [("content-type", FORM)], None,
             cert=stack.clients["good"], trailers=TRAILER)
    assert_refused(r, 400, "invalid_request")
    assert_as_never_saw(client, r)
    assert_no_unbound_token(client, r)


def test_trailers_without_body_at_resource(client, stack, proto, token):
    """Trailers without a body on a protected route: a bound token with no certificate is refused."""
    r = send(stack, proto, "POST", "/api/orders", [("authorization", f"Bearer {token}"), ("content-type", FORM)], None,
             trailers=TRAILER)
    assert_refused(r, 401)
    assert_api_never_saw(client, r)


# ================================================================ B. spoofed client address
# x-wso2-mtls-cert is trusted only from 10.0.0.0/8; the client is on loopback and
# claims 10.1.2.3 in a header Envoy would otherwise believe (use_remote_address off).


ADDRESS_HEADERS = ["x-forwarded-for", "x-envoy-external-address"]


@pytest.mark.parametrize("address_header", ADDRESS_HEADERS)
def test_spoofed_address_at_token_endpoint(client, stack, proto, address_header):
    """Address spoofing: a forged trusted-source address plus a forged certificate header must not authenticate good-client."""
    r = send(stack, proto, "POST", "/oauth2/token",
             [("content-type", FORM), (address_header, "10.1.2.3"), ("x-wso2-mtls-cert", pem_line(stack.clients["good"]))],
             b"grant_type=client_credentials&client_id=good-client")
    assert_refused(r, 401, "invalid_client")
    assert_as_never_saw(client, r)
    assert_no_unbound_token(client, r)


@pytest.mark.parametrize("address_header", ADDRESS_HEADERS)
def test_spoofed_address_at_resource(client, stack, proto, token, address_header):
    """Address spoofing: a stolen bound token plus a forged certificate header from a forged address must not reach the API."""
    r = send(stack, proto, "GET", "/api/orders",
             [("authorization", f"Bearer {token}"), (address_header, "10.1.2.3"),
              ("x-wso2-mtls-cert", pem_line(stack.clients["good"]))])
    assert_refused(r, 401, "invalid_token")
    assert_api_never_saw(client, r)


# ================================================================ C. token and introspection path variants
# Paths the AS may route to its token endpoint (oidc-provider ignores case and a
# trailing slash; others resolve dots, decode, drop ;parameters) but that are not
# the configured token_path byte for byte.


@dataclass
class PathRow:
    id: str
    path: str
    attack: str


TOKEN_PATHS = [
    PathRow("Token_case", "/oauth2/Token", "case variant of the token path"),
    PathRow("trailing_slash", "/oauth2/token/", "trailing slash"),
    PathRow("upper_case", "/OAUTH2/TOKEN", "all upper case"),
    PathRow("two_trailing_slashes", "/oauth2/token//", "two trailing slashes"),
    PathRow("dot_segment", "/oauth2/./token", "'.' segment"),
    PathRow("dot_dot_segment", "/oauth2/x/../token", "'..' segment"),
    PathRow("percent_encoded_letter", "/oauth2/%74oken", "percent-encoded unreserved letter"),
    PathRow("matrix_parameter", "/oauth2/token;x=1", "';' path parameter (Tomcat/Spring drop it)"),
]


@pytest.mark.parametrize("row", TOKEN_PATHS, ids=[r.id for r in TOKEN_PATHS])
def test_token_path_variant_refresh_with_another_certificate(client, stack, proto, row):
    """Path confusion at the token endpoint: refreshing spa's bound refresh token with the stranger certificate."""
    r = send(stack, proto, "POST", row.path, [("content-type", FORM)], refresh_body(client, stack),
             cert=stack.clients["stranger"])
    assert r.status != 200, r
    if r.status == 400:
        assert r.error in ("invalid_grant", "invalid_request"), r
    else:
        assert 300 <= r.status < 400 or r.status == 404, r
    assert_no_token_in_body(r)
    assert_no_unbound_token(client, r)


INTROSPECTION_PATHS = [
    PathRow("Introspect_case", "/oauth2/Introspect", "case variant of the introspection path"),
    PathRow("introspect_trailing_slash", "/oauth2/introspect/", "trailing slash"),
]


@pytest.mark.parametrize("row", INTROSPECTION_PATHS, ids=[r.id for r in INTROSPECTION_PATHS])
def test_introspection_path_variant_never_drops_cnf(client, stack, proto, token, row):
    """Path confusion at introspection: an active answer for a bound token always carries cnf (or the request is refused)."""
    r = send(stack, proto, "POST", row.path,
             [("content-type", FORM), ("authorization", basic("demo-rs", "demo-rs-secret"))], f"token={token}")
    if r.status == 200:
        doc = r.json()
        if doc.get("active"):
            assert "x5t#S256" in (doc.get("cnf") or {}), f"active without cnf: {doc}"


# ================================================================ D. path variants across route policies
# /api/open/ is permissive, /api/ is not: a path the policy lookup reads as under
# /api/open/ but the API resolves to /api/orders must not get /api/open/'s policy.


def strictest_reading(path: str) -> str:
    """The path as the most lenient server reads it: decoded, '\\' as '/', ';params' dropped, slashes merged, dots resolved, lower case."""
    p = unquote(path.split("?", 1)[0]).replace("\\", "/")
    p = re.sub("/+", "/", "/".join(seg.split(";", 1)[0] for seg in p.split("/")))
    return (posixpath.normpath(p) + ("/" if p.endswith("/") else "")).lower()


RESOURCE_PATHS = [
    PathRow("dot_dot", "/api/open/../orders", "'..' segment"),
    PathRow("encoded_dots_lower", "/api/open/%2e%2e/orders", "percent-encoded '..' (lower case)"),
    PathRow("encoded_dots_upper", "/api/open/%2E%2E/orders", "percent-encoded '..' (upper case)"),
    PathRow("encoded_slash_upper", "/api/open/..%2Forders", "'..' then percent-encoded '/'"),
    PathRow("encoded_slash_lower", "/api/open/..%2forders", "'..' then percent-encoded '/' (lower case)"),
    PathRow("encoded_backslash", "/api/open/..%5Corders", "'..' then percent-encoded '\\'"),
    PathRow("backslash", "/api/open/..\\orders", "'..' then a literal '\\' (read as '/' by some servers)"),
    PathRow("semicolon_dot_dot", "/api/open/..;/orders", "'..;' segment (Tomcat reads it as '..')"),
    PathRow("empty_segment_dot_dot", "/api/open//../orders", "'//' then '..' (merge_slashes first, then dots)"),
    PathRow("upper_case_prefix", "/API/orders", "case variant of the protected prefix"),
    PathRow("double_slash", "/api//orders", "'//' inside the protected prefix"),
]


@pytest.mark.parametrize("presented", ["bound_token_no_cert", "no_token"])
@pytest.mark.parametrize("row", RESOURCE_PATHS, ids=[r.id for r in RESOURCE_PATHS])
def test_resource_path_variant_gets_the_strict_policy(client, stack, proto, token, row, presented):
    """Path confusion across route policies: /api/open/'s permissive policy must not apply to a path the API reads as /api/orders.

    `bound_token_no_cert` is the brief's row (refused under either policy, since
    the token is bound); `no_token` is the one that tells the policies apart
    (/api/open/ passes a request without a token, /api/ rejects it)."""
    headers = [("authorization", f"Bearer {token}")] if presented == "bound_token_no_cert" else []
    r = send(stack, proto, "GET", row.path, headers)
    seen = client.api_saw(r)
    if not seen:
        assert r.status != 200, r
    # Delivered only if what the API got is under /api/open/ however a server reads it
    # (e.g. Envoy resolves /api/open//../orders to /api/open/orders, RFC 3986 §5.2.4).
    for s in seen:
        assert strictest_reading(s["path"]).startswith("/api/open/"), f"the API got {s['path']!r} under /api/open/'s policy"


def test_forged_thumbprint_header_on_permissive_route(client, stack, proto):
    """Header forgery: a client-sent x-certbound-x5t on /api/open/ (no thumbprint_header there) must not reach the API."""
    r = send(stack, proto, "GET", "/api/open/x", [(THUMBPRINT_HEADER, "forged")])
    seen = client.api_saw(r)
    assert seen or r.status >= 400, r
    for s in seen:
        assert THUMBPRINT_HEADER not in {k.lower() for k in s["headers"]}, s


def test_forged_thumbprint_header_to_the_as(client, stack, proto):
    """Header forgery: a client-sent x-certbound-x5t on a path that goes to the AS must not reach it."""
    r = send(stack, proto, "GET", "/", [(THUMBPRINT_HEADER, "forged")])
    seen = [x for x in stack.auth_server.requests() if x["test_id"] == r.test_id]
    assert seen or r.status >= 400, r
    for s in seen:
        assert THUMBPRINT_HEADER not in s["headers"], s


def test_forged_thumbprint_header_replaced_on_bound_request(client, stack, proto, token):
    """Header forgery: on /api/ with the right certificate, the API sees certbound's thumbprint, never the forged one."""
    r = send(stack, proto, "GET", "/api/orders", [("authorization", f"Bearer {token}"), (THUMBPRINT_HEADER, "forged")],
             cert=stack.clients["good"])
    assert r.status == 200, r
    [seen] = client.api_saw(r)
    assert seen["headers"].get(THUMBPRINT_HEADER) == x5t_of(stack.clients["good"]), seen


# ================================================================ E. access_token outside the Authorization header
# On /api/open/ (no Authorization, no certificate), a token in the query or body
# that a backend would decode to access_token: the binding check never sees it.


QUERY_VARIANTS = [
    ("encoded_underscore_lower", "access%5ftoken={T}"),
    ("encoded_first_letter", "%61ccess_token={T}"),
    ("semicolon_separator", "x=1;access_token={T}"),
    ("dot_for_underscore", "access.token={T}"),  # PHP turns '.' in names into '_'
    ("mixed_case_name", "Access_Token={T}"),
    ("array_name", "access_token[]={T}"),
]


@pytest.mark.parametrize("query", [q for _, q in QUERY_VARIANTS], ids=[i for i, _ in QUERY_VARIANTS])
def test_token_in_query_variant(client, stack, proto, token, query):
    """Token smuggling in the URI: a query parameter a backend reads as access_token (RFC 6750 §2.3)."""
    r = send(stack, proto, "GET", "/api/open/x?" + query.format(T=token))
    assert_refused(r, 400, "invalid_request")
    assert_api_never_saw(client, r)


FORM_VARIANTS = [
    ("encoded_underscore_lower", "access%5ftoken={T}"),
    ("semicolon_separator", "a=1;access_token={T}"),
    ("bad_percent_escape", "%zz"),
    ("not_utf8", "%ff"),
]


@pytest.mark.parametrize("form", [f for _, f in FORM_VARIANTS], ids=[i for i, _ in FORM_VARIANTS])
def test_token_in_form_body_variant(client, stack, proto, token, form):
    """Token smuggling in a form body (RFC 6750 §2.2): encodings certbound's scan must not read differently from the API."""
    r = send(stack, proto, "POST", "/api/open/x", [("content-type", FORM)], form.format(T=token))
    assert_refused(r, 400, "invalid_request")
    assert_api_never_saw(client, r)


def test_token_in_multipart_body(client, stack, proto, token):
    """Token smuggling in a multipart/form-data part named access_token."""
    body = (f'--XyZ\r\nContent-Disposition: form-data; name="access_token"\r\n\r\n{token}\r\n'
            '--XyZ\r\nContent-Disposition: form-data; name="item"\r\n\r\n1\r\n--XyZ--\r\n')
    r = send(stack, proto, "POST", "/api/open/x", [("content-type", "multipart/form-data; boundary=XyZ")], body)
    assert_refused(r, 400)
    assert_api_never_saw(client, r)


# ================================================================ F. Authorization header parsing
# On /api/open/ (no certificate): a header certbound does not read as a Bearer
# token is passed on as "no token", while the API may well read it as one.


@dataclass
class AuthRow:
    id: str
    value: str  # {T} is good's bound token
    status: int
    error: str | None
    attack: str


AUTH_ROWS = [
    AuthRow("tab_separator", "Bearer\t{T}", 401, "invalid_token", "a tab between scheme and token"),
    AuthRow("lower_case_scheme", "bearer {T}", 401, None, "the scheme in lower case"),
    AuthRow("upper_case_scheme_two_spaces", "BEARER  {T}", 401, None, "upper-case scheme, two spaces"),
    AuthRow("padding_appended", "Bearer {T}=", 401, "invalid_token", "'=' padding the API may strip"),
    AuthRow("dpop_scheme", "DPoP {T}", 400, "invalid_request", "another token scheme (RFC 9449)"),
    AuthRow("trailing_extra_word", "Bearer {T} extra", 400, "invalid_request", "a second word after the token"),
]


@pytest.mark.parametrize("row", AUTH_ROWS, ids=[r.id for r in AUTH_ROWS])
def test_authorization_parsing(client, stack, proto, token, row):
    """Authorization parsing: a bound token in a header shape certbound and the API could read differently."""
    r = send(stack, proto, "GET", "/api/open/x", [("authorization", row.value.format(T=token))])
    assert_refused(r, row.status, row.error)
    assert_api_never_saw(client, r)


# ================================================================ G. binding lifetime


@pytest.fixture(scope="module")
def short_binding_envoy(stack, tmp_path_factory):
    """A second Envoy whose bindings may live 300 s, in front of the same AS (which issues 600 s tokens)."""
    workdir = tmp_path_factory.mktemp("short-binding")
    envoy = harness.Envoy(
        workdir,
        {
            "clients": [harness.certbound_client("good-client", certificates=[stack.clients["good"].pem],
                                                 upstream_secret=UPSTREAM_SECRETS["good-client"])],
            # The other lifetimes may not exceed max_ttl_seconds (configuration check).
            "binding": {"max_ttl_seconds": 300, "default_ttl_seconds": 300, "refresh_token_ttl_seconds": 300},
        },
        cert_dir=stack.pki.dir, as_port=stack.auth_server.port, api_port=stack.api.port, name="short-binding-envoy",
    )
    yield envoy
    envoy.stop()


def test_token_outliving_its_binding_is_not_released(client, stack, proto, short_binding_envoy):
    """Binding lifetime: a 600 s token whose binding could only be kept 300 s would be usable unbound for 300 s."""
    r = send(stack, proto, "POST", "/oauth2/token", [("content-type", FORM)],
             b"grant_type=client_credentials&client_id=good-client", cert=stack.clients["good"], envoy=short_binding_envoy)
    assert_refused(r, 502, "server_error")
    assert_no_token_in_body(r)


# ================================================================ H. repeated headers


def test_two_authorization_headers_on_permissive_route(client, stack, proto, token):
    """Repeated headers: two Authorization headers; certbound and the API could each pick a different one."""
    r = send(stack, proto, "GET", "/api/open/x", [("authorization", f"Bearer {token}"), ("authorization", "Bearer other")])
    assert_refused(r, 400)
    assert_api_never_saw(client, r)


def test_two_content_types_hide_a_form_token(client, stack, proto, token):
    """Repeated headers: two Content-Types, so the form body with access_token may be read as a form by the API only."""
    r = send(stack, proto, "POST", "/api/open/x", [("content-type", "text/plain"), ("content-type", FORM)],
             f"item=1&access_token={token}")
    assert_refused(r, 400)
    assert_api_never_saw(client, r)


# ================================================================ I. where the AS reads what certbound does not
# Servers that merge the query into form parameters (Java servlets), parse a body
# certbound cannot, or inflate a gzip body would judge a request certbound never saw.


def gzip(data: bytes) -> bytes:
    import gzip as gz

    return gz.compress(data)


def test_refresh_token_in_the_query_of_the_token_endpoint(client, stack, proto):
    """Parameter placement: a bound refresh token in the token endpoint's query, where certbound does not look."""
    rt = spa_refresh_token(client, stack)
    r = send(stack, proto, "POST", f"/oauth2/token?refresh_token={rt}", [("content-type", FORM)],
             b"grant_type=refresh_token&client_id=spa", cert=stack.clients["stranger"])
    assert_refused(r, 400, "invalid_request")
    assert_as_never_saw(client, r)


def test_token_in_the_query_of_the_introspection_endpoint(client, stack, proto, token):
    """Parameter placement: the introspected token in the query, so the AS could answer without certbound's cnf."""
    r = send(stack, proto, "POST", f"/oauth2/introspect?%74oken={token}",
             [("content-type", FORM), ("authorization", basic("demo-rs", "demo-rs-secret"))], b"token_type_hint=access_token")
    assert_refused(r, 400, "invalid_request")
    assert_as_never_saw(client, r)


@pytest.mark.parametrize("body", ["token={T}&x=%ff", "token={T}&x=%z", "token={T}&token={T}"],
                         ids=["not_utf8", "bad_escape", "token_twice"])
def test_introspection_body_certbound_cannot_read(client, stack, proto, token, body):
    """Body parsing: an introspection body certbound cannot read must not reach an AS that reads it more leniently."""
    r = send(stack, proto, "POST", "/oauth2/introspect",
             [("content-type", FORM), ("authorization", basic("demo-rs", "demo-rs-secret"))], body.format(T=token))
    assert_refused(r, 400, "invalid_request")
    assert_as_never_saw(client, r)


@pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/token"])
def test_gzip_request_body_at_a_body_endpoint(client, stack, proto, token, path):
    """Content-Encoding: a gzip body the AS may inflate and certbound cannot read."""
    body = f"token={token}" if path.endswith("introspect") else "grant_type=client_credentials&client_id=good-client"
    r = send(stack, proto, "POST", path, [("content-type", FORM), ("content-encoding", "gzip"),
                                          ("authorization", basic("demo-rs", "demo-rs-secret"))],
             gzip(body.encode()), cert=stack.clients["good"])
    assert_refused(r, 400, "invalid_request")
    assert_as_never_saw(client, r)


def test_gzip_form_body_on_a_protected_route(client, stack, proto, token):
    """Content-Encoding: a gzip form body on a protected route could hide access_token from certbound."""
    r = send(stack, proto, "POST", "/api/open/x", [("content-type", FORM), ("content-encoding", "gzip")],
             gzip(f"access_token={token}".encode()))
    assert_refused(r, 400, "invalid_request")
    assert_api_never_saw(client, r)


def test_introspection_by_get_with_the_token_in_the_query(client, stack, proto, token):
    """Method: an AS that also answers GET introspection would read the query certbound does not judge."""
    r = send(stack, proto, "GET", f"/oauth2/introspect?token={token}", [("authorization", basic("demo-rs", "demo-rs-secret"))])
    assert_refused(r, 405, "invalid_request")
    assert_as_never_saw(client, r)


@pytest.mark.parametrize("grant", ["Refresh_Token", "REFRESH_TOKEN", None], ids=["mixed_case", "upper_case", "absent"])
def test_refresh_token_checked_whatever_the_grant_type_says(client, stack, proto, grant):
    """Grant type spelling: an AS that read grant_type leniently would refresh a token certbound did not check."""
    rt = spa_refresh_token(client, stack)
    body = f"client_id=spa&refresh_token={rt}" + (f"&grant_type={grant}" if grant else "")
    r = send(stack, proto, "POST", "/oauth2/token", [("content-type", FORM)], body, cert=stack.clients["stranger"])
    assert_refused(r, 400, "invalid_grant")
    assert_as_never_saw(client, r)


def test_unbound_refresh_token_of_a_client_whose_tokens_are_all_bound(client, stack, proto):
    """Binding lapse: spa-bound's tokens are always bound, so a refresh token certbound has no binding for
    (expired early, or issued around it) is refused rather than refreshed unchecked."""
    import requests

    code, verifier = harness.authorization_code(stack.auth_server.url, "spa-bound")
    direct = requests.post(stack.auth_server.url + "/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": harness.REDIRECT_URI,
        "code_verifier": verifier, "client_id": "spa-bound"}, timeout=10)
    assert direct.status_code == 200, direct.text
    body = f"grant_type=refresh_token&client_id=spa-bound&refresh_token={direct.json()['refresh_token']}"
    r = send(stack, proto, "POST", "/oauth2/token", [("content-type", FORM)], body, cert=stack.clients["stranger"])
    assert_refused(r, 400, "invalid_grant")
    assert_as_never_saw(client, r)
