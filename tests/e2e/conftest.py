"""The stack every end-to-end test runs against: real Envoy with the built
certbound.wasm, real oidc-provider, an echo API, certificates made here."""

import base64
import hashlib
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import NameOID

import harness

UPSTREAM_SECRETS = {
    "good-client": "good-upstream-secret",
    "rsa-client": "rsa-upstream-secret",
    "pinned-client": "pinned-upstream-secret",
    "rotating-client": "rotating-upstream-secret",
    "expired-client": "expired-upstream-secret",
    "web-app": "web-app-upstream-secret",
}
JWT_CLIENT_SECRET = "jwt-client-secret"
AS_ONLY_SECRET = "as-only-client-secret"
THUMBPRINT_HEADER = "x-certbound-x5t"
CODE_GRANTS = ["authorization_code", "refresh_token"]


def x5t_by_openssl(cert_path: Path) -> str:
    """x5t#S256 the way the issue and RFC 8705 §3.1 define it, computed by openssl."""
    der = subprocess.run(["openssl", "x509", "-in", str(cert_path), "-outform", "der"], capture_output=True, check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der, capture_output=True, check=True).stdout
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def good_client(stack: harness.Stack) -> dict:
    """The stack's certificate-authenticated client, as another Envoy's configuration registers it."""
    return harness.certbound_client("good-client", certificates=[stack.clients["good"].pem],
                                    upstream_secret=UPSTREAM_SECRETS["good-client"])


def another_envoy(stack: harness.Stack, workdir: Path, config: dict, **kw) -> harness.Envoy:
    """Another Envoy with certbound (this plugin configuration), in front of the stack's AS and API,
    serving the stack's certificates."""
    return harness.Envoy(workdir, config, cert_dir=stack.pki.dir, as_port=stack.auth_server.port,
                         api_port=stack.api.port, **kw)


def x5t_of(cert: harness.Cert) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(cert.der()).digest()).decode().rstrip("=")


class Client:
    """A test's view of the running stack."""

    def __init__(self, stack: harness.Stack):
        self.stack = stack
        self.ca = str(stack.pki.ca_path)

    def post(self, path: str, *, cert: harness.Cert | None = None, data=None, headers=None, auth=None):
        test_id = uuid.uuid4().hex
        h = {"x-test-id": test_id, **(headers or {})}
        r = requests.post(
            self.stack.envoy.url + path,
            data=data,
            headers=h,
            auth=auth,
            cert=cert.pair if cert else None,
            verify=self.ca,
            timeout=15,
        )
        r.test_id = test_id
        return r

    def get(self, path: str, *, cert: harness.Cert | None = None, token: str | None = None, headers=None):
        test_id = uuid.uuid4().hex
        h = {"x-test-id": test_id, **(headers or {})}
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        r = requests.get(self.stack.envoy.url + path, headers=h, cert=cert.pair if cert else None, verify=self.ca, timeout=15)
        r.test_id = test_id
        return r

    def api_saw(self, response) -> list[dict]:
        return [x for x in self.stack.api.received if x["headers"].get("x-test-id") == response.test_id]

    def token(self, cert: harness.Cert | None, client_id: str | None, **kw):
        data = {"grant_type": "client_credentials"}
        if client_id is not None:
            data["client_id"] = client_id
        data.update(kw.pop("extra", {}))
        return self.post("/oauth2/token", cert=cert, data=data, **kw)

    def introspect(self, token: str, **extra):
        return self.post("/oauth2/introspect", data={"token": token, **extra}, auth=("demo-rs", "demo-rs-secret"))

    def as_saw(self, response) -> bool:
        return self.stack.auth_server.saw(response.test_id)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("stack")
    pki = harness.Pki(workdir / "certs")
    certs = {
        "good": pki.client("good"),
        "rsa": pki.client("rsa", rsa_key=True),
        "pinned": pki.client("pinned"),
        "rotation-old": pki.client("rotation-old"),
        "rotation-new": pki.client("rotation-new"),
        "expired": pki.client("expired", valid_days=(-30, -1)),
        "stranger": pki.client("stranger"),
        "web": pki.client("web"),
        "spa": pki.client("spa"),
        "jwt": pki.client("jwt"),
    }
    as_clients = [
        harness.as_client(cid, secret, CODE_GRANTS if cid == "web-app" else ["client_credentials"])
        for cid, secret in UPSTREAM_SECRETS.items()
    ]
    as_clients += [
        harness.as_client("demo-rs", "demo-rs-secret", []),
        # Registered at the AS only, not in certbound: its tokens may be unbound.
        harness.as_client("as-only-client", AS_ONLY_SECRET, ["client_credentials"]),
        harness.as_client("spa", None, CODE_GRANTS),
        harness.as_client("spa-bound", None, CODE_GRANTS),
        # Bound natively by the AS's own RFC 8705 feature (JWT with cnf), not through certbound.
        {**harness.as_client("jwt-client", JWT_CLIENT_SECRET, ["client_credentials"]),
         "tls_client_certificate_bound_access_tokens": True},
    ]
    auth_server = harness.AuthorizationServer(workdir, as_clients, native_mtls=True)
    api = harness.EchoApi()
    plugin_config = {
        "token_path": "/oauth2/token",
        "introspection_path": "/oauth2/introspect",
        "clients": [
            harness.certbound_client("good-client", certificates=[certs["good"].pem], upstream_secret=UPSTREAM_SECRETS["good-client"]),
            harness.certbound_client("rsa-client", certificates=[certs["rsa"].pem], upstream_secret=UPSTREAM_SECRETS["rsa-client"]),
            harness.certbound_client("pinned-client", thumbprints=[x5t_of(certs["pinned"])], upstream_secret=UPSTREAM_SECRETS["pinned-client"]),
            harness.certbound_client(
                "rotating-client",
                certificates=[certs["rotation-old"].pem, certs["rotation-new"].pem],
                upstream_secret=UPSTREAM_SECRETS["rotating-client"],
            ),
            harness.certbound_client("expired-client", certificates=[certs["expired"].pem], upstream_secret=UPSTREAM_SECRETS["expired-client"]),
            harness.certbound_client("web-app", certificates=[certs["web"].pem], upstream_secret=UPSTREAM_SECRETS["web-app"]),
            harness.certbound_public_client("spa"),
            harness.certbound_public_client("spa-bound", require_certificate=True),
        ],
        "protected_routes": [
            {"path_prefix": "/api/", "unbound_tokens": "require_binding", "missing_token": "reject",
             "thumbprint_header": THUMBPRINT_HEADER},
            {"path_prefix": "/api/open/", "unbound_tokens": "allow", "missing_token": "pass"},
        ],
        # The dynamic module refuses jwt_claims at load (README: "Which artifact").
        **({"jwt_claims": {}} if harness.ARTIFACT == "wasm" else {}),
        "route_metadata": True,
        # Clients reach this Envoy directly: a certificate header is never trusted here.
        "certificate_sources": {
            "headers": [{"name": "x-wso2-mtls-cert", "trust": {"source_cidrs": ["10.0.0.0/8"]}}],
        },
    }
    envoy = harness.Envoy(workdir, plugin_config, cert_dir=pki.dir, as_port=auth_server.port, api_port=api.port)
    s = harness.Stack(workdir, pki, auth_server, api, envoy, certs)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def client(stack):
    return Client(stack)


OUTER_SUBJECT = "CN=outer-proxy,O=certbound test"
TLS_CLIENT_DN = "CN=tls-client,OU=payments,O=certbound test"


def name(cn, ou=None):
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certbound test")]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@pytest.fixture(scope="session")
def hop(stack, tmp_path_factory):
    """Inner Envoy (certbound) trusting headers from the outer proxy, and from 'a terminator' for the LB headers."""
    pki = stack.pki
    certs = {
        "outer-proxy": pki.ca_signed("outer-proxy", name("outer-proxy")),
        "tls-client": pki.ca_signed("tls-client", name("tls-client", "payments"), [x509.DNSName("tls-client.example")]),
        "tls-other": pki.ca_signed("tls-other", name("tls-other", "payments"), [x509.DNSName("other.example")]),
        "not-yet": pki.client("not-yet-valid", valid_days=(30, 60)),
    }
    peer = {"peer_subjects": [OUTER_SUBJECT]}
    workdir = tmp_path_factory.mktemp("hop")
    inner = harness.Envoy(
        workdir,
        {
            "clients": [
                # good-client also pins a CA-issued certificate, to reach this verifying listener directly.
                harness.certbound_client("good-client", certificates=[stack.clients["good"].pem, certs["tls-other"].pem],
                                         upstream_secret=UPSTREAM_SECRETS["good-client"]),
                {"client_id": "rsa-client", "token_endpoint_auth_method": "tls_client_auth",
                 "tls_client_auth_subject_dn": "cn = tls-client, ou=payments,  o=certbound test",
                 "upstream": {"client_secret": UPSTREAM_SECRETS["rsa-client"]}},
                {"client_id": "pinned-client", "token_endpoint_auth_method": "tls_client_auth",
                 "tls_client_auth_san_dns": "TLS-CLIENT.example",
                 "upstream": {"client_secret": UPSTREAM_SECRETS["pinned-client"]}},
                {"client_id": "rotating-client", "token_endpoint_auth_method": "tls_client_auth",
                 "tls_client_auth_subject_dn": "O=certbound test,OU=payments,CN=tls-client",
                 "upstream": {"client_secret": UPSTREAM_SECRETS["rotating-client"]}},
                harness.certbound_client("expired-client", certificates=[certs["not-yet"].pem],
                                         upstream_secret=UPSTREAM_SECRETS["expired-client"]),
            ],
            "certificate_sources": {
                "headers": [
                    {"name": "x-forwarded-client-cert", "format": "xfcc", "trust": peer},
                    {"name": "x-client-cert-outer", "format": "url_encoded_pem", "trust": peer},
                    {"name": "x-verified-client-cert", "format": "url_encoded_pem", "trust": peer, "chain_verified": True},
                    # "Every request comes through a terminator that overwrites this header" (the LB case).
                    {"name": "x-wso2-mtls-cert", "format": "auto", "trust": {"always": True}},
                ],
                # The connection here is the outer proxy's; the client's certificate is in the header.
                "prefer": "header",
                # This listener verifies client chains, so the outer proxy's certificate can be trusted by subject.
                "connection_chain_verified": True,
                "forward": {"name": "x-as-cert", "format": "pem"},
            },
        },
        cert_dir=pki.dir, as_port=stack.auth_server.port, api_port=stack.api.port, name="inner-envoy",
        xfcc_mode="ALWAYS_FORWARD_ONLY", trust_chain="VERIFY_TRUST_CHAIN",
    )
    outer = harness.OuterEnvoy(workdir, cert_dir=pki.dir, inner_port=inner.port)
    yield {"inner": inner, "outer": outer, "certs": certs}
    outer.stop()
    inner.stop()


@pytest.fixture(scope="session", autouse=True)
def no_wasm_panics(tmp_path_factory):
    """A panic traps the VM and fails every request on it (the dynamic module catches it and
    fails that request): after the run, no Envoy log may show one, except the logs of the
    Envoys that test_faults.py crashes on purpose (their workdir holds the marker file)."""
    yield
    panics = []
    for log in Path(tmp_path_factory.getbasetemp()).rglob("*.log"):
        if (log.parent / harness.EXPECTED_FAULTS_MARKER).exists():
            continue
        text = log.read_text(errors="replace")
        if "panicked at" in text or "Uncaught RuntimeError" in text:
            line = next(l for l in text.splitlines() if "panicked at" in l or "Uncaught RuntimeError" in l)
            panics.append(f"{log}: {line[:300]}")
    assert not panics, "the filter panicked:\n" + "\n".join(panics)
