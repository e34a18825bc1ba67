"""A configuration certbound refuses stops Envoy from loading it, naming the field."""

import json
import subprocess

import pytest

import harness


@pytest.mark.parametrize(
    "plugin_config, field",
    [
        ({"clients": [{"client_id": "a", "token_endpoint_auth_method": "self_signed_tls_client_auth", "thumbprints": ["nope"]}]},
         "clients[0].thumbprints[0]"),
        ({"clients": [], "token_pth": "/t"}, "(root)"),
    ],
)
def test_invalid_config_stops_envoy_naming_the_field(tmp_path, plugin_config, field):
    pki = harness.Pki(tmp_path / "certs")
    envoy = harness.Envoy(tmp_path, plugin_config, cert_dir=pki.dir, as_port=harness.free_port(),
                          api_port=harness.free_port(), wait=False)
    try:
        rc = envoy.proc.popen.wait(timeout=60)
    finally:
        envoy.stop()
    log = envoy.proc.log()
    assert rc != 0, log[-2000:]
    assert f"certbound refuses its configuration: config field {field}" in log, log[-2000:]
    # The certbound command says the same, word for word.
    cli = subprocess.run([str(harness.ROOT / "target/release/certbound"), "check-config", "-"],
                         input=json.dumps(plugin_config).encode(), capture_output=True, timeout=30)
    assert cli.returncode == 1
    message = cli.stderr.decode().strip().removeprefix("certbound: ")
    assert message in log, (message, log[-2000:])
