"""Seeds the fuzz corpora (fuzz/corpus/<target>/, git-ignored) with real
inputs: certificates generated here in every header format, the forms,
JSON and configurations the tests and deployment files use."""

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
    for i, f in enumerate([
        "grant_type=client_credentials&client_id=good-client", "grant_type=refresh_token&refresh_token=r%2Bt&client_id=c",
        "token=abc&token_type_hint=access_token", "client_id=a&client_id=b", "a=%zz&b=+c", "Basic Y2xpZW50Og==",
        "Bearer abc.def-_~+/=",
    ]):
        write("form", f"seed{i}", f)
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
    k, v = base64.b64encode(b"certbound/b/k").decode(), base64.b64encode(b"1 " + b"A" * 43 + b" a 1800000000").decode()
    for i, a in enumerate([
        {"header": {}, "kvs": [{"key": k, "value": v, "lease": "7"}], "count": "1"}, {"header": {}, "succeeded": True},
        {"header": {}, "responses": [{"response_range": {"kvs": [{"key": k, "value": v}]}}]}, {"ID": "7587", "TTL": "90"},
        {"error": "etcdserver: no leader", "code": 14},
    ]):
        write("etcd_answer", f"seed{i}", json.dumps(a))


if __name__ == "__main__":
    main()
