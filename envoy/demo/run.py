#!/usr/bin/env python3
"""`make run`: the certbound demo.

Envoy with certbound on https://localhost:9443, the demo AS (oidc-provider)
behind it at /oauth2/*, and a demo API behind it at /api/. Certificates are
generated into envoy/demo/certs on first start. Prints a line with `ready`
when it can be used; Ctrl-C stops every process it started.

Environment (for tests): CERTBOUND_DEMO_PORT, CERTBOUND_DEMO_ADMIN_PORT,
CERTBOUND_DEMO_CERTS, CERTBOUND_DEMO_WORKDIR.
"""

import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "e2e"))

import harness  # noqa: E402

DEMO_CLIENT_UPSTREAM_SECRET = "demo-client-upstream-secret"


def main() -> int:
    port = int(os.environ.get("CERTBOUND_DEMO_PORT", "9443"))
    admin_port = int(os.environ.get("CERTBOUND_DEMO_ADMIN_PORT", "9901"))
    cert_dir = Path(os.environ.get("CERTBOUND_DEMO_CERTS", HERE / "certs"))
    workdir = Path(os.environ.get("CERTBOUND_DEMO_WORKDIR") or tempfile.mkdtemp(prefix="certbound-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)

    pki = harness.Pki(cert_dir)
    demo_client = pki.client("demo-client")
    pki.client("stranger")

    parts = []
    stop = threading.Event()

    def shutdown(*_):
        stop.set()

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    try:
        auth_server = harness.AuthorizationServer(
            workdir,
            [
                harness.as_client("demo-client", DEMO_CLIENT_UPSTREAM_SECRET, ["client_credentials"]),
                harness.as_client("demo-rs", "demo-rs-secret", []),
            ],
        )
        parts.append(auth_server)
        api = harness.EchoApi()
        parts.append(api)
        envoy = harness.Envoy(
            workdir,
            {
                "token_path": "/oauth2/token",
                "introspection_path": "/oauth2/introspect",
                "clients": [
                    harness.certbound_client(
                        "demo-client",
                        certificates=[demo_client.pem],
                        upstream_secret=DEMO_CLIENT_UPSTREAM_SECRET,
                    )
                ],
                "protected_routes": [
                    {
                        "path_prefix": "/api/",
                        "unbound_tokens": "require_binding",
                        "missing_token": "reject",
                        "thumbprint_header": "x-certbound-x5t",
                    }
                ],
                **({"jwt_claims": {}} if harness.ARTIFACT == "wasm" else {}),
            },
            cert_dir=cert_dir,
            as_port=auth_server.port,
            api_port=api.port,
            listen_port=port,
            admin_port=admin_port,
            concurrency=1,
        )
        parts.append(envoy)
        c = os.path.relpath(cert_dir)
        print(
            f"""
certbound demo: Envoy with certbound on https://localhost:{port}, admin on http://127.0.0.1:{admin_port}
  AS (oidc-provider) {auth_server.url}, demo API on 127.0.0.1:{api.port}, logs in {workdir}

  curl --cacert {c}/ca.pem --cert {c}/demo-client.pem --key {c}/demo-client.key \\
       -d 'grant_type=client_credentials&client_id=demo-client' https://localhost:{port}/oauth2/token
  curl --cacert {c}/ca.pem -u demo-rs:demo-rs-secret -d token=<access_token> https://localhost:{port}/oauth2/introspect
  curl --cacert {c}/ca.pem --cert {c}/demo-client.pem --key {c}/demo-client.key \
       -H "Authorization: Bearer <access_token>" https://localhost:{port}/api/hello

certbound demo ready (Ctrl-C stops it)""",
            flush=True,
        )
        while not stop.is_set():
            for p in (auth_server.proc, envoy.proc):
                if p.popen.poll() is not None:
                    print(f"{p.name} exited ({p.popen.returncode}):\n{p.tail()}", file=sys.stderr)
                    return 1
            stop.wait(0.5)
        print("certbound demo stopping", flush=True)
        return 0
    except Exception as e:  # a failed start says why, then cleans up
        print(f"certbound demo failed to start: {e}", file=sys.stderr)
        return 1
    finally:
        harness.stop_all(parts)


if __name__ == "__main__":
    sys.exit(main())
