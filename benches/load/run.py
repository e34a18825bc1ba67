#!/usr/bin/env python3
"""make bench: what certbound costs per request, against Envoy without it, in one run.

Starts Envoy (the pinned wheel, one worker) with one TLS listener per
variant, oidc-provider and a single etcd member on loopback, drives each
scenario with oha (same TLS, connections and duration), alternating the
variant with certbound and the baseline without it, after a warm-up; runs the
native criterion micro-benchmarks; writes target/bench/summary.json and prints
a table. Targets are reported, never asserted.
"""

import base64
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import harness  # noqa: E402

OHA = ROOT / ".tools/cargo/bin/oha"
OUT = ROOT / "target/bench"
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))

TLS = """    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: false
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{ filename: "{certs}/server.pem" }}
              private_key: {{ filename: "{certs}/server.key" }}
            validation_context:
              trusted_ca: {{ filename: "{certs}/ca.pem" }}
              trust_chain_verification: ACCEPT_UNTRUSTED
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/api/" }}
                direct_response: {{ status: 200, body: {{ inline_string: "ok" }} }}
              - match: {{ prefix: "/" }}
                route: {{ cluster: authorization_server }}
{headers_to_add}          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"""

WASM = """          - name: certbound
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {name}
                root_id: certbound
                vm_config:
                  vm_id: certbound
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}
                failure_policy: FAIL_CLOSED
                allow_on_headers_stop_iteration: true
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {config}
"""


def listener(name, port, certs, plugin=None, headers_to_add=""):
    filters = WASM.format(name=name, wasm=harness.WASM, config=json.dumps(json.dumps(plugin))) if plugin else ""
    return (f"  - name: {name}\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}\n"
            + TLS.format(certs=certs, name=name, filters=filters, headers_to_add=headers_to_add))


def oha(url, cert, extra):
    args = [str(OHA), "-z", f"{SECONDS}s", "-c", str(CONNECTIONS), "--no-tui", "--output-format", "json",
            "--cacert", str(cert["ca"]), "--cert", str(cert["pem"]), "--key", str(cert["key"]), *extra, url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=SECONDS * 4 + 60)
    if out.returncode != 0:
        raise RuntimeError(f"oha failed: {out.stderr[-2000:]}")
    data = json.loads(out.stdout)
    codes = data.get("statusCodeDistribution", {})
    return {
        "rps": data["summary"]["requestsPerSec"],
        "p50_ms": data["latencyPercentiles"]["p50"] * 1000,
        "p99_ms": data["latencyPercentiles"]["p99"] * 1000,
        "codes": codes,
    }


def check_statuses(what, run, expect="200"):
    """A run is reported only if every answer it counted is `expect`, and there was at least one:
    the rate of error responses (or of none) is not the rate of the thing measured."""
    codes = {str(k): v for k, v in run["codes"].items()}
    bad = {k: v for k, v in codes.items() if k != expect}
    if bad or not codes.get(expect):
        raise RuntimeError(f"{what}: statuses {codes or 'none'}, expected only {expect}; the run measured something else")
    return run


def scenario(name, certbound_url, baseline_url, cert, extra, baseline_extra=None, expect="200"):
    """Alternates certbound and the baseline, ROUNDS times each, after a warm-up of both."""
    extras = {"certbound": extra, "baseline": extra if baseline_extra is None else baseline_extra}
    check_statuses(f"{name} certbound warm-up", oha(certbound_url, cert, extras["certbound"]), expect)
    check_statuses(f"{name} baseline warm-up", oha(baseline_url, cert, extras["baseline"]), expect)
    runs = {"certbound": [], "baseline": []}
    for _ in range(ROUNDS):
        for variant, url in (("certbound", certbound_url), ("baseline", baseline_url)):
            runs[variant].append(check_statuses(f"{name} {variant}", oha(url, cert, extras[variant]), expect))
    med = lambda v, k: statistics.median(x[k] for x in runs[v])
    rps, base = med("certbound", "rps"), med("baseline", "rps")
    return {
        "name": name, "rps": round(rps, 1), "baseline_rps": round(base, 1), "ratio": round(rps / base, 3),
        "p50_ms": round(med("certbound", "p50_ms"), 3), "p99_ms": round(med("certbound", "p99_ms"), 3),
        "baseline_p50_ms": round(med("baseline", "p50_ms"), 3), "baseline_p99_ms": round(med("baseline", "p99_ms"), 3),
    }


def micro():
    subprocess.run(["cargo", "bench", "--bench", "micro", "--", "--warm-up-time", "1", "--measurement-time", "2"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    out = []
    for est in sorted((ROOT / "target/criterion").glob("*/new/estimates.json")):
        mean = json.loads(est.read_text())["mean"]["point_estimate"]
        out.append({"name": est.parent.parent.name, "ns_per_op": round(mean, 1)})
    return out


def jwk_of(cert: harness.Cert) -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    pub = x509.load_pem_x509_certificate(cert.pem.encode()).public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    n = pub.public_numbers()
    b64u = lambda i: base64.urlsafe_b64encode(i.to_bytes(32, "big")).decode().rstrip("=")
    return {"kty": "EC", "crv": "P-256", "x": b64u(n.x), "y": b64u(n.y), "x5c": [base64.b64encode(cert.der()).decode()]}


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except Exception as e:  # reported, not fatal
        return f"unknown ({e})"


def main():
    if not OHA.exists():
        sys.exit("oha is missing: make bench installs it")
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="certbound-bench-"))
    pki = harness.Pki(work / "certs")
    client = pki.client("bench-client")
    native = pki.client("bench-native")
    cert = {"ca": pki.ca_path, "pem": client.cert_path, "key": client.key_path}
    native_cert = {"ca": pki.ca_path, "pem": native.cert_path, "key": native.key_path}
    parts = []
    try:
        etcd = harness.EtcdCluster(work, members=1)
        parts.append(etcd)
        auth = harness.AuthorizationServer(work, [
            harness.as_client("bench", "bench-secret", ["client_credentials"]),
            harness.as_client("demo-rs", "demo-rs-secret", []),
            # The AS's own RFC 8705: self_signed_tls_client_auth with the certificate in a header.
            {"client_id": "bench-native", "grant_types": ["client_credentials"], "redirect_uris": [], "response_types": [],
             "token_endpoint_auth_method": "self_signed_tls_client_auth", "tls_client_certificate_bound_access_tokens": True,
             "jwks": {"keys": [jwk_of(native)]}},
        ], native_mtls=True)
        parts.append(auth)
        clients = [harness.certbound_client("bench", certificates=[client.pem], upstream_secret="bench-secret")]
        routes = [{"path_prefix": "/api/", "unbound_tokens": "require_binding"}]
        etcd_store = lambda cache: {"backend": "etcd", "etcd": {"cluster": "etcd", "cache_capacity": cache}}
        ports = {k: harness.free_port() for k in ("baseline", "idle", "shared", "etcd_warm", "etcd_cold", "native", "admin")}
        header = ("                request_headers_to_add:\n"
                  f"                - header: {{ key: {harness.AuthorizationServer.NATIVE_MTLS_HEADER}, value: \"%DOWNSTREAM_PEER_CERT%\" }}\n"
                  "                  append_action: OVERWRITE_IF_EXISTS_OR_ADD\n")
        listeners = "".join([
            listener("baseline", ports["baseline"], pki.dir),
            listener("certbound_shared", ports["shared"], pki.dir, {"clients": clients, "protected_routes": routes}),
            # certbound loaded but with nothing to do on /api/: the floor any Wasm filter costs.
            listener("certbound_idle", ports["idle"], pki.dir, {"clients": clients}),
            listener("certbound_etcd_warm", ports["etcd_warm"], pki.dir,
                     {"clients": clients, "protected_routes": routes, "store": etcd_store(100000)}),
            listener("certbound_etcd_cold", ports["etcd_cold"], pki.dir,
                     {"clients": clients, "protected_routes": routes, "store": etcd_store(0)}),
            listener("native_as", ports["native"], pki.dir, headers_to_add=header),
        ])
        config = Template((ROOT / "benches/load/envoy-bench.yaml.tmpl").read_text()).substitute(
            ADMIN_PORT=ports["admin"], LISTENERS=listeners.rstrip("\n"), AS_PORT=auth.port, ETCD_PORT=etcd.client_ports[0])
        (work / "envoy-bench.yaml").write_text(config)
        envoy = harness.Process("envoy", [str(harness.ENVOY_BIN), "-c", str(work / "envoy-bench.yaml"), "--use-dynamic-base-id",
                                          "--concurrency", "1", "-l", "warning"], work / "envoy.log")
        parts.append(envoy)
        import urllib.request
        harness.wait_until("the bench Envoy", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{ports['admin']}/ready", timeout=1).status == 200, timeout=60, proc=envoy)
        import requests

        def token(port, c=client, body="grant_type=client_credentials&client_id=bench"):
            r = requests.post(f"https://localhost:{port}/oauth2/token", data=body, cert=c.pair, verify=str(pki.ca_path),
                              headers={"content-type": "application/x-www-form-urlencoded"}, timeout=10)
            r.raise_for_status()
            return r.json()["access_token"]

        url = lambda k, p: f"https://localhost:{ports[k]}{p}"
        shared_token, etcd_token = token(ports["shared"]), token(ports["etcd_warm"])
        bearer = lambda t: ["-H", f"authorization: Bearer {t}"]
        cc = ["-m", "POST", "-T", "application/x-www-form-urlencoded", "-d", "grant_type=client_credentials&client_id=bench"]
        scenarios = [
            scenario("wasm_filter_floor", url("idle", "/api/x"), url("baseline", "/api/x"), cert, bearer(shared_token)),
            scenario("resource_shared_data", url("shared", "/api/x"), url("baseline", "/api/x"), cert, bearer(shared_token)),
            scenario("resource_etcd_cache_warm", url("etcd_warm", "/api/x"), url("baseline", "/api/x"), cert, bearer(etcd_token)),
            scenario("resource_etcd_cache_cold", url("etcd_cold", "/api/x"), url("baseline", "/api/x"), cert, bearer(etcd_token)),
        ]
        # Token endpoint: the baseline client presents the AS secret itself (no mTLS client auth, no binding).
        basic = ["-H", "authorization: Basic " + base64.b64encode(b"bench:bench-secret").decode()]
        scenarios.append(scenario("token_client_credentials", url("shared", "/oauth2/token"), url("baseline", "/oauth2/token"),
                                  cert, cc, baseline_extra=cc + basic))
        s = scenarios[-1]
        # The AS's own RFC 8705 is the comparison only if it works: one token through the native listener
        # must come back 200 and be bound by the AS to the native client's certificate.
        native_body = "grant_type=client_credentials&client_id=bench-native"
        probe = requests.post(url("native", "/oauth2/token"), data=native_body, cert=native.pair, verify=str(pki.ca_path),
                              headers={"content-type": "application/x-www-form-urlencoded"}, timeout=10)
        if probe.status_code != 200 or "access_token" not in probe.text:
            raise RuntimeError(f"the AS's own RFC 8705 does not issue tokens: {probe.status_code} {probe.text[:300]}")
        native_x5t = base64.urlsafe_b64encode(hashlib.sha256(native.der()).digest()).decode().rstrip("=")
        cnf = requests.post(auth.url + "/oauth2/introspect", data={"token": probe.json()["access_token"]},
                            auth=("demo-rs", "demo-rs-secret"), timeout=10).json().get("cnf")
        if cnf != {"x5t#S256": native_x5t}:
            raise RuntimeError(f"the AS's own RFC 8705 did not bind its token to the certificate: cnf={cnf}")
        native_cc = ["-m", "POST", "-T", "application/x-www-form-urlencoded", "-d", native_body]
        check_statuses("as_native_rfc8705 warm-up", oha(url("native", "/oauth2/token"), native_cert, native_cc))
        native_runs = [check_statuses("as_native_rfc8705", oha(url("native", "/oauth2/token"), native_cert, native_cc))
                       for _ in range(ROUNDS)]
        s["as_native_rfc8705_rps"] = round(statistics.median(x["rps"] for x in native_runs), 1)
        s["as_native_rfc8705_p99_ms"] = round(statistics.median(x["p99_ms"] for x in native_runs), 3)
        intro = ["-m", "POST", "-T", "application/x-www-form-urlencoded", "-d", f"token={shared_token}",
                 "-H", "authorization: Basic " + base64.b64encode(b"demo-rs:demo-rs-secret").decode()]
        scenarios.append(scenario("introspection_bound_token", url("shared", "/oauth2/introspect"),
                                  url("baseline", "/oauth2/introspect"), cert, intro))
    finally:
        harness.stop_all(parts)
    micros = micro()
    wasm_bytes = harness.WASM.stat().st_size
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    summary = {
        "wasm_bytes": wasm_bytes,
        "scenarios": scenarios,
        "micro": micros,
        "machine": {"cores": os.cpu_count(), "cpu": cpu, "os": platform.platform()},
        "versions": {
            "envoy": version([str(harness.ENVOY_BIN), "--version"]),
            "oha": version([str(OHA), "--version"]),
            "node": version(["node", "--version"]),
            "etcd": version([harness.etcd_binary(), "--version"]),
            "oidc-provider": json.loads((ROOT / "as/node_modules/oidc-provider/package.json").read_text())["version"],
        },
        "settings": {"seconds": SECONDS, "rounds": ROUNDS, "connections": CONNECTIONS, "envoy_workers": 1},
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    targets = {"resource_shared_data": 0.95, "resource_etcd_cache_warm": 0.90, "token_client_credentials": 0.90}
    print(f"\ncertbound bench on {cpu} ({os.cpu_count()} cores), Envoy 1 worker, {CONNECTIONS} connections, "
          f"{ROUNDS}x{SECONDS}s per variant\n")
    print(f"{'scenario':28} {'rps':>9} {'base rps':>9} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'base p99':>8}  target")
    for s in scenarios:
        t = targets.get(s["name"])
        verdict = "" if t is None else (f">= {t}: " + ("met" if s["ratio"] >= t else "MISSED"))
        if s["name"] == "resource_shared_data":
            added = s["p99_ms"] - s["baseline_p99_ms"]
            verdict += f"; p99 added {added:.3f} ms (<= 0.2: {'met' if added <= 0.2 else 'MISSED'})"
        print(f"{s['name']:28} {s['rps']:9.0f} {s['baseline_rps']:9.0f} {s['ratio']:6.3f} {s['p50_ms']:7.2f} "
              f"{s['p99_ms']:7.2f} {s['baseline_p99_ms']:8.2f}  {verdict}")
    tok = next(s for s in scenarios if s["name"] == "token_client_credentials")
    print(f"{'  AS native RFC 8705':28} {tok['as_native_rfc8705_rps']:9.0f} {'':>9} {'':>6} {'':>7} "
          f"{tok['as_native_rfc8705_p99_ms']:7.2f}")
    print(f"\n{'micro-benchmark':48} {'ns/op':>10}  target")
    for m in micros:
        limit = 5000 if m["name"] == "introspection_patch_1kib" else 10000
        print(f"{m['name']:48} {m['ns_per_op']:10.0f}  <= {limit}: {'met' if m['ns_per_op'] <= limit else 'MISSED'}")
    print(f"\ncertbound.wasm: {wasm_bytes} bytes ({wasm_bytes / 1024:.0f} KiB; target <= 400 KiB: "
          f"{'met' if wasm_bytes <= 400 * 1024 else 'MISSED'})")
    print(f"summary: {OUT / 'summary.json'}")


if __name__ == "__main__":
    main()
