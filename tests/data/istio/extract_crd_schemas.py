"""Extracts the CRD schemas tests/e2e/test_istio.py validates envoy/istio/*.yaml with.

Reads Istio's generated CRDs (istio/api, kubernetes/customresourcedefinitions.gen.yaml)
on stdin and writes, for the kinds below only, each served version's
openAPIV3Schema with the `description` texts removed (nothing else is changed):

    git -C <istio/api clone> show v1.30.3:kubernetes/customresourcedefinitions.gen.yaml \
      | .tools/venv/bin/python tests/data/istio/extract_crd_schemas.py v1.30.3 <commit> <blob> \
      > tests/data/istio/crd-schemas.yaml
"""

import sys

import yaml

KINDS = ("WasmPlugin", "EnvoyFilter", "Gateway")


def strip_descriptions(node):
    if isinstance(node, dict):
        # "description" is a keyword only where it sits next to other schema keywords;
        # a property *named* description (none in these kinds) would be under "properties".
        return {k: strip_descriptions(v) for k, v in node.items() if k != "description" or not isinstance(v, str)}
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def main():
    tag, commit, blob = sys.argv[1:4]
    crds = [d for d in yaml.safe_load_all(sys.stdin) if d]
    out = []
    for crd in crds:
        kind = crd["spec"]["names"]["kind"]
        if kind not in KINDS:
            continue
        versions = {}
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                schema = strip_descriptions(v["schema"]["openAPIV3Schema"])
                # Versions with one schema share one object (written once, as a YAML alias).
                versions[v["name"]] = next((s for s in versions.values() if s == schema), schema)
        out.append({"kind": kind, "group": crd["spec"]["group"], "versions": versions})
    assert sorted(d["kind"] for d in out) == sorted(KINDS), out
    sys.stdout.write(
        f"# Istio {tag.lstrip('v')} CRD schemas (openAPIV3Schema, descriptions removed) for {', '.join(KINDS)}.\n"
        f"# Source: github.com/istio/api, kubernetes/customresourcedefinitions.gen.yaml\n"
        f"#   tag {tag}, commit {commit}, blob {blob}\n"
        f"#   (the istio.io/api version istio/istio {tag.lstrip('v')} builds with: go.mod pins {commit[:12]}).\n"
        f"# Regenerate with tests/data/istio/extract_crd_schemas.py (see its docstring). Do not edit by hand.\n"
    )
    yaml.safe_dump_all(out, sys.stdout, sort_keys=True, width=120)


if __name__ == "__main__":
    main()
