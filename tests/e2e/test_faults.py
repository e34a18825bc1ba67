"""A fault never takes Envoy down (issue 19): what a panic inside certbound does, in the real
Envoy, with the test-only builds whose hooks panic on demand (cargo feature fault-injection,
`make module-faults`, `make wasm-faults`; a request header names the hook that panics).

The dynamic module (panic = "unwind") catches the panic at the hook: the request gets a 500
(request path) or a reset (response path), certbound.faults counts it, one log line names the
hook, and Envoy goes on serving. The .wasm (panic = "abort") traps its VM: what follows is
Envoy's failure_policy, FAIL_RELOAD in every shipped config; the last test pins what Envoy
1.40 does under each policy, which is why.

Every Envoy here runs in a workdir marked with harness.EXPECTED_FAULTS_MARKER, so that the
suite's no_wasm_panics check skips the panics these tests cause, and only those."""

import json
import urllib.request
from pathlib import Path

import pytest
import requests

import harness
from conftest import THUMBPRINT_HEADER, Client, good_client

# The header the test-only builds look for; its name marks them (never in a shipped artifact).
PANIC_HEADER = "x-certbound-test-panic"
REQUEST_HOOKS = ["request_headers", "request_body"]
RESPONSE_HOOKS = ["response_headers", "response_body"]
DEADLINE = 15.0

module_only = pytest.mark.skipif(harness.ARTIFACT != "module", reason="the dynamic module only")
wasm_only = harness.wasm_only("what Envoy does with a trapped VM")


def faults_build() -> Path:
    path = harness.FAULTS_MODULE if harness.ARTIFACT == "module" else harness.FAULTS_WASM
    if not path.exists():
        pytest.fail(f"{path} is missing: run make {'module' if harness.ARTIFACT == 'module' else 'wasm'}-faults")
    return path


@pytest.fixture(scope="module")
def faults_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("faults")
    (d / harness.EXPECTED_FAULTS_MARKER).write_text("panics and trapped VMs in these logs are deliberate (test_faults.py)\n")
    return d


def plugin_config(stack) -> dict:
    return {
        "token_path": "/oauth2/token",
        "introspection_path": "/oauth2/introspect",
        "clients": [good_client(stack)],
        "protected_routes": [{"path_prefix": "/api/", "unbound_tokens": "require_binding", "missing_token": "reject",
                              "thumbprint_header": THUMBPRINT_HEADER}],
    }


def start(stack, workdir: Path, name: str, *, wait: bool = True, concurrency: int = 1, **filter_options) -> harness.Envoy:
    """An Envoy running the faults build in front of the session's AS and API."""
    return harness.Envoy(workdir, plugin_config(stack), cert_dir=stack.pki.dir, as_port=stack.auth_server.port,
                         api_port=stack.api.port, name=name, wait=wait, concurrency=concurrency,
                         filter_options={"artifact": faults_build(), **filter_options})


def client_of(stack, envoy: harness.Envoy) -> Client:
    # The session's AS, API and certificates, through this Envoy (never stopped through this Stack).
    return Client(harness.Stack(envoy.config_path.parent, stack.pki, stack.auth_server, stack.api, envoy, stack.clients))


def alive(envoy: harness.Envoy) -> bool:
    """The process runs and its admin interface says it is live and ready."""
    if envoy.proc.popen.poll() is not None:
        return False
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/ready", timeout=2) as r:
        ready = r.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/server_info", timeout=2) as r:
        return ready and json.loads(r.read())["state"] == "LIVE"


def lines(envoy: harness.Envoy, text: str) -> list[str]:
    return [l for l in envoy.proc.log().splitlines() if text in l]


def served_normally(client: Client, earlier_token: str | None = None):
    """A token request gets its token; the token with its certificate reaches the API; without
    it, certbound refuses; a token bound before the fault is still bound to its certificate."""
    good = client.stack.clients["good"]
    r = client.token(good, "good-client")
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    r = client.get("/api/after-the-fault", cert=good, token=token)
    assert r.status_code == 200 and len(client.api_saw(r)) == 1, r.text
    r = client.get("/api/after-the-fault", token=token)
    assert r.status_code == 401 and "invalid_token" in r.headers["www-authenticate"] and not client.api_saw(r)
    if earlier_token:
        r = client.get("/api/bound-before-the-fault", cert=good, token=earlier_token)
        assert r.status_code == 200 and len(client.api_saw(r)) == 1, r.text
        r = client.get("/api/bound-before-the-fault", cert=client.stack.clients["stranger"], token=earlier_token)
        assert r.status_code == 401 and not client.api_saw(r)


def crash_token_request(client: Client, hook: str):
    """A token request (form body, certificate) whose `hook` panics: the response, or the
    connection error of a reset stream."""
    try:
        return client.token(client.stack.clients["good"], "good-client", headers={PANIC_HEADER: hook})
    except requests.ConnectionError as e:
        return e


def test_shipped_artifacts_carry_no_fault_injection():
    """The artifact every other test, the demo and the image use has none of the test-only
    code (make wasm / make module check the same); the faults build has it."""
    shipped = harness.MODULE if harness.ARTIFACT == "module" else harness.WASM
    assert shipped.exists(), f"{shipped} is missing: run make {harness.ARTIFACT}"
    assert PANIC_HEADER.encode() not in shipped.read_bytes(), f"{shipped} carries the fault injection"
    assert PANIC_HEADER.encode() in faults_build().read_bytes()
    assert faults_build().resolve() != shipped.resolve()


# ---------------------------------------------------------------- the dynamic module


@pytest.fixture(scope="module")
def module_envoy(stack, faults_dir):
    if harness.ARTIFACT != "module":
        pytest.skip("the dynamic module only")
    envoy = start(stack, faults_dir, "module-faults", concurrency=2)
    yield envoy
    envoy.stop()


@module_only
@pytest.mark.parametrize("hook", REQUEST_HOOKS + RESPONSE_HOOKS)
def test_a_panic_in_a_module_hook_fails_its_request_closed_and_envoy_serves_the_next(stack, module_envoy, hook):
    envoy, client = module_envoy, client_of(stack, module_envoy)
    earlier = client.token(stack.clients["good"], "good-client").json()["access_token"]
    faults = envoy.counter("certbound.faults")
    logged = len(lines(envoy, f"internal fault in hook {hook} "))

    r = crash_token_request(client, hook)
    if hook in REQUEST_HOOKS:
        # Refused before anything went upstream, with an OAuth error.
        assert not isinstance(r, Exception), r
        assert r.status_code == 500 and r.headers["content-type"] == "application/json", r.text
        assert r.json()["error"] == "server_error" and "internal fault" in r.json()["error_description"]
        assert not client.as_saw(r)
    else:
        # The AS answered; the response (its token) never reached the client: the stream was reset.
        assert isinstance(r, requests.ConnectionError), f"expected a reset, got {getattr(r, 'status_code', r)}"

    assert alive(envoy)
    harness.wait_until("certbound.faults to count the fault", lambda: envoy.counter("certbound.faults") == faults + 1,
                       timeout=DEADLINE, proc=envoy.proc)
    harness.wait_until("the fault's log line", lambda: len(lines(envoy, f"internal fault in hook {hook} ")) == logged + 1,
                       timeout=DEADLINE, proc=envoy.proc)
    line = lines(envoy, f"internal fault in hook {hook} ")[-1]
    assert f"fault injected by {PANIC_HEADER}: {hook}" in line and "panicked at crates/certbound-module/src/" in line
    assert ("refused with 500" if hook in REQUEST_HOOKS else "the stream is reset") in line
    # One line per fault: the panic hook's own line is folded into it (no separate stderr print).
    assert len(lines(envoy, f"fault injected by {PANIC_HEADER}: {hook}")) == logged + 1

    served_normally(client, earlier)
    assert envoy.counter("certbound.faults") == faults + 1
    assert alive(envoy)


@module_only
def test_a_panic_making_the_module_configuration_refuses_it_and_envoy_exits_cleanly(stack, faults_dir):
    """http_filter_config_new faults (a filter_name the faults build panics on): the
    configuration is refused as any invalid one is, and Envoy exits with its config error, not
    an abort."""
    envoy = start(stack, faults_dir, "module-faults-config", wait=False,
                  filter_name="certbound-test-panic-config-new")
    try:
        harness.wait_until("Envoy to refuse its configuration", lambda: envoy.proc.popen.poll() is not None,
                           timeout=DEADLINE)
        assert envoy.proc.popen.returncode == 1, f"exit {envoy.proc.popen.returncode}:\n{envoy.proc.tail()}"
        [line] = lines(envoy, "internal fault in hook http_filter_config_new ")
        assert "the configuration is refused" in line and "panicked at" in line
    finally:
        envoy.stop()


# ---------------------------------------------------------------- the .wasm


def probe_is_never_unchecked(client: Client, seen: list):
    """One request on a protected route without a token: certbound answers 401 (Bearer), or a
    failed VM 503; the API never sees it. Returns True once certbound answered."""
    r = client.get("/api/probe")
    seen.append(r.status_code)
    assert not client.api_saw(r), f"passed unchecked: {r.status_code} {r.text[:200]}"
    assert r.status_code in (401, 503), r.text
    if r.status_code == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")
        return True
    return False


@wasm_only
@pytest.mark.parametrize("hook", ["request_headers", "response_body"])
def test_a_trapped_vm_fails_its_stream_closed_and_a_reloaded_vm_serves_the_next(stack, faults_dir, hook):
    """The shipped policy (harness.WASM_FAILURE_POLICY, as in envoy/*.yaml): one worker (one VM).
    The client of the crashed stream gets 503 (request path: a local reply; response path:
    the held token response is replaced by it). New streams are refused (503) until one backoff
    interval after the VM was loaded, then one gets a new VM and everything is served again,
    bindings included (they live in Envoy's shared data, outside the VM)."""
    envoy = start(stack, faults_dir, f"wasm-faults-{hook}")
    try:
        client = client_of(stack, envoy)
        earlier = client.token(stack.clients["good"], "good-client").json()["access_token"]

        r = crash_token_request(client, hook)
        assert not isinstance(r, Exception), r
        assert r.status_code == 503 and "access_token" not in r.text, r.text
        assert client.as_saw(r) == (hook in RESPONSE_HOOKS)
        harness.wait_until("the trap in the log", lambda: lines(envoy, "Uncaught RuntimeError"), timeout=DEADLINE)
        assert lines(envoy, "panicked at src/filter/fault_injection.rs") and lines(envoy, f"fault injected by {PANIC_HEADER}: {hook}")
        assert alive(envoy)

        seen = []
        harness.wait_until("a new VM to answer", lambda: probe_is_never_unchecked(client, seen), timeout=DEADLINE,
                           proc=envoy.proc)
        assert envoy.counter("wasm.certbound.vm_reload_success") == 1, seen
        served_normally(client, earlier)
        assert alive(envoy)
    finally:
        envoy.stop()


POLICIES = {
    # The VM is never replaced: that worker refuses everything until Envoy restarts.
    "FAIL_CLOSED": "failure_policy: FAIL_CLOSED",
    # Within the backoff interval (here far longer than the test) new streams are refused.
    "FAIL_RELOAD backing off": "failure_policy: FAIL_RELOAD\nreload_config: { backoff: { base_interval: 3600s } }",
    # New streams skip the filter: requests pass unchecked. Never shipped.
    "FAIL_OPEN": "failure_policy: FAIL_OPEN",
}


@wasm_only
@pytest.mark.parametrize("policy", POLICIES)
def test_what_envoy_1_40_does_with_a_trapped_vm_under_each_failure_policy(stack, faults_dir, policy):
    """Why the shipped configs say FAIL_RELOAD: pinned on the real Envoy, one worker."""
    envoy = start(stack, faults_dir, f"wasm-policy-{list(POLICIES).index(policy)}", failure_policy=POLICIES[policy])
    try:
        client = client_of(stack, envoy)
        r = crash_token_request(client, "request_headers")
        # Under every policy the crashed stream itself fails closed (Envoy's legacy fail_open
        # flag, not the policy, decides that stream; certbound never sets it).
        assert not isinstance(r, Exception) and r.status_code == 503 and not client.as_saw(r), r
        after = [client.get("/api/probe") for _ in range(5)]
        if policy == "FAIL_OPEN":
            assert [a.status_code for a in after] == [200] * 5
            assert all(len(client.api_saw(a)) == 1 for a in after), "the API saw requests no filter checked"
        else:
            assert [a.status_code for a in after] == [503] * 5
            assert not any(client.api_saw(a) for a in after)
            assert envoy.counter("wasm.certbound.vm_reload_success") == 0
            if policy == "FAIL_CLOSED":
                assert envoy.counter("wasm.certbound.vm_reload_backoff") == 0
            else:
                assert envoy.counter("wasm.certbound.vm_reload_backoff") >= 5
        assert alive(envoy)
    finally:
        envoy.stop()
