"""Operations: discovery metadata, counters, the certbound command, and every
deployment file checked by the real Envoy."""

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import base64
import pytest
import requests
import yaml

import harness
from conftest import another_envoy, x5t_by_openssl

CLI = harness.ROOT / "target/release/certbound"
ENVOY_DIR = harness.ROOT / "envoy"
STATIC_CONFIGS = sorted(p for p in ENVOY_DIR.glob("*.yaml") if p.name != "docker-compose.yaml")


def cli(*args, stdin: bytes | None = None):
    return subprocess.run([str(CLI), *args], input=stdin, capture_output=True, timeout=30)


def get(envoy, path, stack):
    return requests.get(envoy.url + path, verify=str(stack.pki.ca_path), timeout=10)


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"])
def test_discovery_documents_advertise_rfc8705(stack, path):
    before = stack.envoy.counter("certbound.metadata_patched")
    r = get(stack.envoy, path, stack)
    assert r.status_code == 200
    m = r.json()
    assert m["tls_client_certificate_bound_access_tokens"] is True
    assert {"tls_client_auth", "self_signed_tls_client_auth"} <= set(m["token_endpoint_auth_methods_supported"])
    assert "client_secret_basic" in m["token_endpoint_auth_methods_supported"]
    assert "mtls_endpoint_aliases" not in m
    assert int(r.headers["content-length"]) == len(r.content)
    assert stack.envoy.counter("certbound.metadata_patched") == before + 1


# A metadata path certbound is configured to patch, where the AS has no document (it answers 404).
MISSING_METADATA = "/.well-known/missing-metadata"


@pytest.fixture(scope="module")
def aliased(stack, tmp_path_factory):
    discovery = {"mtls_host": "mtls.certbound.test:9443",
                 "paths": ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", MISSING_METADATA]}
    envoy = another_envoy(stack, tmp_path_factory.mktemp("aliased"), {"discovery": discovery},
                          name="aliased")
    yield envoy
    envoy.stop()


def test_mtls_endpoint_aliases_appear_when_configured(stack, aliased):
    m = get(aliased, "/.well-known/openid-configuration", stack).json()
    aliases = m["mtls_endpoint_aliases"]
    assert aliases["token_endpoint"] == "https://mtls.certbound.test:9443/oauth2/token"
    assert aliases["introspection_endpoint"] == "https://mtls.certbound.test:9443/oauth2/introspect"


def test_error_metadata_responses_pass_unchanged(stack, aliased):
    # The AS's own answer on that path, asked directly, is the oracle.
    direct = requests.get(stack.auth_server.url + MISSING_METADATA, timeout=10)
    assert direct.status_code == 404, direct.text
    before = {n: aliased.counter(f"certbound.{n}") for n in ("metadata_patched", "metadata_unpatched")}
    r = get(aliased, MISSING_METADATA, stack)
    assert r.status_code == 404
    assert r.content == direct.content
    assert "tls_client_certificate_bound_access_tokens" not in r.text
    after = {n: aliased.counter(f"certbound.{n}") for n in before}
    assert {n: after[n] - before[n] for n in before} == {"metadata_patched": 0, "metadata_unpatched": 1}


def test_counters_move_with_each_decision(client, stack):
    e = stack.envoy
    names = ["client_authenticated", "tokens_bound", "introspection_patched", "resource_allowed",
             "refused.unknown_client", "refused.token_certificate_mismatch", "untrusted_header_removed"]
    before = {n: e.counter(f"certbound.{n}") for n in names}
    token = client.token(stack.clients["good"], "good-client").json()["access_token"]
    client.introspect(token)
    client.get("/api/x", cert=stack.clients["good"], token=token)
    client.get("/api/x", cert=stack.clients["stranger"], token=token)
    client.token(stack.clients["good"], "nobody")
    client.token(stack.clients["good"], "good-client", headers={"x-wso2-mtls-cert": "forged"})
    after = {n: e.counter(f"certbound.{n}") for n in names}
    assert {n: after[n] - before[n] for n in names} == {
        "client_authenticated": 2, "tokens_bound": 2, "introspection_patched": 1, "resource_allowed": 1,
        "refused.unknown_client": 1, "refused.token_certificate_mismatch": 1, "untrusted_header_removed": 1,
    }
    # Envoy shows them under one prefix.
    with requests.get(f"http://127.0.0.1:{e.admin_port}/stats?filter=certbound", timeout=5) as r:
        assert f"{harness.STATS_PREFIX}.certbound.tokens_bound" in r.text


def plugin_configs(path: Path):
    """The JSON plugin configurations in an Envoy config, or an Istio WasmPlugin's pluginConfig."""
    out = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("@type") == "type.googleapis.com/google.protobuf.StringValue" and "value" in node:
                out.append(node["value"])
            if node.get("kind") == "WasmPlugin":
                out.append(json.dumps(node["spec"]["pluginConfig"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for doc in yaml.safe_load_all(path.read_text()):
        walk(doc)
    return out


@harness.wasm_only("the shipped Envoy configs are checked once, in the .wasm pass, with both artifacts")
@pytest.mark.parametrize("path", STATIC_CONFIGS, ids=lambda p: p.name)
def test_every_envoy_config_validates_with_the_built_artifacts(stack, tmp_path, path):
    """envoy --mode validate loads the .wasm or the dynamic module and runs certbound's own config check."""
    root = tmp_path / "etc-certbound"
    (root / "tls").mkdir(parents=True)
    shutil.copy(harness.WASM, root / "certbound.wasm")
    if "libcertbound_module.so" in path.read_text():
        if not harness.MODULE.exists():
            pytest.skip("the dynamic module is not built (make module)")
        shutil.copy(harness.MODULE, root / "libcertbound_module.so")
    for f in ("server.pem", "server.key", "ca.pem"):
        shutil.copy(stack.pki.dir / f, root / "tls" / f)
    config = tmp_path / path.name
    config.write_text(path.read_text().replace("/etc/certbound/", f"{root}/"))
    r = subprocess.run([str(harness.ENVOY_BIN), "--mode", "validate", "-c", str(config), "--use-dynamic-base-id"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert plugin_configs(path), "no certbound configuration found"
    for c in plugin_configs(path):
        check = cli("check-config", "-", stdin=c.encode())
        assert check.returncode == 0, check.stderr.decode()


def test_istio_wasmplugin_config_passes_check_config():
    configs = plugin_configs(ENVOY_DIR / "istio/wasmplugin.yaml")
    assert len(configs) == 1
    r = cli("check-config", "-", stdin=configs[0].encode())
    assert r.returncode == 0, r.stderr.decode()


def test_docker_compose_file_parses_and_names_existing_files():
    compose = yaml.safe_load((ENVOY_DIR / "docker-compose.yaml").read_text())
    assert set(compose["services"]) == {"envoy", "as", "etcd"}
    # Image names come from variables whose defaults are the official images.
    images = {name: s["image"] for name, s in compose["services"].items()}
    assert images["envoy"].startswith("${ENVOY_IMAGE:-envoyproxy/envoy:v1.40"), images
    assert images["as"].startswith("${AS_IMAGE:-node:20"), images
    assert images["etcd"] == "${ETCD_IMAGE:-quay.io/coreos/etcd:v3.5.1}", images
    for volume in compose["services"]["envoy"]["volumes"]:
        src = volume.split(":")[0]
        if not src.startswith("../target") and "demo/certs" not in src:
            assert (ENVOY_DIR / src).exists(), src
    assert (ENVOY_DIR / "Dockerfile").read_text().count("COPY target/certbound.wasm") == 1


def test_thumbprint_command_agrees_with_openssl_for_every_format(stack, tmp_path):
    cert = stack.clients["rsa"]
    expected = x5t_by_openssl(cert.cert_path)
    der = cert.der()
    b64 = base64.b64encode(der).decode()
    forms = {
        "pem": cert.pem,
        "one_line_pem": cert.pem.replace("\n", ""),
        "url_encoded_pem": quote(cert.pem, safe=""),
        "alb": cert.pem.replace(" ", "%20").replace("\n", "%0A"),
        "base64_der": b64,
        "rfc9440": f":{b64}:",
        "xfcc": f'Hash=00;Cert="{quote(cert.pem, safe="")}"',
        "traefik": quote(b64, safe=""),
    }
    for name, text in forms.items():
        r = cli("thumbprint", "-", stdin=text.encode())
        assert r.returncode == 0, (name, r.stderr)
        assert f"x5t#S256: {expected}" in r.stdout.decode(), name
    (tmp_path / "c.der").write_bytes(der)
    r = cli("thumbprint", str(tmp_path / "c.der"))
    assert f"x5t#S256: {expected}" in r.stdout.decode()
    assert f"sha256:   {__import__('hashlib').sha256(der).hexdigest()}" in r.stdout.decode()


def test_commands_fail_with_one_clear_line_and_have_help(tmp_path):
    r = cli("thumbprint", "-", stdin=b"garbage")
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1
    r = cli("thumbprint", str(tmp_path / "missing.pem"))
    assert r.returncode == 1 and "cannot read" in r.stderr.decode()
    for sub in ("thumbprint", "check-config", "client"):
        h = cli(sub, "--help")
        assert h.returncode == 0 and h.stdout.decode().startswith("usage: certbound " + sub)
    assert cli("--help").returncode == 0
    assert cli("frobnicate").returncode == 2
