"""Bindings survive a configuration reload of the filter: the listener (and
certbound's plugin configuration) is replaced through Envoy's file-based LDS
while Envoy keeps running."""

import json
import os
import time
import urllib.request

import pytest
import requests
import yaml

import harness
from conftest import good_client, x5t_by_openssl


def lds_update_count(admin_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?filter=listener_manager.lds.update_success",
                                timeout=5) as r:
        line = r.read().decode().strip()
    return int(line.rsplit(":", 1)[1]) if line else 0


@pytest.fixture
def lds_envoy(stack, tmp_path):
    """The demo template, with its listener served from a file (LDS) instead of static config."""
    config = {"clients": [good_client(stack)]}
    static = harness.Envoy(tmp_path, config, cert_dir=stack.pki.dir, as_port=stack.auth_server.port,
                           api_port=stack.api.port, wait=False, name="render-only")
    static.proc.stop()
    bootstrap = yaml.safe_load(static.config_path.read_text())
    listener = bootstrap["static_resources"].pop("listeners")[0]
    lds = tmp_path / "lds.yaml"

    def write(plugin_config):
        for f in listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
            if f["name"] == "certbound":
                tc = f["typed_config"]
                # The .wasm's plugin configuration, or the dynamic module's filter_config.
                holder = tc["config"]["configuration"] if "config" in tc else tc["filter_config"]
                holder["value"] = json.dumps(plugin_config)
        tmp = tmp_path / "lds.yaml.tmp"
        tmp.write_text(json.dumps({"resources": [
            {"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", **listener}]}))
        os.replace(tmp, lds)  # Envoy watches for a move into place

    write(config)
    bootstrap["node"] = {"id": "certbound-reload-test", "cluster": "certbound"}
    bootstrap["dynamic_resources"] = {"lds_config": {"path_config_source": {"path": str(lds)}, "resource_api_version": "V3"}}
    path = tmp_path / "lds-envoy.yaml"
    path.write_text(json.dumps(bootstrap))
    proc = harness.Process("lds-envoy", [str(harness.ENVOY_BIN), "-c", str(path), "--use-dynamic-base-id",
                                         "--concurrency", "2", "-l", "info"], tmp_path / "lds-envoy.log")
    port = listener["address"]["socket_address"]["port_value"]
    admin = bootstrap["admin"]["address"]["socket_address"]["port_value"]
    harness.wait_until("the LDS Envoy", lambda: requests.post(
        f"https://localhost:{port}/oauth2/introspect", verify=str(stack.pki.ca_path), timeout=1) is not None,
        timeout=60, proc=proc)
    yield {"url": f"https://localhost:{port}", "admin": admin, "write": write, "config": config, "proc": proc}
    proc.stop()


def test_bindings_survive_a_reload_of_the_filter_configuration(stack, lds_envoy):
    good, ca = stack.clients["good"], str(stack.pki.ca_path)
    url = lds_envoy["url"]
    token = requests.post(url + "/oauth2/token", data={"grant_type": "client_credentials", "client_id": "good-client"},
                          cert=good.pair, verify=ca, timeout=15).json()["access_token"]
    introspect = lambda: requests.post(url + "/oauth2/introspect", data={"token": token},
                                       auth=("demo-rs", "demo-rs-secret"), verify=ca, timeout=15).json()
    assert introspect()["cnf"]["x5t#S256"] == x5t_by_openssl(good.cert_path)

    before = lds_update_count(lds_envoy["admin"])
    lds_envoy["write"]({**lds_envoy["config"], "discovery": {"mtls_host": "mtls.reloaded.test"}})
    harness.wait_until("the listener update", lambda: lds_update_count(lds_envoy["admin"]) > before, timeout=30)
    # The new configuration is in force ...
    harness.wait_until("the new configuration", lambda: "mtls.reloaded.test" in requests.get(
        url + "/.well-known/openid-configuration", verify=ca, timeout=5).text, timeout=30)
    # ... and the binding made under the old one is still there.
    assert introspect()["cnf"]["x5t#S256"] == x5t_by_openssl(good.cert_path)
