"""Envoy Gateway: every manifest in envoy/gateway/ checked against Envoy Gateway's own CRD schemas
and the Gateway API's (tests/data/envoy-gateway/crd-schemas.yaml: Envoy Gateway 1.9.0, Gateway API
1.6.1, extracted from the two projects at those tags), then the Envoy configuration Envoy Gateway
1.9.0's translator makes of them (the HTTPS listener as the ClientTrafficPolicy shapes it, the
HTTPRoutes' routes and clusters, certbound's filter as the EnvoyExtensionPolicy renders it, the
EnvoyPatchPolicy applied to it) run in the real Envoy in front of the real AS, for the artifact
under test: the .wasm with extension-wasm.yaml, the dynamic module with
extension-dynamic-module.yaml.

The rendering follows github.com/envoyproxy/gateway at v1.9.0 (commit
39763b1c07ec30a5526fe70434a2cfe4181de642); each function names the files it mirrors. Stand-ins,
since this Envoy has no control plane: the listener's route configuration is inline instead of
RDS, secrets come from files instead of ADS (SDS), clusters are STATIC on loopback instead of EDS,
Envoy Gateway's Wasm HTTP server is a plain-HTTP thread here (its TLS and client certificate
left out), addresses and ports are loopback ones chosen at run time, Envoy Gateway's default access
log is left out, and the hostnames auth.example.com are served as localhost (the name on the
test server certificate)."""

import base64
import copy
import hashlib
import http.server
import json
import re
import subprocess
import threading
import uuid
from pathlib import Path

import jsonschema
import pytest
import requests
import yaml

import harness
from conftest import UPSTREAM_SECRETS, name as dn, x5t_of

GW_DIR = harness.ROOT / "envoy/gateway"
DATA = harness.ROOT / "tests/data/envoy-gateway"
SCHEMA_FILE = DATA / "crd-schemas.yaml"
CLI = harness.ROOT / "target/release/certbound"
EG_TAG, EG_COMMIT = "v1.9.0", "39763b1c07ec30a5526fe70434a2cfe4181de642"
GWAPI_TAG, GWAPI_COMMIT = "v1.6.1", "8bb74df00e56ec8f944d48c25e6c1c9c2f6848e3"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
MODULE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
HCM = "envoy.filters.network.http_connection_manager"
GWAPI_GROUP = "gateway.networking.k8s.io"
EG_GROUP = "gateway.envoyproxy.io"
# The files an operator applies for the artifact under test (README "Envoy Gateway").
EXTENSION_FILE = {"wasm": "extension-wasm.yaml", "module": "extension-dynamic-module.yaml"}[harness.ARTIFACT]
checked_once = harness.wasm_only("the manifests are checked once, in the .wasm pass")


def docs_of(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def one(path: str, kind: str, name: str | None = None) -> dict:
    [d] = [d for d in docs_of(GW_DIR / path) if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return copy.deepcopy(d)


def all_of(kind: str) -> list[dict]:
    return [copy.deepcopy(d) for p in sorted(GW_DIR.glob("*.yaml")) for d in docs_of(p) if d["kind"] == kind]


# ---------------------------------------------------------------- the CRD schemas

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
    with the API server's semantics (as tests/e2e/test_istio.py reads Istio's):
    - an object schema takes no field it does not declare (kubectl's default strict field validation
      refuses unknown fields; without it the API server drops them silently), unless it says
      `x-kubernetes-preserve-unknown-fields` (certbound's config, a JSON patch's value) or has
      `additionalProperties` (a map); an object with no `properties` at all is an empty struct;
    - `nullable: true` also admits null;
    - the other `x-kubernetes-*` extensions are left in place and jsonschema ignores keywords it does not
      know: `x-kubernetes-int-or-string` comes with its anyOf, list-type/map-keys only govern merges,
      and the CEL rules (`x-kubernetes-validations`) are NOT evaluated: eg_refuses() below checks what
      they and Envoy Gateway's translator would refuse in these manifests.
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
    if (node.get("type") == "object" or "properties" in node) and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields") and not node.get("x-kubernetes-embedded-resource"):
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
                **s.get("properties", {}),
                "apiVersion": {"enum": [api_version]},
                "kind": {"enum": [crd["kind"]]},
                "metadata": METADATA,
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
        return [f"<root>: Envoy Gateway {EG_TAG} serves no {doc.get('kind')} {doc.get('apiVersion')} (served: {served})"]
    errors = jsonschema.Draft4Validator(schema).iter_errors(doc)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)


def eg_refuses(docs: list[dict]) -> list[str]:
    """What Envoy Gateway 1.9.0 refuses in these manifests although the schemas admit them: the CEL rules of
    the CRDs that apply to these kinds of fields, and the checks of its translator
    (internal/gatewayapi/envoyextensionpolicy.go buildWasm/buildDynamicModules,
    clienttrafficpolicy.go buildListenerTLSParameters, internal/xds/translator/jsonpatch.go)."""
    out = []
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    def named(kind, name, ns):
        return [d for d in by_kind.get(kind, []) if d["metadata"]["name"] == name and d["metadata"].get("namespace") == ns]

    for d in docs:
        meta, spec, where = d["metadata"], d.get("spec", {}), f"{d['kind']} {d['metadata']['name']}"
        ns = meta.get("namespace")
        refs = spec.get("targetRefs", []) + ([spec["targetRef"]] if "targetRef" in spec else [])
        if d["kind"] in ("ClientTrafficPolicy", "EnvoyExtensionPolicy", "SecurityPolicy"):
            # CEL: exactly one of targetRef / targetRefs (or selectors); the group is Gateway API's.
            if ("targetRef" in spec) == ("targetRefs" in spec):
                out.append(f"{where}: either targetRef or targetRefs must be used")
        for ref in refs:
            if ref.get("group") != GWAPI_GROUP or not named(ref["kind"], ref["name"], ns):
                out.append(f"{where}: targets {ref.get('kind')} {ref.get('name')}, which is not among these manifests")
            elif ref.get("sectionName"):
                [target] = named(ref["kind"], ref["name"], ns)
                if ref["sectionName"] not in [lis["name"] for lis in target["spec"].get("listeners", [])]:
                    out.append(f"{where}: the Gateway has no listener {ref['sectionName']}")
        if d["kind"] == "EnvoyExtensionPolicy":
            for i, w in enumerate(spec.get("wasm", [])):
                code = w["code"]
                # CEL on WasmCodeSource: the union's member is the one its type names.
                if ("image" in code) != (code["type"] == "Image") or ("http" in code) != (code["type"] == "HTTP"):
                    out.append(f"{where}: wasm.{i}.code: the type does not name the source given")
            proxies = by_kind.get("EnvoyProxy", [])
            for i, m in enumerate(spec.get("dynamicModule", [])):
                # buildDynamicModules: the name must be registered in the Gateway's EnvoyProxy.
                if not any(m["name"] in [e["name"] for e in p["spec"].get("dynamicModules", [])] for p in proxies):
                    out.append(f"{where}: dynamicModule.{i}: {m['name']} is not registered in the EnvoyProxy dynamicModules")
        if d["kind"] == "EnvoyProxy":
            for i, e in enumerate(spec.get("dynamicModules", [])):
                src = e["source"]
                kind = src.get("type", "Local")
                if (kind == "Local") != ("local" in src) or (kind == "Remote") != ("remote" in src):
                    out.append(f"{where}: dynamicModules.{i}.source: the type does not name the source given")
        if d["kind"] == "ClientTrafficPolicy":
            cv = spec.get("tls", {}).get("clientValidation")
            if cv is not None:
                mode = cv.get("mode") or ("VerifyIfGiven" if cv.get("optional") else "RequireAndVerify")
                if mode in ("VerifyIfGiven", "RequireAndVerify") and not cv.get("caCertificateRefs"):
                    out.append(f"{where}: tls.clientValidation.mode {mode} requires caCertificateRefs")
        if d["kind"] == "HTTPRoute":
            for i, rule in enumerate(spec.get("rules", [])):
                for j, b in enumerate(rule.get("backendRefs", [])):
                    # CEL: a Service backendRef names its port.
                    if b.get("group", "") == "" and b.get("kind", "Service") == "Service" and "port" not in b:
                        out.append(f"{where}: rules.{i}.backendRefs.{j}: a Service needs a port")
                    if b.get("kind") == "Backend" and (b.get("group") != EG_GROUP or not named("Backend", b["name"], ns)):
                        out.append(f"{where}: rules.{i}.backendRefs.{j}: no Backend {b['name']}")
    return out


GW_DOCS = [(p, i, d) for p in sorted(GW_DIR.glob("*.yaml")) for i, d in enumerate(docs_of(p))]


@checked_once
def test_schemas_are_envoy_gateway_1_9_0_and_gateway_api_1_6_1_and_valid_json_schema():
    header = SCHEMA_FILE.read_text().split("\ngroup:", 1)[0]
    assert f"github.com/envoyproxy/gateway tag {EG_TAG}, commit {EG_COMMIT}" in header
    assert f"github.com/kubernetes-sigs/gateway-api tag {GWAPI_TAG}, commit {GWAPI_COMMIT}" in header
    assert {k for _, k in SCHEMAS} == {"Backend", "ClientTrafficPolicy", "EnvoyExtensionPolicy", "EnvoyPatchPolicy",
                                       "EnvoyProxy", "SecurityPolicy", "Gateway", "HTTPRoute"}
    for schema in SCHEMAS.values():
        jsonschema.Draft4Validator.check_schema(schema)


@checked_once
def test_every_file_says_when_to_use_it():
    files = sorted(GW_DIR.glob("*.yaml"))
    assert [p.name for p in files] == ["callouts.yaml", "clienttrafficpolicy.yaml", "extension-dynamic-module.yaml",
                                       "extension-wasm.yaml", "gateway.yaml"]
    for p in files:
        assert p.read_text().startswith("# WHEN TO USE: Envoy Gateway"), p.name


@checked_once
@pytest.mark.parametrize("path,index,doc", GW_DOCS, ids=[f"{p.name}#{i}-{d['kind']}" for p, i, d in GW_DOCS])
def test_every_manifest_matches_the_crd_schema(path, index, doc):
    assert schema_errors(doc) == []


@checked_once
def test_the_manifests_hold_together_as_envoy_gateway_checks_them():
    # Each extension file is applied with the others, one at a time.
    common = [d for p in ("gateway.yaml", "clienttrafficpolicy.yaml", "callouts.yaml") for d in docs_of(GW_DIR / p)]
    for ext in ("extension-wasm.yaml", "extension-dynamic-module.yaml"):
        assert eg_refuses(common + docs_of(GW_DIR / ext)) == [], ext


def mutated(path: str, kind: str, change, name: str | None = None) -> dict:
    doc = one(path, kind, name)
    change(doc)
    return doc


BAD = {
    # What Envoy Gateway's API cannot say: certbound's Wasm option, Envoy's trust_chain_verification.
    "wasm-has-no-allow-on-headers-field": (
        mutated("extension-wasm.yaml", "EnvoyExtensionPolicy", lambda d: d["spec"]["wasm"][0].update(allowOnHeadersStopIteration=True)),
        "spec.wasm.0: Additional properties are not allowed ('allowOnHeadersStopIteration' was unexpected)"),
    "wasm-has-no-failure-policy-field": (
        mutated("extension-wasm.yaml", "EnvoyExtensionPolicy", lambda d: d["spec"]["wasm"][0].update(failurePolicy="FAIL_RELOAD")),
        "spec.wasm.0: Additional properties are not allowed ('failurePolicy' was unexpected)"),
    "wasm-unknown-code-type": (
        mutated("extension-wasm.yaml", "EnvoyExtensionPolicy", lambda d: d["spec"]["wasm"][0]["code"].update(type="OCI")),
        "spec.wasm.0.code.type: 'OCI' is not one of"),
    "wasm-image-without-url": (
        mutated("extension-wasm.yaml", "EnvoyExtensionPolicy", lambda d: d["spec"]["wasm"][0]["code"]["image"].pop("url")),
        "spec.wasm.0.code.image: 'url' is a required property"),
    "eep-unknown-metadata-field": (
        mutated("extension-wasm.yaml", "EnvoyExtensionPolicy", lambda d: d["metadata"].update(namepsace="x")),
        "metadata: Additional properties are not allowed ('namepsace' was unexpected)"),
    "patch-unknown-op": (
        mutated("extension-wasm.yaml", "EnvoyPatchPolicy", lambda d: d["spec"]["jsonPatches"][0]["operation"].update(op="merge")),
        "spec.jsonPatches.0.operation.op: 'merge' is not one of"),
    "patch-unknown-resource-type": (
        mutated("extension-wasm.yaml", "EnvoyPatchPolicy",
                lambda d: d["spec"]["jsonPatches"][0].update(type="type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")),
        "spec.jsonPatches.0.type: 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm' is not one of"),
    "module-unknown-field": (
        mutated("extension-dynamic-module.yaml", "EnvoyExtensionPolicy", lambda d: d["spec"]["dynamicModule"][0].update(path="/x.so")),
        "spec.dynamicModule.0: Additional properties are not allowed ('path' was unexpected)"),
    "module-bad-registry-name": (
        mutated("extension-dynamic-module.yaml", "EnvoyProxy", lambda d: d["spec"]["dynamicModules"][0].update(name="Certbound_Module")),
        "spec.dynamicModules.0.name: 'Certbound_Module' does not match"),
    "module-unknown-source-type": (
        mutated("extension-dynamic-module.yaml", "EnvoyProxy", lambda d: d["spec"]["dynamicModules"][0]["source"].update(type="File")),
        "spec.dynamicModules.0.source.type: 'File' is not one of"),
    "envoyproxy-unknown-container-field": (
        mutated("extension-dynamic-module.yaml", "EnvoyProxy",
                lambda d: d["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"].update(imageTag="v1.40")),
        "spec.provider.kubernetes.envoyDeployment.container: Additional properties are not allowed ('imageTag' was unexpected)"),
    "ctp-has-no-trust-chain-verification-field": (
        mutated("clienttrafficpolicy.yaml", "ClientTrafficPolicy",
                lambda d: d["spec"]["tls"]["clientValidation"].update(trustChainVerification="ACCEPT_UNTRUSTED")),
        "spec.tls.clientValidation: Additional properties are not allowed ('trustChainVerification' was unexpected)"),
    "ctp-unknown-client-validation-mode": (
        mutated("clienttrafficpolicy.yaml", "ClientTrafficPolicy", lambda d: d["spec"]["tls"]["clientValidation"].update(mode="Optional")),
        "spec.tls.clientValidation.mode: 'Optional' is not one of"),
    "ctp-has-no-normalize-path-field": (
        mutated("clienttrafficpolicy.yaml", "ClientTrafficPolicy", lambda d: d["spec"]["path"].update(normalizePath=True)),
        "spec.path: Additional properties are not allowed ('normalizePath' was unexpected)"),
    "ctp-unknown-escaped-slashes-action": (
        mutated("clienttrafficpolicy.yaml", "ClientTrafficPolicy", lambda d: d["spec"]["path"].update(escapedSlashesAction="REJECT_REQUEST")),
        "spec.path.escapedSlashesAction: 'REJECT_REQUEST' is not one of"),
    "ctp-unknown-xfcc-mode": (
        mutated("clienttrafficpolicy.yaml", "ClientTrafficPolicy", lambda d: d["spec"]["headers"]["xForwardedClientCert"].update(mode="SANITIZE")),
        "spec.headers.xForwardedClientCert.mode: 'SANITIZE' is not one of"),
    "ctp-tls-version-number": (
        mutated("clienttrafficpolicy.yaml", "ClientTrafficPolicy", lambda d: d["spec"]["tls"].update(minVersion=1.2)),
        "spec.tls.minVersion: 1.2 is not one of"),
    "backend-endpoint-typo": (
        mutated("callouts.yaml", "Backend", lambda d: d["spec"]["endpoints"][0].update(fqdn={"host": "etcd", "port": 2379}),
                "certbound-etcd"),
        "spec.endpoints.0.fqdn: 'hostname' is a required property"),
    "securitypolicy-unknown-action": (
        mutated("callouts.yaml", "SecurityPolicy", lambda d: d["spec"]["authorization"].update(defaultAction="Reject")),
        "spec.authorization.defaultAction: 'Reject' is not one of"),
    "httproute-unknown-path-type": (
        mutated("gateway.yaml", "HTTPRoute", lambda d: d["spec"]["rules"][0]["matches"][0]["path"].update(type="Prefix")),
        "spec.rules.0.matches.0.path.type: 'Prefix' is not one of"),
    "gateway-listener-without-protocol": (
        mutated("gateway.yaml", "Gateway", lambda d: d["spec"]["listeners"][0].pop("protocol")),
        "spec.listeners.0: 'protocol' is a required property"),
    "gateway-v1alpha1-not-served": (
        mutated("gateway.yaml", "Gateway", lambda d: d.update(apiVersion="gateway.networking.k8s.io/v1alpha1")),
        "<root>: Envoy Gateway v1.9.0 serves no Gateway gateway.networking.k8s.io/v1alpha1"),
}


@checked_once
@pytest.mark.parametrize("case", BAD)
def test_schema_validation_reports_wrong_fields(case):
    doc, expected = BAD[case]
    errors = schema_errors(doc)
    assert any(e.startswith(expected) for e in errors), errors


@checked_once
def test_schema_keeps_what_kubernetes_allows():
    # Free-form certbound config and patch values, the status the API server writes, an attached EnvoyProxy.
    eep = mutated("extension-wasm.yaml", "EnvoyExtensionPolicy", lambda d: d["spec"]["wasm"][0]["config"].update(anything={"x": [1]}))
    eep["status"] = {"ancestors": []}
    assert schema_errors(eep) == []
    epp = mutated("extension-wasm.yaml", "EnvoyPatchPolicy", lambda d: d["spec"]["jsonPatches"][0]["operation"].update(value={"a": [1]}))
    assert schema_errors(epp) == []
    # What extension-dynamic-module.yaml says to add to the Gateway.
    gw = mutated("gateway.yaml", "Gateway", lambda d: d["spec"].update(infrastructure={"parametersRef": {
        "group": EG_GROUP, "kind": "EnvoyProxy", "name": "certbound-module"}}))
    assert schema_errors(gw) == []


@checked_once
def test_what_the_schemas_admit_but_envoy_gateway_refuses_is_reported():
    common = [d for p in ("gateway.yaml", "callouts.yaml") for d in docs_of(GW_DIR / p)]
    optional = mutated("clienttrafficpolicy.yaml", "ClientTrafficPolicy",
                       lambda d: d["spec"]["tls"].update(clientValidation={"optional": True}))
    assert schema_errors(optional) == []
    assert eg_refuses(common + [optional]) == [
        "ClientTrafficPolicy certbound: tls.clientValidation.mode VerifyIfGiven requires caCertificateRefs"]
    unregistered = mutated("extension-dynamic-module.yaml", "EnvoyExtensionPolicy",
                           lambda d: d["spec"]["dynamicModule"][0].update(name="certbound-v2"))
    assert eg_refuses(common + [one("extension-dynamic-module.yaml", "EnvoyProxy"), unregistered]) == [
        "EnvoyExtensionPolicy certbound: dynamicModule.0: certbound-v2 is not registered in the EnvoyProxy dynamicModules"]
    wrong_listener = mutated("clienttrafficpolicy.yaml", "ClientTrafficPolicy", lambda d: d["spec"]["targetRefs"][0].update(sectionName="http"))
    assert eg_refuses(common + [wrong_listener]) == ["ClientTrafficPolicy certbound: the Gateway has no listener http"]


# ---------------------------------------------------------------- certbound's configuration in the policies

def plugin_config(eep: dict) -> dict:
    """certbound's JSON configuration in an EnvoyExtensionPolicy (wasm or dynamic module)."""
    [entry] = eep["spec"].get("wasm", []) + eep["spec"].get("dynamicModule", [])
    return entry["config"]


def mtls_terminating_config() -> dict:
    docs = docs_of(harness.ROOT / "envoy/mtls-terminating.yaml")
    [config] = [f["typed_config"]["config"]["configuration"]["value"]
                for lis in docs[0]["static_resources"]["listeners"] for fc in lis["filter_chains"]
                for f in fc["filters"][0]["typed_config"]["http_filters"] if f["name"] == "certbound"]
    return json.loads(config)


@checked_once
def test_both_policies_carry_mtls_terminatings_configuration_with_the_gateway_api_prefix():
    wasm = plugin_config(one("extension-wasm.yaml", "EnvoyExtensionPolicy"))
    module = plugin_config(one("extension-dynamic-module.yaml", "EnvoyExtensionPolicy"))
    assert wasm == module
    expected = mtls_terminating_config()
    # Gateway API path prefixes match whole segments: the API rule's "/api" also routes "/api" itself.
    assert expected["protected_routes"][0]["path_prefix"] == "/api/"
    expected["protected_routes"][0]["path_prefix"] = "/api"
    assert wasm == expected
    r = subprocess.run([str(CLI), "check-config", "-"], input=json.dumps(wasm).encode(), capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()


@checked_once
def test_every_route_to_the_api_is_under_a_protected_prefix():
    """Each API route Envoy Gateway renders (path_separated_prefix, internal/xds/translator/route.go
    buildPathMatch) is covered by certbound's string prefixes, whatever the client appends."""
    [route] = [r for r in all_of("HTTPRoute") if r["metadata"]["name"] == "certbound-as"]
    prefixes = [p["path_prefix"] for p in plugin_config(one("extension-wasm.yaml", "EnvoyExtensionPolicy"))["protected_routes"]]
    api_rules = [rule for rule in route["spec"]["rules"] if rule["backendRefs"][0]["name"] == "api"]
    assert api_rules
    for rule in api_rules:
        for m in rule["matches"]:
            match = route_match(m["path"])
            assert "path_separated_prefix" in match, match
            # The route takes P and P/...: both start with P, so a prefix of P covers them.
            assert any(match["path_separated_prefix"].lower().startswith(p.lower()) for p in prefixes), (match, prefixes)


@checked_once
def test_the_callouts_comment_names_the_clusters_envoy_gateway_makes():
    text = (GW_DIR / "callouts.yaml").read_text()
    block = text.split(") then says", 1)[1].split("\n# The names change", 1)[0]
    fragment = json.loads("{" + "".join(l[1:] for l in block.splitlines() if l.startswith("#   ")) + "}")
    clusters = callout_clusters()
    assert fragment == {
        "store": {"backend": "etcd", "etcd": {"cluster": clusters["certbound-etcd"], "authority": "etcd.certbound.svc.cluster.local:2379"}},
        "jwks_fetch": {"cluster": clusters["certbound-jwks"]},
    }
    assert clusters == {"certbound-etcd": "httproute/certbound/certbound-callouts/rule/0",
                        "certbound-jwks": "httproute/certbound/certbound-callouts/rule/1"}


# ---------------------------------------------------------------- Envoy Gateway's translation

def route_match(path: dict) -> dict:
    """internal/xds/translator/route.go buildPathMatch: PathPrefix "/" stays a prefix; any other
    PathPrefix loses its trailing slash and becomes path_separated_prefix."""
    if path["type"] == "PathPrefix":
        return {"prefix": "/"} if path["value"] == "/" else {"path_separated_prefix": path["value"].rstrip("/")}
    assert path["type"] == "Exact", path
    return {"path": path["value"]}


def rule_cluster(route: dict, index: int) -> str:
    """internal/gatewayapi/helpers.go irRouteDestinationName: one cluster per rule."""
    return f"httproute/{route['metadata']['namespace']}/{route['metadata']['name']}/rule/{index}"


def callout_clusters() -> dict[str, str]:
    """Backend name -> the cluster certbound's configuration names (callouts.yaml)."""
    [route] = [r for r in all_of("HTTPRoute") if r["metadata"]["name"] == "certbound-callouts"]
    return {rule["backendRefs"][0]["name"]: rule_cluster(route, i) for i, rule in enumerate(route["spec"]["rules"])}


def config_name(policy: dict, what: str, index: int) -> str:
    """internal/gatewayapi/helpers.go irConfigName + envoyextensionpolicy.go irConfigNameForWasm /
    irConfigNameForDynamicModule: <kind>/<namespace>/<name>/<what>/<index>."""
    m = policy["metadata"]
    return f"{policy['kind'].lower()}/{m['namespace']}/{m['name']}/{what}/{index}"


def listener_name(gateway: dict, listener: str) -> str:
    """internal/gatewayapi/helpers.go irListenerName; internal/xds/translator/listener.go xdsListenerName
    without the XDSNameSchemeV2 runtime flag (off by default in 1.9.0)."""
    return f"{gateway['metadata']['namespace']}/{gateway['metadata']['name']}/{listener}"


def eg_json(config: dict) -> str:
    """apiextensionsv1.JSON.Raw as Envoy Gateway reads it back from the API server: compact, keys sorted."""
    return json.dumps(config, separators=(",", ":"), sort_keys=True)


def wasm_filter(eep: dict, serving_url: str, sha256: str) -> dict:
    """internal/xds/translator/wasm.go buildHCMWasmFilter / wasmConfig (and envoyextensionpolicy.go buildWasm):
    disabled in the connection manager, enabled per route; the code is fetched from Envoy Gateway's Wasm
    HTTP server (wasm_cluster) by its sha256; fail_open from failOpen (false: not written)."""
    [w] = eep["spec"]["wasm"]
    name = config_name(eep, "wasm", 0)
    config = {
        "name": w.get("name", name),
        "vm_config": {
            "vm_id": name,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"remote": {
                "http_uri": {"uri": serving_url, "cluster": "wasm_cluster", "timeout": "10s"},
                "sha256": sha256,
                "retry_policy": {"num_retries": 10, "retry_back_off": {"base_interval": "1s", "max_interval": "30s"}},
            }},
        },
        "configuration": {"@type": STRING_VALUE, "value": eg_json(w["config"])},
    }
    if w.get("failOpen"):
        config["fail_open"] = True
    if "rootID" in w:
        config["root_id"] = w["rootID"]
    return {"name": f"envoy.filters.http.wasm/{name}", "disabled": True, "typed_config": {"@type": WASM_TYPE, "config": config}}


def dynamic_module_filter(eep: dict, envoyproxy: dict, module_path: Path) -> dict:
    """internal/xds/translator/dynamicmodule.go buildHCMDynamicModuleFilter / dynamicModuleConfig (and
    envoyextensionpolicy.go buildDynamicModules: the module comes from the EnvoyProxy's registry)."""
    [m] = eep["spec"]["dynamicModule"]
    [entry] = [e for e in envoyproxy["spec"]["dynamicModules"] if e["name"] == m["name"]]
    assert entry["source"].get("type", "Local") == "Local"
    # The path inside the Envoy image; here the built module.
    assert entry["source"]["local"]["path"] == "/etc/certbound/libcertbound_module.so"
    dm_config = {"module": {"local": {"filename": str(module_path)}}}
    if entry.get("doNotClose"):
        dm_config["do_not_close"] = True
    if entry.get("loadGlobally"):
        dm_config["load_globally"] = True
    typed = {"@type": MODULE_TYPE, "dynamic_module_config": dm_config, "filter_name": m.get("filterName", ""),
             "filter_config": {"@type": STRING_VALUE, "value": eg_json(m["config"])}}
    if m.get("terminalFilter"):
        typed["terminal_filter"] = True
    return {"name": f"envoy.filters.http.dynamic_modules/{config_name(eep, 'dynamic-module', 0)}", "disabled": True,
            "typed_config": typed}


# internal/xds/translator/httpfilters.go newOrderedHTTPFilter: wasm 200+i, dynamic modules 250+i, rbac 301, router last.
FILTER_ORDER = {"envoy.filters.http.wasm": 200, "envoy.filters.http.dynamic_modules": 250, "envoy.filters.http.rbac": 301,
                "envoy.filters.http.router": 310}


def tls_context(ctp: dict, files: dict[str, Path]) -> dict:
    """internal/gatewayapi/clienttrafficpolicy.go buildListenerTLSParameters (+ helpers.go
    convertClientValidationModeType) and internal/xds/translator/listener.go buildXdsDownstreamTLSSocket /
    setTLSValidationContext / setDownstreamTLSSessionSettings."""
    tls = ctp["spec"].get("tls", {})
    versions = {"1.0": "TLSv1_0", "1.1": "TLSv1_1", "1.2": "TLSv1_2", "1.3": "TLSv1_3"}
    common = {
        "tls_params": {"tls_minimum_protocol_version": versions[tls.get("minVersion", "1.2")],
                       "tls_maximum_protocol_version": versions[tls.get("maxVersion", "1.3")]},
        "alpn_protocols": tls.get("alpnProtocols", ["h2", "http/1.1"]),
        # The Gateway listener's certificateRefs, as an SDS secret named <namespace>/<secret>.
        "tls_certificate_sds_secret_configs": [{"name": "certbound/certbound-tls", "sds_config": sds(files["cert"])}],
    }
    out = {"common_tls_context": common}
    cv = tls.get("clientValidation")
    if cv is not None:
        mode = cv.get("mode") or ("VerifyIfGiven" if cv.get("optional") else "RequireAndVerify")
        require, accept_untrusted = {"Request": (False, True), "RequireAny": (True, True), "VerifyIfGiven": (False, False),
                                     "RequireAndVerify": (True, False)}[mode]
        out["require_client_certificate"] = require
        validation = {"trust_chain_verification": "ACCEPT_UNTRUSTED"} if accept_untrusted else {}
        if not cv.get("caCertificateRefs"):
            common["validation_context"] = validation
        else:
            ca = {"name": f"{ctp['metadata']['namespace']}/{ctp['metadata']['name']}/ca.crt", "sds_config": sds(files["ca"])}
            if validation:
                common["combined_validation_context"] = {"default_validation_context": validation,
                                                         "validation_context_sds_secret_config": ca}
            else:
                common["validation_context_sds_secret_config"] = ca
    out["disable_stateful_session_resumption"] = True
    out["disable_stateless_session_resumption"] = True
    return out


def sds(path: Path) -> dict:
    # Envoy Gateway: {ads: {}, initial_fetch_timeout: 0s, resource_api_version: V3}; here a file.
    return {"path_config_source": {"path": str(path)}, "resource_api_version": "V3"}


def connection_manager(ctp: dict, http_filters: list[dict], route_config: dict) -> dict:
    """internal/xds/translator/listener.go addHCMToXDSListener, with the ClientTrafficPolicy's path and
    header settings (clienttrafficpolicy.go translatePathSettings; listener.go translateEscapePath,
    buildForwardClientCertDetailsAction); no clientIPDetection: use_remote_address true."""
    spec = ctp["spec"]
    path = spec.get("path", {})
    escaped = {"KeepUnchanged": "KEEP_UNCHANGED", "RejectRequest": "REJECT_REQUEST",
               "UnescapeAndRedirect": "UNESCAPE_AND_REDIRECT", "UnescapeAndForward": "UNESCAPE_AND_FORWARD"}
    xfcc = {"Sanitize": "SANITIZE", "ForwardOnly": "FORWARD_ONLY", "AppendForward": "APPEND_FORWARD",
            "SanitizeSet": "SANITIZE_SET", "AlwaysForwardOnly": "ALWAYS_FORWARD_ONLY"}
    assert "clientIPDetection" not in spec
    xfcc_settings = spec.get("headers", {}).get("xForwardedClientCert", {})
    forward = xfcc[xfcc_settings.get("mode", "Sanitize")]
    filters = sorted(http_filters, key=lambda f: (FILTER_ORDER[f["name"].split("/")[0]], f["name"]))
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
        "http2_protocol_options": {"initial_connection_window_size": 1048576, "initial_stream_window_size": 65536,
                                   "max_concurrent_streams": 100},
        "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", "suppress_envoy_headers": True}}],
        "merge_slashes": not path.get("disableMergeSlashes", False),
        "normalize_path": True,
        "path_with_escaped_slashes_action": escaped[path.get("escapedSlashesAction", "UnescapeAndRedirect")],
        "forward_client_cert_details": forward,
        # RDS in Envoy Gateway (route config named as the listener); inline here.
        "route_config": route_config,
        "server_header_transformation": "PASS_THROUGH",
        "stat_prefix": "https-10443",
        "use_remote_address": True,
    }
    # listener.go buildSetCurrentClientCertDetails: what SANITIZE_SET / APPEND_FORWARD write into XFCC.
    details = {"Cert": "cert", "Chain": "chain", "DNS": "dns", "Subject": "subject", "URI": "uri"}
    if forward in ("SANITIZE_SET", "APPEND_FORWARD") and xfcc_settings.get("certDetailsToAdd"):
        hcm["set_current_client_cert_details"] = {details[d]: True for d in xfcc_settings["certDetailsToAdd"]}
    return hcm


def route_configuration(gateway: dict, routes: list[dict], enabled_filters: list[str], denied_routes: set[str],
                        hosts: dict[str, str]) -> dict:
    """internal/gatewayapi/route.go (one route per rule, match and hostname; clusters per rule) and
    internal/xds/translator/translator.go (one virtual host per hostname, ignore_port_in_host_matching),
    route.go buildXdsRoute; the EnvoyExtensionPolicy's filters enabled on every route of its Gateway
    (wasm.go / dynamicmodule.go patchRoute: FilterConfig with an empty config); a SecurityPolicy's
    authorization as RBACPerRoute (authorization.go: defaultAction Deny, no rules: DENY on no match)."""
    lis = listener_name(gateway, "https")
    vhosts: dict[str, dict] = {}
    entries = []
    for route in routes:
        for host in route["spec"]["hostnames"]:
            for i, rule in enumerate(route["spec"]["rules"]):
                for j, m in enumerate(rule["matches"]):
                    entries.append((host, route, i, j, route_match(m["path"])))
    # Gateway API precedence for these matches: the longest prefix first.
    entries.sort(key=lambda e: -len(next(iter(e[4].values()))))
    for host, route, i, j, match in entries:
        served = hosts.get(host, host)
        underscored = host.replace(".", "_")
        vh = vhosts.setdefault(host, {"name": f"{lis}/{underscored}", "domains": [served], "routes": []})
        per_filter = {f: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}} for f in enabled_filters}
        if route["metadata"]["name"] in denied_routes:
            per_filter["envoy.filters.http.rbac"] = {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
                "rbac": {"matcher": {"on_no_match": {"action": {"name": "default", "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.rbac.v3.Action", "action": "DENY", "name": "DENY"}}}}}}
        vh["routes"].append({
            "match": match,
            "name": f"{rule_cluster(route, i)}/match/{j}/{underscored}",
            "route": {"cluster": rule_cluster(route, i), "upgrade_configs": [{"upgrade_type": "websocket"}]},
            "typed_per_filter_config": per_filter,
        })
    return {"name": lis, "ignore_port_in_host_matching": True, "virtual_hosts": list(vhosts.values())}


def static_cluster(name: str, port: int) -> dict:
    # Envoy Gateway: EDS clusters (least request, V4_PREFERRED, 10 s connect timeout); here STATIC on loopback.
    return {"name": name, "type": "STATIC", "connect_timeout": "10s", "per_connection_buffer_limit_bytes": 32768,
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


# ---------------------------------------------------------------- EnvoyPatchPolicy, as Envoy Gateway applies it

def jsonpath_pointers(doc, expr: str) -> list[str]:
    """JSON pointers of what a JSONPath selects, for the subset envoy/gateway uses ($, .name, ..name, [*],
    [?(@.name=='v')]), with ojg's semantics (internal/utils/jsonpatch/jsonpathtopointer.go
    ConvertPathToPointers)."""
    steps, rest = [], expr[1:] if expr.startswith("$") else expr
    if rest and rest[0] not in ".[":
        rest = "." + rest
    while rest:
        if m := re.match(r"\.\.([A-Za-z_]\w*)", rest):
            steps.append(("descendant", m.group(1)))
        elif m := re.match(r"\.([A-Za-z_]\w*)", rest):
            steps.append(("child", m.group(1)))
        elif m := re.match(r"\[\*\]", rest):
            steps.append(("all", None))
        elif m := re.match(r"\[\?\(@\.([A-Za-z_]\w*)\s*==\s*'([^']*)'\)\]", rest):
            steps.append(("filter", (m.group(1), m.group(2))))
        else:
            raise AssertionError(f"JSONPath not simulated: {rest!r} of {expr!r}")
        rest = rest[m.end():]
    found = [((), doc)]
    for kind, arg in steps:
        nxt = []
        for path, node in found:
            if kind == "child" and isinstance(node, dict) and arg in node:
                nxt.append((path + (arg,), node[arg]))
            elif kind == "descendant":
                stack = [(path, node)]
                while stack:
                    p, n = stack.pop(0)
                    if isinstance(n, dict):
                        if arg in n:
                            nxt.append((p + (arg,), n[arg]))
                        stack += [(p + (k,), v) for k, v in n.items()]
                    elif isinstance(n, list):
                        stack += [(p + (i,), v) for i, v in enumerate(n)]
            elif kind in ("all", "filter"):
                items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
                for k, v in items:
                    if kind == "all" or (isinstance(v, dict) and v.get(arg[0]) == arg[1]):
                        nxt.append((path + (k,), v))
        found = nxt
    return ["".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path) for path, _ in found]


def json_patch_add(doc, pointer: str, value):
    """RFC 6902 add with evanphx/json-patch's EnsurePathExistsOnAdd (internal/utils/jsonpatch/patch.go)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node = doc
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    last = parts[-1]
    if isinstance(node, list):
        node.insert(len(node) if last == "-" else int(last), copy.deepcopy(value))
    else:
        node[last] = copy.deepcopy(value)


def apply_envoypatchpolicy(listener: dict, epp: dict, gateway: dict) -> list[str]:
    """internal/xds/translator/jsonpatch.go processJSONPatches for Listener patches (the listener as
    protojson with proto field names); returns the pointers patched. A patch whose resource or JSONPath
    finds nothing would leave the policy not Programmed: here it fails the test."""
    assert epp["spec"]["type"] == "JSONPatch"
    ref = epp["spec"]["targetRef"]
    assert (ref["group"], ref["kind"], ref["name"]) == (GWAPI_GROUP, "Gateway", gateway["metadata"]["name"])
    assert epp["metadata"]["namespace"] == gateway["metadata"]["namespace"]
    patched = []
    for p in epp["spec"]["jsonPatches"]:
        assert p["type"] == LISTENER_TYPE and p["name"] == listener["name"], p
        op = p["operation"]
        assert op["op"] == "add", op
        pointers = jsonpath_pointers(listener, op["jsonPath"]) if "jsonPath" in op else [""]
        assert pointers, f"the jsonPath finds nothing: {op['jsonPath']}"
        for ptr in pointers:
            # jsonpathtopointer.go concat: the pointer, then path.
            target = ptr.rstrip("/") + "/" + op.get("path", "").lstrip("/") if op.get("path") else ptr
            json_patch_add(listener, target, op["value"])
            patched.append(target)
    return patched


# ---------------------------------------------------------------- the real Envoy, configured as Envoy Gateway does

class WasmServer:
    """Envoy Gateway's Wasm HTTP server (internal/wasm/httpserver.go): serves the module it pulled from the
    OCI image at an unguessable path; Envoy verifies it by sha256."""

    def __init__(self, wasm: Path, image_url: str):
        body = wasm.read_bytes()
        self.sha256 = hashlib.sha256(body).hexdigest()
        self.path = base64.urlsafe_b64encode(hashlib.sha256(f"oci://{image_url}".encode() + b"salt").digest()).decode() + ".wasm"
        path = self.path

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                ok = self.path == "/" + path
                self.send_response(200 if ok else 404)
                self.send_header("content-length", str(len(body) if ok else 0))
                self.end_headers()
                if ok:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"https://envoy-gateway.envoy-gateway-system.svc.cluster.local:18002/{self.path}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class JwksServer:
    """The host of the clients' jwks_uri (callouts.yaml's certbound-jwks Backend): one JWK Set whose key
    carries the client's certificate in x5c (RFC 8705 §2.2), whatever the path."""

    def __init__(self, cert: harness.Cert):
        body = json.dumps({"keys": [{"kty": "EC", "use": "sig", "x5c": [base64.b64encode(cert.der()).decode()]}]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class EgGateway:
    """The real Envoy, configured as Envoy Gateway 1.9.0 configures the Gateway's Envoy for envoy/gateway/:
    gateway.yaml's listener and routes, the ClientTrafficPolicy, the artifact's EnvoyExtensionPolicy (and,
    for the .wasm, its EnvoyPatchPolicy unless patch=False), and optionally callouts.yaml. Started at once;
    wait() waits until it serves."""

    def __init__(self, workdir: Path, stack, *, plugin_change=None, ctp_change=None, patch=True, callouts=None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.admin_port = harness.free_port(), harness.free_port()
        self.stopped = []
        gateway, as_route = one("gateway.yaml", "Gateway"), one("gateway.yaml", "HTTPRoute")
        ctp = one("clienttrafficpolicy.yaml", "ClientTrafficPolicy")
        if ctp_change:
            ctp_change(ctp)
        eep = one(EXTENSION_FILE, "EnvoyExtensionPolicy")
        [entry] = eep["spec"].get("wasm", []) + eep["spec"].get("dynamicModule", [])
        if plugin_change:
            plugin_change(entry["config"])
        files = {n: workdir / f"{n}.json" for n in ("cert", "ca")}
        files["cert"].write_text(json.dumps({"resources": [{
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", "name": "certbound/certbound-tls",
            "tls_certificate": {"certificate_chain": {"filename": str(stack.pki.dir / "server.pem")},
                                "private_key": {"filename": str(stack.pki.dir / "server.key")}}}]}))
        files["ca"].write_text(json.dumps({"resources": [{
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "name": f"certbound/{ctp['metadata']['name']}/ca.crt",
            # caCertificateRefs: the test CA, which issues the tls_client_auth certificates.
            "validation_context": {"trusted_ca": {"filename": str(stack.pki.ca_path)}}}]}))
        clusters = {rule_cluster(as_route, i): {"api": stack.api.port, "authorization-server": stack.auth_server.port}[
            rule["backendRefs"][0]["name"]] for i, rule in enumerate(as_route["spec"]["rules"])}
        routes, denied = [as_route], set()
        if harness.ARTIFACT == "wasm":
            self.wasm_server = WasmServer(harness.WASM, entry["code"]["image"]["url"])
            self.stopped.append(self.wasm_server)
            certbound = wasm_filter(eep, self.wasm_server.url, self.wasm_server.sha256)
            clusters["wasm_cluster"] = self.wasm_server.port
        else:
            certbound = dynamic_module_filter(eep, one("extension-dynamic-module.yaml", "EnvoyProxy"), harness.MODULE)
        http_filters = [certbound]
        if callouts is not None:
            route = one("callouts.yaml", "HTTPRoute")
            [policy] = all_of("SecurityPolicy")
            assert policy["spec"]["targetRefs"] == [{"group": GWAPI_GROUP, "kind": "HTTPRoute", "name": route["metadata"]["name"]}]
            assert policy["spec"]["authorization"] == {"defaultAction": "Deny"}
            routes.append(route)
            denied.add(route["metadata"]["name"])
            names = callout_clusters()
            clusters.update({names[backend]: port for backend, port in callouts.items()})
            # internal/xds/translator/authorization.go: the RBAC filter, empty, in the connection manager.
            http_filters.append({"name": "envoy.filters.http.rbac", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"}})
        self.certbound_filter = certbound["name"]
        route_config = route_configuration(gateway, routes, [certbound["name"]], denied, {"auth.example.com": "localhost"})
        listener = {
            "name": listener_name(gateway, "https"),
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.port}},
            "filter_chains": [{
                "name": listener_name(gateway, "https"),
                "filters": [{"name": HCM, "typed_config": connection_manager(ctp, http_filters, route_config)}],
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    **tls_context(ctp, files)}},
            }],
            "per_connection_buffer_limit_bytes": 32768,
            "max_connections_to_accept_per_socket_event": 1,
        }
        self.patched = []
        if harness.ARTIFACT == "wasm" and patch:
            self.patched = apply_envoypatchpolicy(listener, one("extension-wasm.yaml", "EnvoyPatchPolicy"), gateway)
        self.listener = listener
        config = {
            # internal/infrastructure/common/proxy_args.go: --service-cluster <infra name> --service-node <pod name>.
            "node": {"id": "envoy-certbound-certbound-0", "cluster": "certbound/certbound"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}},
            "static_resources": {"listeners": [listener], "clusters": [static_cluster(n, p) for n, p in clusters.items()]},
        }
        self.config_path = workdir / "envoy.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.proc = harness.Process(
            workdir.name,
            [str(harness.ENVOY_BIN), "-c", str(self.config_path), "--use-dynamic-base-id", "--concurrency", "1",
             "-l", "info", "--component-log-level", "wasm:debug,dynamic_modules:debug"],
            workdir / "envoy.log",
        )
        self.url = f"https://localhost:{self.port}"

    def wait(self):
        def ready():
            with requests.get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                return r.status_code == 200

        # /ready waits for the listener to warm: its SDS secrets and the fetched Wasm module.
        harness.wait_until("the Envoy Gateway-shaped Envoy to be ready", ready, timeout=60, proc=self.proc)
        return self

    def filter_config(self) -> dict:
        [f] = [f for f in self.listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
               if f["name"] == self.certbound_filter]
        return f["typed_config"]

    def request(self, stack, method, path, *, cert=None, data=None, auth=None, headers=None, token=None, timeout=15):
        test_id = uuid.uuid4().hex
        h = {"x-test-id": test_id, **(headers or {})}
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        r = requests.request(method, self.url + path, data=data, auth=auth, cert=cert.pair if cert else None,
                             headers=h, verify=str(stack.pki.ca_path), timeout=timeout)
        r.test_id = test_id
        return r

    def stop(self):
        self.proc.stop()
        for s in self.stopped:
            s.stop()


def clients_only(*clients):
    def change(config):
        config["clients"] = list(clients)
    return change


@pytest.fixture(scope="module")
def tls_client(stack):
    """A CA-issued client certificate, for tls_client_auth."""
    return stack.pki.ca_signed("eg-tls-client", dn("eg-tls-client", "payments"))


@pytest.fixture(scope="module")
def gateways(stack, tls_client, tmp_path_factory):
    root = tmp_path_factory.mktemp("envoy-gateway")
    good = harness.certbound_client("good-client", thumbprints=[x5t_of(stack.clients["good"])],
                                    upstream_secret=UPSTREAM_SECRETS["good-client"])

    def verified_chains(config):
        config["clients"] = [{
            "client_id": "rsa-client", "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=eg-tls-client,OU=payments,O=certbound test",
            "upstream": {"client_secret": UPSTREAM_SECRETS["rsa-client"]}}]
        # The connection gives certbound only the certificate's digest: XFCC, which this listener
        # overwrites on every request (SanitizeSet), carries the certificate with its subject and SANs.
        config["certificate_sources"] = {"connection_chain_verified": True, "headers": [
            {"name": "x-forwarded-client-cert", "format": "xfcc", "trust": {"always": True}}]}

    def verify_if_given(ctp):
        # The README's tls_client_auth row: chains verified against the client CA, the certificate in XFCC.
        ctp["spec"]["tls"]["clientValidation"] = {"mode": "VerifyIfGiven", "caCertificateRefs": [
            {"kind": "ConfigMap", "name": "certbound-client-ca"}]}
        ctp["spec"]["headers"]["xForwardedClientCert"] = {"mode": "SanitizeSet", "certDetailsToAdd": ["Cert"]}
        assert schema_errors(ctp) == []

    (root / "etcd").mkdir()
    etcd = harness.EtcdCluster(root / "etcd", members=1)
    jwks_server = JwksServer(stack.clients["pinned"])
    clusters = callout_clusters()

    def with_callouts(config):
        # callouts.yaml's fragment: etcd through the rule-0 cluster, jwks_uri through the rule-1 cluster.
        config["clients"] = [good, {
            "client_id": "pinned-client", "token_endpoint_auth_method": "self_signed_tls_client_auth",
            "jwks_uri": "https://clients.example.com/pinned-client/jwks.json",
            "upstream": {"client_secret": UPSTREAM_SECRETS["pinned-client"]}}]
        config["store"] = {"backend": "etcd", "etcd": {"cluster": clusters["certbound-etcd"],
                                                       "authority": "etcd.certbound.svc.cluster.local:2379"}}
        config["jwks_fetch"] = {"cluster": clusters["certbound-jwks"]}

    started = {}
    try:
        # The README's Envoy Gateway deployment: every shipped file for the artifact under test.
        started["shipped"] = EgGateway(root / "gw-shipped", stack, plugin_change=clients_only(good))
        if harness.ARTIFACT == "wasm":
            # extension-wasm.yaml's EnvoyExtensionPolicy alone, without its EnvoyPatchPolicy.
            started["unpatched"] = EgGateway(root / "gw-unpatched", stack, plugin_change=clients_only(good), patch=False)
        started["verifying"] = EgGateway(root / "gw-verifying", stack, plugin_change=verified_chains,
                                         ctp_change=verify_if_given)
        started["callouts"] = EgGateway(root / "gw-callouts", stack, plugin_change=with_callouts, callouts={
            "certbound-etcd": etcd.client_ports[0], "certbound-jwks": jwks_server.port})
        for gw in started.values():
            gw.wait()
        yield started
    finally:
        harness.stop_all([etcd, jwks_server, *started.values()])


def token(gw, stack, cert, client_id):
    return gw.request(stack, "POST", "/oauth2/token", cert=cert, data={"grant_type": "client_credentials", "client_id": client_id})


def introspect(gw, stack, access_token):
    r = gw.request(stack, "POST", "/oauth2/introspect", data={"token": access_token}, auth=("demo-rs", "demo-rs-secret"))
    assert r.status_code == 200, r.text
    return r.json()


def api_saw(stack, response) -> list[dict]:
    return [x for x in stack.api.received if x["headers"].get("x-test-id") == response.test_id]


def test_the_shipped_gateway_serves_the_token_flow_with_bound_tokens(stack, gateways):
    gw, good, stranger = gateways["shipped"], stack.clients["good"], stack.clients["stranger"]
    # The ClientTrafficPolicy's TLS context: certificates asked for, none required, none verified.
    assert gw.listener["filter_chains"][0]["transport_socket"]["typed_config"]["require_client_certificate"] is False
    assert gw.listener["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"] == {
        "trust_chain_verification": "ACCEPT_UNTRUSTED"}
    r = token(gw, stack, good, "good-client")
    assert r.status_code == 200, r.text
    assert stack.auth_server.saw(r.test_id)
    access_token = r.json()["access_token"]
    body = introspect(gw, stack, access_token)
    assert body["active"] is True and body["client_id"] == "good-client"
    assert body["cnf"] == {"x5t#S256": x5t_of(good)}
    # The protected route: the token with its certificate reaches the API, with the verified thumbprint ...
    r = gw.request(stack, "GET", "/api/orders", cert=good, token=access_token)
    assert r.status_code == 200, r.text
    [seen] = api_saw(stack, r)
    assert seen["headers"]["x-certbound-x5t"] == x5t_of(good)
    # ... another certificate, or none, is refused before the API sees the request.
    for cert in (stranger, None):
        r = gw.request(stack, "GET", "/api/orders", cert=cert, token=access_token)
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"], r.text
        assert not api_saw(stack, r)
    # A certificate that is not the client's gets no token; the AS never sees the request.
    r = token(gw, stack, stranger, "good-client")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    assert not stack.auth_server.saw(r.test_id)


def test_no_client_certificate_still_connects_and_is_refused_by_certbound(stack, gateways):
    gw = gateways["shipped"]
    r = token(gw, stack, None, "good-client")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    assert not stack.auth_server.saw(r.test_id)
    # The AS's other pages (a browser without a certificate) are served.
    r = gw.request(stack, "GET", "/.well-known/openid-configuration")
    assert r.status_code == 200 and r.json()["tls_client_certificate_bound_access_tokens"] is True, r.text


def test_the_api_prefix_is_protected_on_every_path_the_route_sends_to_the_api(stack, gateways):
    gw = gateways["shipped"]
    # path_separated_prefix /api routes /api itself to the API: certbound's "/api" covers it.
    for path in ("/api", "/api/", "/api/orders/1", "/api?x=1"):
        r = gw.request(stack, "GET", path)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), (path, r.text)
        assert not api_saw(stack, r), path


def test_paths_are_normalised_as_the_client_traffic_policy_says(stack, gateways):
    gw, stranger = gateways["shipped"], stack.clients["stranger"]
    tcp = gw.listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert (tcp["normalize_path"], tcp["merge_slashes"], tcp["path_with_escaped_slashes_action"], tcp["use_remote_address"]) == (
        True, True, "REJECT_REQUEST", True)
    # Escaped slashes: refused by Envoy (RejectRequest), before any filter.
    r = gw.request(stack, "POST", "/oauth2%2Ftoken", cert=stranger, data={"grant_type": "client_credentials", "client_id": "good-client"})
    assert r.status_code == 400, r.text
    assert not stack.auth_server.saw(r.test_id)
    # Merged slashes and dot segments: certbound sees the token endpoint the AS would.
    for path in ("//oauth2//token", "/oauth2/x/../token"):
        r = gw.request(stack, "POST", path, cert=stranger, data={"grant_type": "client_credentials", "client_id": "good-client"})
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", (path, r.text)
        assert not stack.auth_server.saw(r.test_id)


def test_a_client_cannot_bring_its_own_xfcc(stack, gateways):
    gw, good = gateways["shipped"], stack.clients["good"]
    assert gw.listener["filter_chains"][0]["filters"][0]["typed_config"]["forward_client_cert_details"] == "SANITIZE"
    r = token(gw, stack, good, "good-client")
    access_token = r.json()["access_token"]
    xfcc = f'Hash={x5t_of(stack.clients["stranger"])};Cert="x"'
    r = gw.request(stack, "GET", "/api/orders", cert=good, token=access_token, headers={"x-forwarded-client-cert": xfcc})
    assert r.status_code == 200, r.text
    [seen] = api_saw(stack, r)
    assert "x-forwarded-client-cert" not in {k.lower() for k in seen["headers"]}


def test_bodies_over_envoy_gateways_buffer_are_refused_before_the_as(stack, gateways):
    """Envoy Gateway's 32 KiB per-connection buffer (listener per_connection_buffer_limit_bytes) is below
    certbound's max_body_bytes (64 KiB): Envoy answers 413 itself (README, clienttrafficpolicy.yaml)."""
    gw, good = gateways["shipped"], stack.clients["good"]
    data = {"grant_type": "client_credentials", "client_id": "good-client", "pad": "x" * 20000}
    assert gw.request(stack, "POST", "/oauth2/token", cert=good, data=data).status_code == 200
    r = gw.request(stack, "POST", "/oauth2/token", cert=good, data={**data, "pad": "x" * 40000})
    assert (r.status_code, r.text) == (413, "Payload Too Large")
    assert not stack.auth_server.saw(r.test_id)


@harness.wasm_only("only the .wasm needs allow_on_headers_stop_iteration")
def test_the_patch_policy_gives_the_wasm_filter_what_the_extension_policy_cannot(gateways):
    gw = gateways["shipped"]
    name = "envoy.filters.http.wasm/envoyextensionpolicy/certbound/certbound/wasm/0"
    assert gw.certbound_filter == name
    [flt] = [f for f in gw.listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"] if f["name"] == name]
    assert flt["disabled"] is True
    config = flt["typed_config"]["config"]
    assert (config["allow_on_headers_stop_iteration"], config["failure_policy"], config["reload_config"]) == (
        True, "FAIL_RELOAD", {"backoff": {"base_interval": "1s"}})
    assert "fail_open" not in config
    base = "/filter_chains/0/filters/0/typed_config/http_filters/0/typed_config/config"
    assert gw.patched == [f"{base}/allow_on_headers_stop_iteration", f"{base}/failure_policy", f"{base}/reload_config"]
    # Enabled on the Gateway's routes, by name.
    vh = gw.listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]
    assert all(name in r["typed_per_filter_config"] for r in vh["routes"])


@harness.wasm_only("only the .wasm needs allow_on_headers_stop_iteration")
def test_without_the_patch_policy_token_requests_hang(stack, gateways):
    gw, good = gateways["unpatched"], stack.clients["good"]
    config = gw.filter_config()["config"]
    assert "allow_on_headers_stop_iteration" not in config and "failure_policy" not in config
    # The filter runs: what it decides on request headers alone is answered ...
    r = gw.request(stack, "GET", "/api/x", timeout=10)
    assert r.status_code == 401 and "a Bearer token is required" in r.text, r.text
    # ... but a token request never completes (until Envoy's 5 minute stream idle timeout).
    test_id = uuid.uuid4().hex
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(gw.url + "/oauth2/token", data={"grant_type": "client_credentials", "client_id": "good-client"},
                      cert=good.pair, headers={"x-test-id": test_id}, verify=str(stack.pki.ca_path), timeout=3)
    assert not stack.auth_server.saw(test_id)
    # Nor does the discovery document, whose response certbound holds to add its RFC 8705 fields.
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(gw.url + "/.well-known/openid-configuration", verify=str(stack.pki.ca_path), timeout=2)


@pytest.mark.skipif(harness.ARTIFACT != "module", reason="the dynamic module's filter: the module artifact only")
def test_the_dynamic_module_is_the_registered_one_and_needs_no_patch(gateways):
    gw = gateways["shipped"]
    assert gw.certbound_filter == "envoy.filters.http.dynamic_modules/envoyextensionpolicy/certbound/certbound/dynamic-module/0"
    assert gw.patched == []
    typed = gw.filter_config()
    assert typed["dynamic_module_config"] == {"module": {"local": {"filename": str(harness.MODULE)}}, "do_not_close": True}
    assert typed["filter_name"] == "certbound"


def test_with_verify_if_given_chains_are_verified_and_tls_client_auth_works(stack, gateways, tls_client):
    gw = gateways["verifying"]
    common = gw.listener["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]
    assert common["validation_context_sds_secret_config"]["name"] == "certbound/certbound/ca.crt"
    assert "validation_context" not in common and "combined_validation_context" not in common
    # A self-signed certificate fails the handshake ...
    with pytest.raises(requests.exceptions.SSLError):
        token(gw, stack, stack.clients["good"], "good-client")
    # ... a CA-issued one passes, and tls_client_auth works (connection_chain_verified: true).
    r = token(gw, stack, tls_client, "rsa-client")
    assert r.status_code == 200, r.text
    assert introspect(gw, stack, r.json()["access_token"])["cnf"] == {"x5t#S256": x5t_of(tls_client)}
    # No certificate at all still connects (VerifyIfGiven); certbound refuses the client, even with
    # an XFCC of its own making (SanitizeSet replaces it).
    xfcc = f'Hash={hashlib.sha256(tls_client.der()).hexdigest()};Cert="{requests.utils.quote(tls_client.pem, safe="")}"'
    r = gw.request(stack, "POST", "/oauth2/token", data={"grant_type": "client_credentials", "client_id": "rsa-client"},
                   headers={"x-forwarded-client-cert": xfcc})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    assert not stack.auth_server.saw(r.test_id)


def test_callouts_go_through_the_backend_clusters_and_clients_cannot_use_the_route(stack, gateways):
    gw, good, pinned = gateways["callouts"], stack.clients["good"], stack.clients["pinned"]
    # Bindings in etcd through httproute/certbound/certbound-callouts/rule/0.
    r = token(gw, stack, good, "good-client")
    assert r.status_code == 200, r.text
    access_token = r.json()["access_token"]
    assert introspect(gw, stack, access_token)["cnf"] == {"x5t#S256": x5t_of(good)}
    assert gw.request(stack, "GET", "/api/x", cert=good, token=access_token).status_code == 200
    # A client registered by jwks_uri, fetched through .../rule/1.
    harness.wait_until("the jwks_uri to be fetched", lambda: token(gw, stack, pinned, "pinned-client").status_code == 200,
                       timeout=15, proc=gw.proc)
    # The route that makes the clusters is closed to clients (SecurityPolicy: 403).
    for path in ("/etcd/v3/kv/range", "/jwks/pinned-client/jwks.json"):
        r = gw.request(stack, "POST" if "etcd" in path else "GET", path, data="{}" if "etcd" in path else None,
                       headers={"host": "certbound-callouts.invalid"})
        assert r.status_code == 403, (path, r.status_code, r.text)
