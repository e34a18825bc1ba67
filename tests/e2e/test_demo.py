"""`make run`: the demo a user starts first, driven with the README's curl lines."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import harness
from conftest import x5t_by_openssl

RUN = harness.ROOT / "envoy" / "demo" / "run.py"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def curl(*args: str) -> tuple[int, dict]:
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30, check=True)
    body, _, code = out.stdout.rpartition("\n")
    return int(code), json.loads(body)


def test_demo_starts_answers_the_readme_curls_and_stops_on_ctrl_c(tmp_path):
    port, admin = harness.free_port(), harness.free_port()
    certs = tmp_path / "certs"
    env = {
        **os.environ,
        "CERTBOUND_DEMO_PORT": str(port),
        "CERTBOUND_DEMO_ADMIN_PORT": str(admin),
        "CERTBOUND_DEMO_CERTS": str(certs),
        "CERTBOUND_DEMO_WORKDIR": str(tmp_path / "work"),
    }
    demo = subprocess.Popen([sys.executable, str(RUN)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "ready" in line:
                break
        assert any("ready" in l for l in lines), "".join(lines)

        url = f"https://localhost:{port}"
        ca, c = str(certs / "ca.pem"), certs
        code, body = curl("--cacert", ca, "--cert", str(c / "demo-client.pem"), "--key", str(c / "demo-client.key"),
                          "-d", "grant_type=client_credentials&client_id=demo-client", f"{url}/oauth2/token")
        assert code == 200, body
        token = body["access_token"]

        code, body = curl("--cacert", ca, "-u", "demo-rs:demo-rs-secret", "-d", f"token={token}", f"{url}/oauth2/introspect")
        assert code == 200
        assert body["active"] is True
        assert body["cnf"] == {"x5t#S256": x5t_by_openssl(c / "demo-client.pem")}

        demo_cert = ["--cert", str(c / "demo-client.pem"), "--key", str(c / "demo-client.key")]
        bearer = ["-H", f"Authorization: Bearer {token}"]
        code, body = curl("--cacert", ca, *demo_cert, *bearer, f"{url}/api/hello")
        assert code == 200, body
        assert body["headers"]["x-certbound-x5t"] == x5t_by_openssl(c / "demo-client.pem")
        code, body = curl("--cacert", ca, "--cert", str(c / "stranger.pem"), "--key", str(c / "stranger.key"), *bearer,
                          f"{url}/api/hello")
        assert code == 401 and body["error"] == "invalid_token"
        code, body = curl("--cacert", ca, *bearer, f"{url}/api/hello")
        assert code == 401 and body["error"] == "invalid_token"

        for args in (
            ["--cert", str(c / "stranger.pem"), "--key", str(c / "stranger.key"), "-d", "grant_type=client_credentials&client_id=demo-client"],
            ["-d", "grant_type=client_credentials&client_id=demo-client"],
            ["--cert", str(c / "demo-client.pem"), "--key", str(c / "demo-client.key"), "-d", "grant_type=client_credentials&client_id=unknown"],
        ):
            code, body = curl("--cacert", ca, *args, f"{url}/oauth2/token")
            assert code == 401 and body["error"] == "invalid_client" and body["error_description"], (args, body)

        as_port = next(int(l.split("http://127.0.0.1:")[1].split(",")[0]) for l in lines if "AS (oidc-provider)" in l)
        assert port_open(port) and port_open(as_port)
    finally:
        demo.send_signal(signal.SIGINT)
        rc = demo.wait(timeout=30)
    assert rc == 0
    assert not port_open(port), "Envoy still listening after Ctrl-C"
    assert not port_open(as_port), "the AS still listening after Ctrl-C"
