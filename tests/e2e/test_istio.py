"""Istio: every manifest in envoy/istio/ checked against Istio's own CRD schemas
(tests/data/istio/crd-schemas.yaml, Istio 1.30.3, extracted from istio/api), and
the shipped EnvoyFilters applied, as Istio 1.30.3 applies them, to the Envoy
configuration Istio generates for the ingress gateway
(tests/data/istio/gateway.envoy.yaml.tmpl), then run in the real Envoy in front
of the real AS."""

import copy
import json
import subprocess
import uuid
from pathlib import Path
from string import Template

import jsonschema
import pytest
import requests
import yaml

import harness

pytestmark = harness.wasm_only("Istio loads certbound as a WasmPlugin")
from conftest import UPSTREAM_SECRETS, name as dn, x5t_of

ISTIO_DIR = harness.ROOT / "envoy/istio"
DATA = harness.ROOT / "tests/data/istio"
SCHEMA_FILE = DATA / "crd-schemas.yaml"
CLI = harness.ROOT / "target/release/certbound"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
HCM = "envoy.filters.network.http_connection_manager"


def docs_of(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def one(path: Path, kind: str) -> dict:
    [d] = [d for d in docs_of(path) if d["kind"] == kind]
    return d


# ---------------------------------------------------------------- Istio's schemas

# Kubernetes' ObjectMeta, the part manifests write (the CRD schemas leave metadata to the API server).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
}


def structural_to_json_schema(node):
    """A Kubernetes structural schema as JSON Schema (draft 4, the dialect OpenAPI 3.0 keywords follow),
    with the API server's semantics:
    - an object schema with `properties` takes no other field (kubectl's default strict field
      validation refuses unknown fields; without it the API server drops them silently), unless it
      says `x-kubernetes-preserve-unknown-fields` (pluginConfig, an EnvoyFilter patch value) or has
      `additionalProperties` (a map);
    - `nullable: true` also admits null;
    - the other `x-kubernetes-*` extensions are left in place, and jsonschema ignores keywords it does not
      know: `x-kubernetes-int-or-string` is already spelt as anyOf, list-type/map-keys only govern merges,
      and the CEL rules (`x-kubernetes-validations`) are NOT evaluated (for these kinds: one of
      selector/targetRef(s), the WasmPlugin url scheme, no `*` in selector labels, credentialName vs
      credentialNames vs tlsCertificates).
    """
    if isinstance(node, list):
        return [structural_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "properties":
            out[k] = {p: structural_to_json_schema(s) for p, s in v.items()}
        elif k in ("items", "additionalProperties", "not") and isinstance(v, dict):
            out[k] = structural_to_json_schema(v)
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [structural_to_json_schema(s) for s in v]
        else:
            out[k] = v
    if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("nullable") and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    return out


def load_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the JSON Schema of a whole manifest of that kind."""
    out = {}
    for crd in docs_of(SCHEMA_FILE):
        for version, schema in crd["versions"].items():
            api_version = f"{crd['group']}/{version}"
            s = structural_to_json_schema(schema)
            s["properties"] = {
                "apiVersion": {"enum": [api_version]},
                "kind": {"enum": [crd["kind"]]},
                "metadata": METADATA,
                **s.get("properties", {}),
            }
            s["required"] = sorted({"apiVersion", "kind", "metadata", *s.get("required", [])})
            s["additionalProperties"] = False
            out[(api_version, crd["kind"])] = s
    return out


SCHEMAS = load_schemas()


def schema_errors(doc: dict) -> list[str]:
    """What the API server (strict field validation) would refuse in this manifest, as 'path: message'."""
    schema = SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
    if schema is None:
        served = sorted(a for a, k in SCHEMAS if k == doc.get("kind"))
        return [f"<root>: Istio 1.30.3 serves no {doc.get('kind')} {doc.get('apiVersion')} (served: {served})"]
    errors = jsonschema.Draft4Validator(schema).iter_errors(doc)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)


def istio_ignores(doc: dict) -> list[str]:
    """EnvoyFilter patches the schema admits but Istio 1.30.3 drops without a word."""
    if doc.get("kind") != "EnvoyFilter":
        return []
    out = []
    for i, cp in enumerate(doc["spec"].get("configPatches", [])):
        op = cp.get("patch", {}).get("operation")
        sub = cp.get("match", {}).get("listener", {}).get("filterChain", {}).get("filter", {}).get("subFilter", {})
        if cp.get("applyTo") == "EXTENSION_CONFIG" and op != "ADD":
            # pilot/pkg/networking/core/envoyfilter/extension_configuration_patch.go
            out.append(f"spec.configPatches.{i}: EXTENSION_CONFIG {op} is never applied (only ADD is)")
        if cp.get("applyTo") == "HTTP_FILTER" and op == "MERGE" and sub.get("name", "").startswith("extensions.istio.io/"):
            # listener_patch.go mergeHTTPFilter: a filter without typed_config (ECDS) is skipped.
            out.append(f"spec.configPatches.{i}: HTTP_FILTER MERGE on the ECDS filter {sub['name']} is skipped")
    return out


ISTIO_DOCS = [(p, i, d) for p in sorted(ISTIO_DIR.glob("*.yaml")) for i, d in enumerate(docs_of(p))]


def test_schemas_are_istio_1_30_3_from_istio_api_and_valid_json_schema():
    header = SCHEMA_FILE.read_text().split("\napiVersion", 1)[0]
    assert "Istio 1.30.3" in header and "github.com/istio/api" in header
    assert "tag v1.30.3, commit 2e43f07b30b6744bc8252fce39fb58b03f85ff8b" in header
    assert {k for _, k in SCHEMAS} == {"WasmPlugin", "EnvoyFilter", "Gateway"}
    for schema in SCHEMAS.values():
        jsonschema.Draft4Validator.check_schema(schema)


@pytest.mark.parametrize("path,index,doc", ISTIO_DOCS, ids=[f"{p.name}#{i}-{d['kind']}" for p, i, d in ISTIO_DOCS])
def test_every_istio_manifest_matches_istios_schema(path, index, doc):
    assert schema_errors(doc) == []
    assert istio_ignores(doc) == []


def mutated(path: str, kind: str, change) -> dict:
    doc = copy.deepcopy(one(ISTIO_DIR / path, kind))
    change(doc)
    return doc


BAD = {
    "wasmplugin-unknown-phase": (
        mutated("wasmplugin.yaml", "WasmPlugin", lambda d: d["spec"].update(phase="BEFORE_AUTH")),
        "spec.phase: 'BEFORE_AUTH' is not one of"),
    "wasmplugin-has-no-allow-on-headers-field": (
        mutated("wasmplugin.yaml", "WasmPlugin", lambda d: d["spec"].update(allowOnHeadersStopIteration=True)),
        "spec: Additional properties are not allowed ('allowOnHeadersStopIteration' was unexpected)"),
    "wasmplugin-unknown-vmconfig-field": (
        mutated("wasmplugin.yaml", "WasmPlugin", lambda d: d["spec"]["vmConfig"].update(runtime="v8")),
        "spec.vmConfig: Additional properties are not allowed ('runtime' was unexpected)"),
    "wasmplugin-without-url": (
        mutated("wasmplugin.yaml", "WasmPlugin", lambda d: d["spec"].pop("url")),
        "spec: 'url' is a required property"),
    "wasmplugin-priority-string": (
        mutated("wasmplugin.yaml", "WasmPlugin", lambda d: d["spec"].update(priority="high")),
        "spec.priority: 'high' is not of type 'integer', 'null'"),
    "wasmplugin-unknown-metadata-field": (
        mutated("wasmplugin.yaml", "WasmPlugin", lambda d: d["metadata"].update(namepsace="x")),
        "metadata: Additional properties are not allowed ('namepsace' was unexpected)"),
    "envoyfilter-unknown-applyto": (
        mutated("envoyfilter-allow-on-headers.yaml", "EnvoyFilter",
                lambda d: d["spec"]["configPatches"][0].update(applyTo="EXTENSION_CONFIGURATION")),
        "spec.configPatches.0.applyTo: 'EXTENSION_CONFIGURATION' is not one of"),
    "envoyfilter-unknown-context": (
        mutated("envoyfilter-allow-on-headers.yaml", "EnvoyFilter",
                lambda d: d["spec"]["configPatches"][1]["match"].update(context="INGRESS_GATEWAY")),
        "spec.configPatches.1.match.context: 'INGRESS_GATEWAY' is not one of"),
    "envoyfilter-unknown-operation": (
        mutated("envoyfilter-allow-on-headers.yaml", "EnvoyFilter",
                lambda d: d["spec"]["configPatches"][1]["patch"].update(operation="PREPEND")),
        "spec.configPatches.1.patch.operation: 'PREPEND' is not one of"),
    "envoyfilter-typo-in-spec": (
        mutated("envoyfilter-allow-on-headers.yaml", "EnvoyFilter",
                lambda d: d["spec"].update(configPatch=d["spec"].pop("configPatches"))),
        "spec: Additional properties are not allowed ('configPatch' was unexpected)"),
    "envoyfilter-unknown-filterchain-match": (
        mutated("gateway-self-signed-clients.yaml", "EnvoyFilter",
                lambda d: d["spec"]["configPatches"][0]["match"]["listener"]["filterChain"].update(serverName="x")),
        "spec.configPatches.0.match.listener.filterChain: Additional properties are not allowed ('serverName' was unexpected)"),
    "envoyfilter-two-matches": (
        mutated("gateway-self-signed-clients.yaml", "EnvoyFilter",
                lambda d: d["spec"]["configPatches"][0]["match"].update(cluster={"name": "x"})),
        ("spec.configPatches.0.match: {", "is valid under each of {'required': ['cluster']}")),
    "envoyfilter-v1-not-served": (
        mutated("envoyfilter-allow-on-headers.yaml", "EnvoyFilter", lambda d: d.update(apiVersion="networking.istio.io/v1")),
        "<root>: Istio 1.30.3 serves no EnvoyFilter networking.istio.io/v1"),
    "gateway-unknown-tls-mode": (
        mutated("gateway-self-signed-clients.yaml", "Gateway", lambda d: d["spec"]["servers"][0]["tls"].update(mode="OPTIONAL")),
        "spec.servers.0.tls.mode: 'OPTIONAL' is not one of"),
    "gateway-port-without-name": (
        mutated("gateway-self-signed-clients.yaml", "Gateway", lambda d: d["spec"]["servers"][0]["port"].pop("name")),
        "spec.servers.0.port: 'name' is a required property"),
    "gateway-tls-field-from-envoy": (
        mutated("gateway-self-signed-clients.yaml", "Gateway",
                lambda d: d["spec"]["servers"][0]["tls"].update(trustChainVerification="ACCEPT_UNTRUSTED")),
        "spec.servers.0.tls: Additional properties are not allowed ('trustChainVerification' was unexpected)"),
}


@pytest.mark.parametrize("case", BAD)
def test_schema_validation_reports_wrong_fields(case):
    doc, expected = BAD[case]
    prefix, part = expected if isinstance(expected, tuple) else (expected, "")
    errors = schema_errors(doc)
    assert any(e.startswith(prefix) and part in e for e in errors), errors


def test_schema_keeps_what_kubernetes_allows():
    # nullable, free-form pluginConfig and patch values, and the status the API server writes.
    def change(d):
        d["spec"]["priority"] = None
        d["spec"]["pluginConfig"]["anything"] = {"nested": [1, "two"]}
        d["status"] = {"observedGeneration": "3", "somethingNew": True}
    assert schema_errors(mutated("wasmplugin.yaml", "WasmPlugin", change)) == []
    ef = mutated("envoyfilter-allow-on-headers.yaml", "EnvoyFilter",
                 lambda d: d["spec"]["configPatches"][0]["patch"]["value"].update(anything={"goes": 1}))
    assert schema_errors(ef) == []


def test_patches_istio_would_ignore_are_reported_though_the_schema_admits_them():
    def merge_ecds(d):
        d["spec"]["configPatches"][0]["patch"]["operation"] = "MERGE"
        d["spec"]["configPatches"][1] = {
            "applyTo": "HTTP_FILTER",
            "match": {"context": "GATEWAY", "listener": {"filterChain": {"filter": {
                "name": HCM, "subFilter": {"name": "extensions.istio.io/wasmplugin/istio-system.certbound"}}}}},
            "patch": {"operation": "MERGE", "value": {"typed_config": {
                "@type": "type.googleapis.com/udpa.type.v1.TypedStruct", "type_url": WASM_TYPE,
                "value": {"config": {"allow_on_headers_stop_iteration": True}}}}},
        }
    doc = mutated("envoyfilter-allow-on-headers.yaml", "EnvoyFilter", merge_ecds)
    assert schema_errors(doc) == []
    assert istio_ignores(doc) == [
        "spec.configPatches.0: EXTENSION_CONFIG MERGE is never applied (only ADD is)",
        "spec.configPatches.1: HTTP_FILTER MERGE on the ECDS filter extensions.istio.io/wasmplugin/istio-system.certbound is skipped",
    ]


# ---------------------------------------------------------------- the EnvoyFilter and the WasmPlugin agree

def envoyfilter_parts(ef: dict) -> tuple[dict, dict]:
    """(the ADDed extension config, the HTTP filter subscribing to it) of envoyfilter-allow-on-headers.yaml."""
    [ext] = [cp["patch"]["value"] for cp in ef["spec"]["configPatches"] if cp["applyTo"] == "EXTENSION_CONFIG"]
    [flt] = [cp["patch"]["value"] for cp in ef["spec"]["configPatches"] if cp["applyTo"] == "HTTP_FILTER"]
    return ext, flt


def test_envoyfilter_is_the_wasmplugins_filter_plus_allow_on_headers_stop_iteration():
    wp = one(ISTIO_DIR / "wasmplugin.yaml", "WasmPlugin")
    ef = one(ISTIO_DIR / "envoyfilter-allow-on-headers.yaml", "EnvoyFilter")
    ext, flt = envoyfilter_parts(ef)
    assert ef["spec"]["workloadSelector"]["labels"] == wp["spec"]["selector"]["matchLabels"]
    assert ef["metadata"]["namespace"] == wp["metadata"]["namespace"]
    # One name: the filter's ECDS subscription is what the ADD answers.
    assert flt["name"] == ext["name"]
    assert flt["config_discovery"]["type_urls"] == [WASM_TYPE, RBAC_TYPE]
    assert flt["config_discovery"]["config_source"]["ads"] == {}
    config = ext["typed_config"]["config"]
    assert ext["typed_config"]["@type"] == WASM_TYPE
    assert config["allow_on_headers_stop_iteration"] is True
    # A trapped VM is replaced, failing closed meanwhile (test_faults.py); never FAIL_OPEN.
    assert config["failure_policy"] == "FAIL_RELOAD" and wp["spec"]["failStrategy"] == "FAIL_RELOAD"
    assert config["vm_config"]["code"]["remote"]["http_uri"]["uri"] == wp["spec"]["url"]
    assert config["vm_config"]["environment_variables"]["key_values"] == {
        "ISTIO_META_WASM_IMAGE_PULL_POLICY": wp["spec"]["imagePullPolicy"]}
    assert config["configuration"]["@type"] == STRING_VALUE
    plugin_config = json.loads(config["configuration"]["value"])
    assert plugin_config == wp["spec"]["pluginConfig"]
    r = subprocess.run([str(CLI), "check-config", "-"], input=config["configuration"]["value"].encode(),
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()


# ---------------------------------------------------------------- Istio's rendering, in the real Envoy

def proto_merge(dst: dict, src: dict):
    """protobuf Merge on JSON forms: messages merge field by field, repeated fields append, scalars replace."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            proto_merge(dst[k], v)
        elif isinstance(v, list) and isinstance(dst.get(k), list):
            dst[k].extend(copy.deepcopy(v))
        else:
            dst[k] = copy.deepcopy(v)


def apply_envoyfilter(envoy: dict, ef: dict) -> list[dict]:
    """Applies an EnvoyFilter's patches to a gateway's Envoy config as istio/istio 1.30.3 does
    (pilot/pkg/networking/core/envoyfilter), for the operations envoy/istio/ uses; returns the
    extension configs it ADDs (ECDS). A patch whose match fails changes nothing, as in Istio."""
    added = []
    for cp in ef["spec"]["configPatches"]:
        match, patch = cp.get("match", {}), cp["patch"]
        assert match.get("context") == "GATEWAY"
        op = (cp["applyTo"], patch["operation"])
        if op == ("EXTENSION_CONFIG", "ADD"):
            added.append(copy.deepcopy(patch["value"]))
            continue
        lm = match.get("listener", {})
        fcm = lm.get("filterChain", {})
        for lis in envoy["static_resources"]["listeners"]:
            # Gateway listeners are named 0.0.0.0_<port>, the port Istio binds (the Service's targetPort).
            if lm.get("portNumber") and lis["name"].rsplit("_", 1)[-1] != str(lm["portNumber"]):
                continue
            for fc in lis["filter_chains"]:
                if fcm.get("sni") and fcm["sni"] not in fc.get("filter_chain_match", {}).get("server_names", []):
                    continue
                if op == ("FILTER_CHAIN", "MERGE"):
                    # listener_patch.go mergeTransportSocketListener: same socket name, typed configs merged.
                    ts = patch["value"]["transport_socket"]
                    assert ts["name"] == fc["transport_socket"]["name"]
                    assert ts["typed_config"]["@type"] == fc["transport_socket"]["typed_config"]["@type"]
                    proto_merge(fc["transport_socket"]["typed_config"], ts["typed_config"])
                elif op == ("HTTP_FILTER", "INSERT_FIRST"):
                    for f in fc["filters"]:
                        if f["name"] == HCM and fcm.get("filter", {}).get("name", HCM) == HCM:
                            f["typed_config"]["http_filters"].insert(0, copy.deepcopy(patch["value"]))
                else:
                    raise AssertionError(f"not simulated: {op}")
    return added


def wasmplugin_as_istio_renders_it(wp: dict) -> tuple[dict, dict]:
    """(HTTP filter, ECDS extension config) istiod 1.30.3 makes of a WasmPlugin: it becomes a synthetic
    TrafficExtension <name>~istio-translated-wasmplugin (pilot/pkg/config/kube/extensions/translate.go),
    rendered by pilot/pkg/model/extensions.go buildWasmConfig and
    pilot/pkg/networking/core/extension/extensionfilter.go toEnvoyHTTPTrafficExtension."""
    spec, meta = wp["spec"], wp["metadata"]
    name = f"{meta['namespace']}.{meta['name']}~istio-translated-wasmplugin"
    resource = f"extensions.istio.io/trafficextension/{name}"
    config = {
        "name": name,
        "configuration": {"@type": STRING_VALUE, "value": json.dumps(spec["pluginConfig"])},
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"remote": {"http_uri": {"uri": spec["url"], "timeout": "30s", "cluster": "_"}}},
            "environment_variables": {"key_values": {
                "ISTIO_META_WASM_IMAGE_PULL_POLICY": spec["imagePullPolicy"],
                "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "1"}},
        },
        "failure_policy": {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN", "FAIL_RELOAD": "FAIL_RELOAD"}[spec["failStrategy"]],
    }
    if spec.get("pluginName"):
        config["root_id"] = spec["pluginName"]
    http_filter = {"name": resource, "config_discovery": {
        "config_source": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
        "type_urls": [WASM_TYPE, RBAC_TYPE]}}
    return http_filter, {"name": resource, "typed_config": {"@type": WASM_TYPE, "config": config}}


def as_the_agent_delivers_it(ext: dict) -> dict:
    """istio-agent's rewrite of an ECDS Wasm resource (pkg/wasm/convert.go rewriteVMConfig): the fetched
    module becomes a local file and the ISTIO_META_* variables are removed."""
    ext = copy.deepcopy(ext)
    vm = ext["typed_config"]["config"]["vm_config"]
    assert vm["code"]["remote"]["http_uri"]["uri"].startswith("oci://")
    vm["code"] = {"local": {"filename": str(harness.WASM)}}
    env = vm.get("environment_variables", {})
    kv = {k: v for k, v in env.get("key_values", {}).items() if not k.startswith("ISTIO_META_")}
    if kv:
        env["key_values"] = kv
    elif not env.get("host_env_keys"):
        vm.pop("environment_variables", None)
    return {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", **ext}


def with_plugin_config(ext: dict, change) -> dict:
    ext = copy.deepcopy(ext)
    configuration = ext["typed_config"]["config"]["configuration"]
    plugin_config = json.loads(configuration["value"])
    change(plugin_config)
    configuration["value"] = json.dumps(plugin_config)
    return ext


class IstioGateway:
    """The real Envoy, configured as Istio configures istio-ingressgateway for
    gateway-self-signed-clients.yaml's server (its host served as localhost, the name on the test
    server certificate), with the given EnvoyFilters applied and/or WasmPlugin rendered."""

    def __init__(self, workdir: Path, stack, *, envoyfilters=(), wasmplugin=None, plugin_config_change=None,
                 ca_crt: Path | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.admin_port = harness.free_port(), harness.free_port()
        files = {n: workdir / f"{n}.json" for n in ("sds-cert", "sds-ca", "ecds")}
        files["sds-cert"].write_text(json.dumps({"resources": [{
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "name": "kubernetes://certbound-as",
            "tls_certificate": {"certificate_chain": {"filename": str(stack.pki.dir / "server.pem")},
                                "private_key": {"filename": str(stack.pki.dir / "server.key")}}}]}))
        files["sds-ca"].write_text(json.dumps({"resources": [{
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "name": "kubernetes://certbound-as-cacert",
            "validation_context": {"trusted_ca": {"filename": str(ca_crt or stack.pki.ca_path)}}}]}))
        gateway = one(ISTIO_DIR / "gateway-self-signed-clients.yaml", "Gateway")
        [host] = gateway["spec"]["servers"][0]["hosts"]
        config = yaml.safe_load(Template((DATA / "gateway.envoy.yaml.tmpl").read_text()).substitute(
            ADMIN_PORT=self.admin_port, LISTEN_PORT=self.port, SNI_HOST="localhost", AS_PORT=stack.auth_server.port,
            SDS_CERT=files["sds-cert"], SDS_CA=files["sds-ca"]))
        [chain] = config["static_resources"]["listeners"][0]["filter_chains"]
        http_filters = chain["filters"][0]["typed_config"]["http_filters"]
        ecds = []
        for ef in envoyfilters:
            ef = yaml.safe_load(yaml.safe_dump(ef).replace(host, "localhost"))
            ecds += apply_envoyfilter(config, ef)
        if wasmplugin is not None:
            # Phase AUTHN: after istio.metadata_exchange and ext_authz (absent here), before jwt_authn.
            http_filter, ext = wasmplugin_as_istio_renders_it(wasmplugin)
            http_filters.insert(0, http_filter)
            ecds.append(ext)
        # istiod answers the filters' ECDS subscriptions over ADS; here a file does.
        for f in http_filters:
            source = f.get("config_discovery", {}).get("config_source")
            if source is not None:
                assert source.pop("ads") == {}
                source["path_config_source"] = {"path": str(files["ecds"])}
        self.http_filters = [f["name"] for f in http_filters]
        self.tls = chain["transport_socket"]["typed_config"]
        self.ecds = [as_the_agent_delivers_it(with_plugin_config(e, plugin_config_change)) for e in ecds]
        files["ecds"].write_text(json.dumps({"resources": self.ecds}))
        self.config_path = workdir / "envoy.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.proc = harness.Process(
            workdir.name,
            [str(harness.ENVOY_BIN), "-c", str(self.config_path), "--use-dynamic-base-id", "--concurrency", "1",
             "-l", "info", "--component-log-level", "wasm:debug"],
            workdir / "envoy.log",
        )

        def ready():
            with requests.get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                return r.status_code == 200

        # /ready waits for the listener to warm: its SDS secrets and the ECDS filter config.
        harness.wait_until("the Istio-shaped Envoy to be ready", ready, timeout=60, proc=self.proc)
        self.url = f"https://localhost:{self.port}"

    def post(self, stack, path, *, cert=None, data=None, auth=None, headers=None, timeout=15):
        test_id = uuid.uuid4().hex
        r = requests.post(self.url + path, data=data, auth=auth, cert=cert.pair if cert else None,
                          headers={"x-test-id": test_id, **(headers or {})}, verify=str(stack.pki.ca_path), timeout=timeout)
        r.test_id = test_id
        return r

    def stop(self):
        self.proc.stop()


def clients_only(*clients):
    def change(plugin_config):
        plugin_config["clients"] = list(clients)
    return change


@pytest.fixture(scope="module")
def tls_client(stack):
    """A CA-issued client certificate, for tls_client_auth."""
    return stack.pki.ca_signed("istio-tls-client", dn("istio-tls-client", "payments"))


@pytest.fixture(scope="module")
def gateways(stack, tls_client, tmp_path_factory):
    root = tmp_path_factory.mktemp("istio")
    good = harness.certbound_client("good-client", thumbprints=[x5t_of(stack.clients["good"])],
                                    upstream_secret=UPSTREAM_SECRETS["good-client"])
    allow_on_headers = one(ISTIO_DIR / "envoyfilter-allow-on-headers.yaml", "EnvoyFilter")
    self_signed = one(ISTIO_DIR / "gateway-self-signed-clients.yaml", "EnvoyFilter")
    wasmplugin = one(ISTIO_DIR / "wasmplugin.yaml", "WasmPlugin")

    def verified_chains(plugin_config):
        # The MUTUAL/OPTIONAL_MUTUAL listener verifies chains: tls_client_auth may use its certificate.
        plugin_config["clients"] = [{
            "client_id": "rsa-client", "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=istio-tls-client,OU=payments,O=certbound test",
            "upstream": {"client_secret": UPSTREAM_SECRETS["rsa-client"]}}]
        plugin_config["certificate_sources"]["connection_chain_verified"] = True

    started = {}
    try:
        # The README's Istio deployment for self-signed clients: both shipped EnvoyFilters.
        started["patched"] = IstioGateway(root / "gw-patched", stack, envoyfilters=[self_signed, allow_on_headers],
                                          plugin_config_change=clients_only(good))
        # wasmplugin.yaml as Istio renders it, without allow_on_headers_stop_iteration.
        started["wasmplugin"] = IstioGateway(root / "gw-wasmplugin", stack, envoyfilters=[self_signed],
                                             wasmplugin=wasmplugin, plugin_config_change=clients_only(good))
        # Without the self-signed patch: Istio's MUTUAL/OPTIONAL_MUTUAL, chains verified.
        started["verifying"] = IstioGateway(root / "gw-verifying", stack, envoyfilters=[allow_on_headers],
                                            plugin_config_change=verified_chains)
        # No self-signed patch, but the credential's ca.crt is the self-signed certificates themselves.
        pinned = root / "pinned-ca.crt"
        pinned.write_text(stack.clients["good"].pem)
        started["pinned"] = IstioGateway(root / "gw-pinned", stack, envoyfilters=[allow_on_headers],
                                         plugin_config_change=clients_only(good), ca_crt=pinned)
        yield started
    finally:
        harness.stop_all(list(started.values()))


def introspect(gw, stack, token):
    r = gw.post(stack, "/oauth2/introspect", data={"token": token}, auth=("demo-rs", "demo-rs-secret"))
    assert r.status_code == 200, r.text
    return r.json()


def test_patched_gateway_serves_the_token_flow_with_bound_tokens(stack, gateways):
    gw, good = gateways["patched"], stack.clients["good"]
    # The patches landed where Istio puts them.
    assert gw.http_filters[0] == "istio-system.certbound"
    assert gw.tls["common_tls_context"]["combined_validation_context"]["default_validation_context"] == {
        "trust_chain_verification": "ACCEPT_UNTRUSTED"}
    [ext] = gw.ecds
    assert ext["typed_config"]["config"]["allow_on_headers_stop_iteration"] is True
    r = gw.post(stack, "/oauth2/token", cert=good, data={"grant_type": "client_credentials", "client_id": "good-client"})
    assert r.status_code == 200, r.text
    assert stack.auth_server.saw(r.test_id)
    body = introspect(gw, stack, r.json()["access_token"])
    assert body["active"] is True and body["client_id"] == "good-client"
    assert body["cnf"] == {"x5t#S256": x5t_of(good)}


def test_gateway_xfcc_cannot_be_forged_by_a_client(stack, gateways):
    # SANITIZE_SET: a client without a certificate cannot bring its own XFCC (certbound trusts it always).
    good = stack.clients["good"]
    xfcc = f'Hash={x5t_of(good)};Cert="{requests.utils.quote(good.pem, safe="")}"'
    r = gateways["patched"].post(stack, "/oauth2/token", data={"grant_type": "client_credentials", "client_id": "good-client"},
                                 headers={"x-forwarded-client-cert": xfcc})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    assert not stack.auth_server.saw(r.test_id)


def test_wasmplugin_without_the_patch_holds_token_requests_for_ever(stack, gateways):
    gw, good = gateways["wasmplugin"], stack.clients["good"]
    assert gw.http_filters[0] == "extensions.istio.io/trafficextension/istio-system.certbound~istio-translated-wasmplugin"
    [ext] = gw.ecds
    assert "allow_on_headers_stop_iteration" not in ext["typed_config"]["config"]
    # The filter runs: what it decides on request headers alone is answered ...
    with requests.get(gw.url + "/api/x", verify=str(stack.pki.ca_path), timeout=10) as r:
        assert r.status_code == 401 and "a Bearer token is required" in r.text, r.text
    # ... but a token request never completes: headers held, body never delivered, no stream timeout.
    test_id = uuid.uuid4().hex
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(gw.url + "/oauth2/token", data={"grant_type": "client_credentials", "client_id": "good-client"},
                      cert=good.pair, headers={"x-test-id": test_id}, verify=str(stack.pki.ca_path), timeout=3)
    assert not stack.auth_server.saw(test_id)
    # Nor does the discovery document, whose response certbound holds to add its RFC 8705 fields.
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(gw.url + "/.well-known/openid-configuration", verify=str(stack.pki.ca_path), timeout=2)


def test_without_the_self_signed_patch_the_gateway_verifies_chains(stack, gateways, tls_client):
    gw = gateways["verifying"]
    assert gw.tls["common_tls_context"]["combined_validation_context"]["default_validation_context"] == {}
    # A self-signed certificate fails the handshake (OPTIONAL_MUTUAL verifies what it is shown) ...
    with pytest.raises(requests.exceptions.SSLError):
        gw.post(stack, "/oauth2/token", cert=stack.clients["good"], data={"grant_type": "client_credentials"})
    # ... a CA-issued one passes, and tls_client_auth works as shipped (connection_chain_verified: true).
    r = gw.post(stack, "/oauth2/token", cert=tls_client, data={"grant_type": "client_credentials", "client_id": "rsa-client"})
    assert r.status_code == 200, r.text
    assert introspect(gw, stack, r.json()["access_token"])["cnf"] == {"x5t#S256": x5t_of(tls_client)}
    # No certificate at all still connects (OPTIONAL_MUTUAL); certbound refuses the client.
    r = gw.post(stack, "/oauth2/token", data={"grant_type": "client_credentials", "client_id": "rsa-client"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text


def test_self_signed_certificates_as_ca_crt_need_no_patch(stack, gateways):
    # Istio only, no EnvoyFilter for TLS: the gateway accepts exactly the certificates in ca.crt.
    gw = gateways["pinned"]
    r = gw.post(stack, "/oauth2/token", cert=stack.clients["good"], data={"grant_type": "client_credentials", "client_id": "good-client"})
    assert r.status_code == 200, r.text
    assert introspect(gw, stack, r.json()["access_token"])["cnf"] == {"x5t#S256": x5t_of(stack.clients["good"])}
    with pytest.raises(requests.exceptions.SSLError):
        gw.post(stack, "/oauth2/token", cert=stack.clients["stranger"], data={"grant_type": "client_credentials"})
