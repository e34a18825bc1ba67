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
from conftest import THUMBPRINT_HEADER, another_envoy, good_client, x5t_of

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
    assert_refused(r, 400, "invalid_grant")
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
    # PHP's php_register_variable_ex: leading spaces dropped, an unclosed '[' and ' ' read as '_', NUL ends the name.
    ("php_leading_plus", "+access_token={T}"),
    ("php_unclosed_bracket", "access[token={T}"),
    ("php_nul_ends_the_name", "access_token%00x={T}"),
    ("php_space_for_underscore", "access%20token={T}"),
    # qs / Rack: a leading bracketed name; qs allowDots: a dotted suffix.
    ("rack_leading_brackets", "[access_token]={T}"),
    ("qs_index", "access_token[0]={T}"),
    # A servlet decoding ISO-2022-JP drops the escape sequence; a case-folding framework folds the Kelvin sign.
    ("iso_2022_escape_in_name", "access_%1B%28Btoken={T}"),
    ("kelvin_sign_folds_to_k", "access_to%E2%84%AAen={T}"),
    ("double_encoded_underscore", "access%255Ftoken={T}"),
    ("iis_percent_u", "access%u005Ftoken={T}"),
    ("qs_allow_dots_leading_dot", ".access_token={T}"),
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
    ("php_leading_space", "a=1&%20access_token={T}"),
    ("php_dot_for_underscore", "access.token={T}"),
    ("php_unclosed_bracket", "access[token={T}"),
    ("php_nul_ends_the_name", "access_token%00={T}"),
    ("qs_array", "access_token[]={T}"),
    ("iso_2022_escape_in_name", "access_%1B%28Btoken={T}"),
]


@pytest.mark.parametrize("form", [f for _, f in FORM_VARIANTS], ids=[i for i, _ in FORM_VARIANTS])
def test_token_in_form_body_variant(client, stack, proto, token, form):
    """Token smuggling in a form body (RFC 6750 §2.2): encodings certbound's scan must not read differently from the API."""
    r = send(stack, proto, "POST", "/api/open/x", [("content-type", FORM)], form.format(T=token))
    assert_refused(r, 400, "invalid_request")
    assert_api_never_saw(client, r)


# A servlet container (Tomcat, Jetty) and Django decode the body with its declared charset; a byte reader does not.
CHARSET_BODIES = [
    ("utf16le", "utf-16le", lambda t: f"item=1&access_token={t}".encode("utf-16-le")),
    ("utf16_with_bom", "utf-16", lambda t: f"access_token={t}".encode("utf-16")),
    ("ebcdic_ibm037", "IBM037", lambda t: f"access_token={t}".encode("cp037")),
    ("iso_2022_jp_escape", "ISO-2022-JP", lambda t: f"access_\x1b(Btoken={t}".encode()),
    ("utf8_bom_before_the_first_name", None, lambda t: b"\xef\xbb\xbf" + f"access_token={t}".encode()),
]


@pytest.mark.parametrize("row", CHARSET_BODIES, ids=[r[0] for r in CHARSET_BODIES])
def test_token_in_a_form_body_in_another_charset(client, stack, proto, token, row):
    """Charsets: a form body a servlet container decodes with its declared charset (or a byte-order mark) into access_token."""
    _, charset, body = row
    ct = FORM + (f"; charset={charset}" if charset else "")
    r = send(stack, proto, "POST", "/api/open/x", [("content-type", ct)], body(token))
    assert_refused(r, 400, "invalid_request")
    assert r.json().get("error_description"), r
    assert_api_never_saw(client, r)


@pytest.mark.parametrize("row", [
    ("bad_escape", None, b"item=%zz&q=100%"),
    ("latin1_value", "ISO-8859-1", b"item=caf%E9&note=\xe9t\xe9"),
    ("windows_1252", "windows-1252", b"q=%80"),
    ("utf8", "UTF-8", "q=caf\u00e9".encode()),
], ids=lambda r: r[0])
def test_a_form_body_no_server_reads_as_carrying_a_token_passes(client, stack, proto, row):
    """Not more than needed: bodies no decoder reads as carrying access_token reach the API, in ASCII-transparent charsets."""
    _, charset, body = row
    ct = FORM + (f"; charset={charset}" if charset else "")
    r = send(stack, proto, "POST", "/api/open/x", [("content-type", ct)], body)
    assert r.status == 200, r
    assert client.api_saw(r), "the API did not receive it"


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
    envoy = another_envoy(
        stack,
        workdir,
        {
            "clients": [good_client(stack)],
            # The other lifetimes may not exceed max_ttl_seconds (configuration check).
            "binding": {"max_ttl_seconds": 300, "default_ttl_seconds": 300, "refresh_token_ttl_seconds": 300},
        },
        name="short-binding-envoy",
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


@pytest.mark.parametrize("body", ["token={T}&token={T}", "token[]={T}", "Token={T}", "+token={T}", "x=1;token={T}",
                                  "token%00={T}", "to%1B%28Bken={T}", "token={T};x", ".token={T}"],
                         ids=["token_twice", "qs_array", "case_folded", "php_leading_space", "semicolon_separator",
                              "php_nul", "iso_2022_escape", "semicolon_in_the_value", "qs_allow_dots"])
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


# ================================================================ J. a bound token never turns into a bearer token
# Hidden parameters at the AS's endpoints, charsets, a JWT spelled another way, and
# bindings forgotten by a restart (issue 19).


HIDDEN_REFRESH = [
    ("qs_php_array", "grant_type=refresh_token&client_id=spa&refresh_token[]={RT}"),
    ("case_folded", "grant_type=refresh_token&client_id=spa&Refresh_Token={RT}"),
    ("php_leading_space", "grant_type=refresh_token&client_id=spa&+refresh_token={RT}"),
    ("php_dot", "grant_type=refresh_token&client_id=spa&refresh.token={RT}"),
    ("semicolon_separator", "client_id=spa&grant_type=refresh_token;refresh_token={RT}"),
    ("iso_2022_escape", "grant_type=refresh_token&client_id=spa&refresh_%1B%28Btoken={RT}"),
]


@pytest.mark.parametrize("body", [b for _, b in HIDDEN_REFRESH], ids=[i for i, _ in HIDDEN_REFRESH])
def test_a_refresh_token_hidden_from_certbound_never_reaches_the_as(client, stack, proto, body):
    """Parameter names: a bound refresh token under a name PHP, qs, Rack or a servlet reads as refresh_token,
    presented with another certificate, would be refreshed by such an AS unchecked."""
    rt = spa_refresh_token(client, stack)
    r = send(stack, proto, "POST", "/oauth2/token", [("content-type", FORM)], body.format(RT=rt),
             cert=stack.clients["stranger"])
    assert_refused(r, 400, "invalid_request")
    assert "refresh_token" in r.json()["error_description"], r
    assert rt.encode() not in r.body, "the refresh token is echoed"
    assert_as_never_saw(client, r)


@pytest.mark.parametrize("charset,encode", [("utf-16le", lambda s: s.encode("utf-16-le")),
                                            ("IBM037", lambda s: s.encode("cp037"))], ids=["utf16le", "ebcdic"])
def test_a_refresh_body_in_another_charset_never_reaches_the_as(client, stack, proto, charset, encode):
    """Charsets: a servlet AS (WSO2 IS is one) decodes the body with its declared charset; certbound reads bytes."""
    rt = spa_refresh_token(client, stack)
    r = send(stack, proto, "POST", "/oauth2/token", [("content-type", f"{FORM}; charset={charset}")],
             encode(f"grant_type=refresh_token&client_id=spa&refresh_token={rt}"), cert=stack.clients["stranger"])
    assert_refused(r, 400, "invalid_request")
    assert_as_never_saw(client, r)


def test_an_introspection_body_in_another_charset_never_reaches_the_as(client, stack, proto, token):
    """Charsets: the introspected token hidden in UTF-16, so a servlet AS answers without certbound's cnf."""
    r = send(stack, proto, "POST", "/oauth2/introspect",
             [("content-type", f"{FORM}; charset=utf-16le"), ("authorization", basic("demo-rs", "demo-rs-secret"))],
             f"token={token}".encode("utf-16-le"))
    assert_refused(r, 400, "invalid_request")
    assert_as_never_saw(client, r)


def test_an_introspection_query_in_ebcdic_never_reaches_the_as(client, stack, proto, token):
    """Charsets: Django decodes the query with the request's charset; %a3%96%92%85%95 is "token" in IBM037. An
    introspection POST with no body would otherwise go on unjudged (found by tests/decoders)."""
    r = send(stack, proto, "POST", f"/oauth2/introspect?%a3%96%92%85%95={token}",
             [("content-type", f"{FORM}; charset=IBM037"), ("authorization", basic("demo-rs", "demo-rs-secret")),
              ("content-length", "0")])
    assert_refused(r, 400, "invalid_request")
    assert_as_never_saw(client, r)


# ---------------------------------------------------------------- a JWT spelled another way

JWT_RESOURCE = "https://api.certbound.test"


@pytest.fixture(scope="module")
def bound_jwt(client, stack):
    """good-client's JWT access token (RS256, the AS's JWT format), bound by certbound to `good`."""
    r = client.token(stack.clients["good"], "good-client", extra={"resource": JWT_RESOURCE})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert token.count(".") == 2, token
    return token


def respell(jwt: str) -> str:
    """The same JWT with the signature's unused trailing bits changed: every base64url decoder reads the same bytes."""
    head, sig = jwt.rsplit(".", 1)
    unused = {2: 4, 3: 2}[len(sig) % 4]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    other = alphabet[last ^ ((1 << unused) - 1)]
    assert other != sig[-1]
    return f"{head}.{sig[:-1]}{other}"


def jose_verifies(stack, jwt: str) -> bool:
    """Whether the jose library (oidc-provider's own) verifies `jwt` against the AS's published keys."""
    import subprocess

    script = (
        "import('jose').then(async ({createRemoteJWKSet, jwtVerify}) => {"
        f"  const jwks = createRemoteJWKSet(new URL('{stack.auth_server.url}/oauth2/jwks'));"
        "  try { await jwtVerify(process.argv[1], jwks); console.log('verified'); }"
        "  catch (e) { console.log('refused ' + e.code); } })"
    )
    out = subprocess.run(["node", "-e", script, jwt], cwd=str(harness.ROOT / "as"), capture_output=True, text=True,
                         timeout=30)
    return out.stdout.strip() == "verified"


def test_a_respelled_jwt_is_the_same_token_to_jose(stack, bound_jwt):
    """The premise, shown with a real verifier: the respelled JWT verifies as the issued one."""
    assert jose_verifies(stack, bound_jwt)
    assert respell(bound_jwt) != bound_jwt
    assert jose_verifies(stack, respell(bound_jwt))


@pytest.mark.parametrize("cert", [None, "stranger"], ids=["no_cert", "stranger_cert"])
def test_a_respelled_jwt_keeps_its_binding_where_unbound_tokens_pass(client, stack, proto, bound_jwt, cert):
    """Token identity: a JWT spelled another way (unused bits, padding) finds the same binding, on the allow route too."""
    for spelled in (respell(bound_jwt), bound_jwt + "=="):
        r = send(stack, proto, "GET", "/api/open/x", [("authorization", f"Bearer {spelled}")],
                 cert=stack.clients[cert] if cert else None)
        assert_refused(r, 401, "invalid_token")
        assert_api_never_saw(client, r)
    ok = send(stack, proto, "GET", "/api/open/x", [("authorization", f"Bearer {respell(bound_jwt)}")],
              cert=stack.clients["good"])
    assert ok.status == 200, ok


def test_a_respelled_jwt_is_introspected_with_its_binding(client, stack, proto, bound_jwt):
    """Token identity at introspection: whatever the AS answers about the respelled JWT, never active without cnf
    (oidc-provider does not introspect its JWT access tokens: 400 unsupported_token_type; an AS that does gets cnf)."""
    r = send(stack, proto, "POST", "/oauth2/introspect",
             [("content-type", FORM), ("authorization", basic("demo-rs", "demo-rs-secret"))],
             f"token={respell(bound_jwt)}")
    assert r.status in (200, 400), r
    doc = r.json()
    assert doc.get("active") is not True or doc["cnf"]["x5t#S256"] == x5t_of(stack.clients["good"]), doc
    assert client.as_saw(r), "the AS was asked"


def test_a_jwt_padded_inside_a_segment_is_refused(client, stack, proto, bound_jwt):
    """Token identity: '=' inside a segment is read one way by Node (it stops) and another by Python (it goes on)."""
    head, sig = bound_jwt.rsplit(".", 1)
    padded = f"{head}.{sig[:8]}%3D{sig[8:]}"
    r = send(stack, proto, "POST", "/oauth2/introspect",
             [("content-type", FORM), ("authorization", basic("demo-rs", "demo-rs-secret"))], f"token={padded}")
    assert_refused(r, 400, "invalid_request")
    assert_as_never_saw(client, r)


# ---------------------------------------------------------------- forgetting: a restart empties the embedded store


@pytest.fixture(scope="module")
def restarted(stack, tmp_path_factory):
    """The same certbound configuration in a new Envoy process: the state the main Envoy's bindings are in after a
    restart with the embedded store (shared data for the .wasm, process memory for the module)."""
    workdir = tmp_path_factory.mktemp("restarted")
    envoy = another_envoy(
        stack,
        workdir,
        {
            "clients": [good_client(stack),
                        harness.certbound_public_client("spa")],
            "protected_routes": [{"path_prefix": "/api/", "thumbprint_header": THUMBPRINT_HEADER},
                                 {"path_prefix": "/api/open/", "unbound_tokens": "allow", "missing_token": "pass"}],
        },
        name="restarted-envoy",
    )
    yield envoy
    envoy.stop()


def test_after_a_restart_a_bound_token_is_introspected_inactive_never_active_without_cnf(client, stack, proto, token,
                                                                                         restarted):
    """Forgetting: the binding is gone, the AS still says active; good-client's tokens are all bound, so the answer is
    inactive and no resource server that introspects takes it as a bearer token."""
    assert client.introspect(token).json()["cnf"]["x5t#S256"] == x5t_of(stack.clients["good"])
    before = restarted.counter("introspection_deactivated")
    r = send(stack, proto, "POST", "/oauth2/introspect",
             [("content-type", FORM), ("authorization", basic("demo-rs", "demo-rs-secret"))], f"token={token}",
             envoy=restarted)
    assert r.status == 200, r
    assert r.json() == {"active": False}, r
    assert restarted.counter("introspection_deactivated") == before + 1


def test_after_a_restart_a_bound_jwt_is_refused_where_unbound_tokens_pass(client, stack, proto, bound_jwt, restarted):
    """Forgetting: a JWT names its client; good-client's tokens are all bound, so "no binding" is a refusal."""
    r = send(stack, proto, "GET", "/api/open/x", [("authorization", f"Bearer {bound_jwt}")],
             cert=stack.clients["stranger"], envoy=restarted)
    assert_refused(r, 401, "invalid_token")
    assert "no binding" in (r.header("www-authenticate") or ""), r
    assert_api_never_saw(client, r)
