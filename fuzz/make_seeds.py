"""Seeds the fuzz corpora (fuzz/corpus/<target>/, git-ignored) with real
inputs: certificates generated here in every header format, the forms,
JSON and configurations the tests and deployment files use, and the paths,
Authorization values, queries and bodies of the unit tests (attacks included)."""

import base64
import json
import sys
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

import harness  # noqa: E402
import yaml  # noqa: E402


def write(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def main():
    pki = harness.Pki(HERE / "corpus" / "_pki")
    ec, rsa = pki.client("seed-ec"), pki.client("seed-rsa", rsa_key=True)
    for c in (ec, rsa):
        b64 = base64.b64encode(c.der()).decode()
        forms = {
            "pem": c.pem, "pem_one_line": c.pem.replace("\n", ""), "pem_spaces": c.pem.replace("\n", " "),
            "nginx": quote(c.pem, safe=""), "alb": c.pem.replace(" ", "%20").replace("\n", "%0A"),
            "haproxy": b64, "rfc9440": f":{b64}:", "traefik": quote(b64, safe="") + "," + quote(b64, safe=""),
            "xfcc": f'By=spiffe://edge;Hash=00ff;Cert="{quote(c.pem, safe="")}";Subject="CN=x,O=y",Hash={"ab" * 32}',
            "chain": c.pem + c.pem,
        }
        for k, v in forms.items():
            write("cert_header", f"{c.name}-{k}", v)
        write("der_walk", c.name, c.der())
        # cert_source: trusted CIDR, source address, peer subject, peer DNS SAN, header value (one a line).
        for i, (cidr, ip, subject, san) in enumerate([
            ("10.0.0.0/8", "10.1.2.3", "", ""), ("10.0.0.0/8", "192.0.2.1", "", ""), ("::ffff:0:0/96", "::ffff:10.0.0.1", "", ""),
            ("2001:db8::/32", "2001:db8::1", "", ""), ("", "", "CN=edge,O=certbound test", ""), ("", "", "", "EDGE.example"),
            ("192.0.2.0/33", "192.0.2.1", "CN=other", "other.example"),
        ]):
            for k in ("pem", "nginx", "rfc9440", "xfcc"):
                write("cert_source", f"{c.name}-{i}-{k}", "\n".join([cidr, ip, subject, san, forms[k]]))
    # form: one selector byte (low bits: the certificate presented; high bit:
    # the first line is the Authorization header), then the request.
    forms = [
        "grant_type=client_credentials&client_id=good-client", "grant_type=refresh_token&refresh_token=r%2Bt&client_id=c",
        "token=abc&token_type_hint=access_token", "client_id=a&client_id=b", "a=%zz&b=+c", "Basic Y2xpZW50Og==",
        "Bearer abc.def-_~+/=", "grant_type=client_credentials&client_id=c",
        "grant_type=client_credentials&client_id=pinned", "grant_type=refresh_token&refresh_token=rt&client_id=pinned",
        "grant_type=client_credentials&client_id=dn-client", "client_id=pinned&client_secret=s",
    ]
    for i, f in enumerate(forms):
        for sel in range(8):
            write("form", f"seed{i}-cert{sel}", bytes([sel]) + f.encode())
    for i, (client, secret, body) in enumerate([
        ("pinned", "", "grant_type=client_credentials"), ("dn-client", "", "grant_type=client_credentials&client_id=dn-client"),
        ("c", "", "grant_type=refresh_token&refresh_token=x"), ("pinned", "secret", "grant_type=client_credentials"),
        ("c", "", "client_id=pinned"),
    ]):
        basic = "Basic " + base64.b64encode(f"{quote(client)}:{secret}".encode()).decode()
        for sel in (0x80, 0x81, 0x83, 0x85):
            write("form", f"basic{i}-cert{sel & 7}", bytes([sel]) + f"{basic}\n{body}".encode())
    write("form", "not-basic", bytes([0x81]) + b"Bearer abc\nclient_id=pinned")
    for i, j in enumerate([
        {"access_token": "at", "token_type": "Bearer", "expires_in": 600, "refresh_token": "rt", "id_token": "a.b.c"},
        {"active": True, "client_id": "c", "exp": 1800000000, "scope": "api"}, {"active": False},
        {"active": True, "cnf": {"jkt": "x"}}, {"issuer": "https://as", "token_endpoint": "https://as/oauth2/token",
                                              "token_endpoint_auth_methods_supported": ["client_secret_basic"]},
    ]):
        write("json_patch", f"seed{i}", json.dumps(j))
    write("json_patch", "dup", '{"active":false,"active":true}')
    configs = []
    for path in sorted((HERE.parent / "envoy").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            text = json.dumps(doc)
            if "StringValue" in text:
                stack = [doc]
                while stack:
                    n = stack.pop()
                    if isinstance(n, dict):
                        if n.get("@type", "").endswith("StringValue"):
                            configs.append(n["value"])
                        stack.extend(n.values())
                    elif isinstance(n, list):
                        stack.extend(n)
    configs.append(json.dumps({"clients": [{"client_id": "c", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                                            "certificates": [ec.pem]}]}))
    for i, c in enumerate(configs):
        write("config", f"seed{i}", c)
    for i, d in enumerate(["CN=client,O=Example Org,C=US", r"CN=Doe\, John+UID=jd,OU=\#1,DC=example,DC=com",
                           "2.5.4.3=x,OID.2.5.4.10=y"]):
        write("dn", f"seed{i}", d)
    for i, p in enumerate([
        # Normal paths: each endpoint, in another case, with a trailing slash or a query.
        "/oauth2/token", "/OAuth2/Token/", "/oauth2/token?client_id=c", "/oauth2/introspect", "/oauth2/Introspect/",
        "/.well-known/openid-configuration", "/api/orders", "/API/Open/x", "/api/open/", "/api/orders/john%20doe",
        "/api/open/a/../b", "/oauth2/tokens", "/oauth2/token/x", "/apix", "/", "", "*", "/static/app.js?v=1#top",
        # Attacks from src/path.rs: readings that cross endpoints or route policies.
        "/oauth2/%74oken", "/api/open/../orders", "/api/open/%2e%2e/orders", "/api/open/%2E%2E/orders",
        "/api/open/..%2Forders", "/api/open/..%5Corders", "/api/open/..\\orders", "/api/open/..;/orders",
        "/api/open/%252e%252e/orders", "/static/..;/api/orders", "/oauth2/./token", "/oauth2/x/../token",
        "/oauth2/token//", "/oauth2/token;x=1", "/a/%2525252e", "//oauth2/token", "/oauth2/token%2f", "/oauth2/token/.",
        "/api/open/x;/../orders", "/api/%2e/open/x", "/api/open/%c0%ae%c0%ae/orders",
    ]):
        write("path", f"seed{i}", p)
    for i, a in enumerate([
        # Authorization header values from src/resource.rs.
        "Bearer abc", "bearer abc", "BEARER  abc", "Bearer\tabc", " Bearer abc\t", "Bearer abc.def-_~+/==", "Bearer",
        "Bearer ", "", "  ", "Bearer a b", 'Bearer a"b', "Bearer ==", "Be@rer abc", "DPoP abc", "Basic YTpi", "Negotiate",
        "Bearer a,Bearer b", "Bearer eyJhbGciOiJub25lIn0.eyJleHAiOjE5MDAwMDAwMDB9.",
        # Queries from src/resource.rs.
        "/api/x?access_token=abc", "/api/x?a=1&access_token=abc", "/api/x?access%5ftoken=abc", "/api/x?%61ccess_token=abc",
        "/api/x?x=1;access_token=abc", "/api/x?access.token=abc", "/api/x?access+token=abc", "/api/x?Access_Token=abc",
        "/api/x?access_token[]=abc", "/api/x?access_token", "/api/x?%zz=1", "/api/x?my_access_token=abc&q=100%", "/api/x",
        # Form bodies and content types from src/resource.rs.
        "a=1&b=two+words%21", "access%5ftoken=x", "a=1;access_token=x", "ACCESS_TOKEN=x", "a=%zz", "a=%ff", "a=%",
        "application/x-www-form-urlencoded", "Application/X-WWW-Form-Urlencoded; charset=utf-8",
        "application/json,application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json",
    ]):
        write("authorization", f"seed{i}", a)

    k, v = base64.b64encode(b"certbound/b/k").decode(), base64.b64encode(b"1 " + b"A" * 43 + b" a 1800000000").decode()
    for i, a in enumerate([
        {"header": {}, "kvs": [{"key": k, "value": v, "lease": "7"}], "count": "1"}, {"header": {}, "succeeded": True},
        {"header": {}, "responses": [{"response_range": {"kvs": [{"key": k, "value": v}]}}]}, {"ID": "7587", "TTL": "90"},
        {"error": "etcdserver: no leader", "code": 14},
    ]):
        write("etcd_answer", f"seed{i}", json.dumps(a))

    # token_key: JWS and JWE compact tokens (as issued, and respelled), opaque tokens.
    b64u = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")
    jws_head, jws_claims = b64u(b'{"alg":"RS256","typ":"at+jwt"}'), b64u(b'{"client_id":"c1","exp":1800000000}')
    jws = ".".join([jws_head, jws_claims, b64u(bytes(range(64)))])
    jwe_head = b64u(b'{"alg":"dir","enc":"A256GCM"}')
    jwe = ".".join([jwe_head, "", b64u(b"iv-12-bytes!"), b64u(b"ciphertext"), b64u(b"tag-16-bytes-ok!")])
    for i, t in enumerate([jws, jws + "==", jws.replace("-", "+").replace("_", "/"), jws[:-1] + "B", jwe, jwe + "=",
                           "opaque-token", "abc.def.ghi", jws[:30] + "=" + jws[30:]]):
        write("token_key", f"seed{i}", t)
    # params: query strings and form bodies with names servers read their own ways.
    for i, p in enumerate([
        "grant_type=refresh_token&refresh_token=rt&client_id=c", "refresh_token[]=rt", "+refresh_token=rt",
        "refresh.token=rt", "refresh[token=rt", "client_id=a&client_id=b", "a=1;refresh_token=rt", "refresh_token%00x=rt",
        "refresh_%1B%28Btoken=rt", "Refresh_Token=rt", "refresh_token=rt;x", "client%255Fid=c", "cl%C4%B1ent_id=c",
        "token=abc&token_type_hint=access_token", "[client_id]=c", "client_id.x=c", "a=%zz&b=%ff",
    ]):
        write("params", f"seed{i}", p)


if __name__ == "__main__":
    main()
