"""Extracts the CRD schemas tests/e2e/test_gateway.py validates envoy/gateway/*.yaml with.

Reads the CRDs straight out of two git clones, at pinned tags:

- Envoy Gateway (github.com/envoyproxy/gateway) at EG_TAG: the generated CRDs its Helm chart
  installs, charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_<plural>.yaml;
- Gateway API (github.com/kubernetes-sigs/gateway-api) at the version that Envoy Gateway release
  builds with (its go.mod's sigs.k8s.io/gateway-api, checked to be GWAPI_TAG): the standard
  channel's config/crd/standard/gateway.networking.k8s.io_<plural>.yaml. (EG's chart installs
  the experimental channel, a superset; a manifest valid against the standard channel is valid
  on either.)

and writes, for the kinds below only, each served version's openAPIV3Schema with the
`description` texts removed (nothing else is changed; repeated subschemas are written once, as
YAML aliases):

    .tools/venv/bin/python tests/data/envoy-gateway/extract_crd_schemas.py \\
        <envoyproxy/gateway clone> <kubernetes-sigs/gateway-api clone> \\
        > tests/data/envoy-gateway/crd-schemas.yaml
"""

import json
import subprocess
import sys

import yaml

EG_TAG = "v1.9.0"
GWAPI_TAG = "v1.6.1"
EG_CRDS = "charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_{}.yaml"
GWAPI_CRDS = "config/crd/standard/gateway.networking.k8s.io_{}.yaml"
# kind -> plural (the CRD file's name)
EG_KINDS = {
    "Backend": "backends",
    "ClientTrafficPolicy": "clienttrafficpolicies",
    "EnvoyExtensionPolicy": "envoyextensionpolicies",
    "EnvoyPatchPolicy": "envoypatchpolicies",
    "EnvoyProxy": "envoyproxies",
    "SecurityPolicy": "securitypolicies",
}
GWAPI_KINDS = {"Gateway": "gateways", "HTTPRoute": "httproutes"}


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def strip_descriptions(node):
    if isinstance(node, dict):
        # "description" is a keyword where its value is a text; a property *named* description
        # has a schema (a mapping) as its value, and is kept.
        return {k: strip_descriptions(v) for k, v in node.items() if k != "description" or not isinstance(v, str)}
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def share_repeats(node, seen):
    """The same subschema written once per document (a YAML anchor and aliases) where it recurs: the
    Kubernetes types inside EnvoyProxy and SecurityPolicy (container specs, backend references)
    repeat, which doubles this file otherwise. Only identical subtrees of some size are shared."""
    if isinstance(node, dict):
        node = {k: share_repeats(v, seen) for k, v in node.items()}
    elif isinstance(node, list):
        node = [share_repeats(v, seen) for v in node]
    else:
        return node
    key = json.dumps(node, sort_keys=True)
    return seen.setdefault(key, node) if len(key) >= 400 else node


def extract(repo, tag, pattern, kinds):
    commit = git(repo, "rev-parse", f"{tag}^{{commit}}").strip()
    out, sources = [], []
    for kind, plural in kinds.items():
        path = pattern.format(plural)
        blob = git(repo, "rev-parse", f"{commit}:{path}").strip()
        [crd] = [d for d in yaml.safe_load_all(git(repo, "show", f"{commit}:{path}")) if d]
        assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == kind, path
        versions = {}
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                schema = strip_descriptions(v["schema"]["openAPIV3Schema"])
                # Versions with one schema share one object (written once, as a YAML alias).
                versions[v["name"]] = next((s for s in versions.values() if s == schema), schema)
        out.append(share_repeats({"kind": kind, "group": crd["spec"]["group"], "versions": versions}, {}))
        sources.append(f"#   {path} blob {blob}")
    return commit, out, sources


def main():
    eg_repo, gwapi_repo = sys.argv[1:3]
    gomod = git(eg_repo, "show", f"{EG_TAG}:go.mod")
    pinned = [l.split()[1] for l in gomod.splitlines() if l.strip().startswith("sigs.k8s.io/gateway-api ")]
    assert pinned == [GWAPI_TAG], f"Envoy Gateway {EG_TAG} builds with gateway-api {pinned}, not {GWAPI_TAG}"
    eg_commit, eg_docs, eg_sources = extract(eg_repo, EG_TAG, EG_CRDS, EG_KINDS)
    gw_commit, gw_docs, gw_sources = extract(gwapi_repo, GWAPI_TAG, GWAPI_CRDS, GWAPI_KINDS)
    sys.stdout.write(
        f"# Envoy Gateway {EG_TAG.lstrip('v')} and Gateway API {GWAPI_TAG.lstrip('v')} CRD schemas"
        f" (openAPIV3Schema, descriptions removed)\n"
        f"# for {', '.join([*EG_KINDS, *GWAPI_KINDS])}.\n"
        f"# Source: github.com/envoyproxy/gateway tag {EG_TAG}, commit {eg_commit}:\n"
        + "\n".join(eg_sources) + "\n"
        f"# Source: github.com/kubernetes-sigs/gateway-api tag {GWAPI_TAG}, commit {gw_commit}\n"
        f"#   (the sigs.k8s.io/gateway-api version Envoy Gateway {EG_TAG} pins in go.mod), standard channel:\n"
        + "\n".join(gw_sources) + "\n"
        "# Regenerate with tests/data/envoy-gateway/extract_crd_schemas.py (see its docstring). Do not edit by hand.\n"
    )
    yaml.safe_dump_all(eg_docs + gw_docs, sys.stdout, sort_keys=True, width=120)


if __name__ == "__main__":
    main()
