"""Bindings shared across Envoy replicas through a 3-node etcd cluster, and
the bounded shared-data store."""

import hashlib
import base64
import json
import threading
import time
import urllib.request
import uuid

import pytest
import requests

import harness
from conftest import UPSTREAM_SECRETS, good_client, x5t_by_openssl


@pytest.fixture(scope="module")
def replicas(stack, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("etcd")
    etcd = harness.EtcdCluster(workdir)
    def config(clients_refresh_seconds):
        return {
            "clients": [good_client(stack)],
            "protected_routes": [{"path_prefix": "/api/"}],
            "store": {"backend": "etcd", "etcd": {"cluster": "etcd", "timeout_ms": 1000, "key_prefix": "test/",
                                                   "clients_refresh_seconds": clients_refresh_seconds}},
        }

    # Replica a reads registered clients from etcd every second (the clients tests use it); replica b
    # does not, so that every etcd call b makes is a binding read or write, and its calls can be counted.
    a = harness.Envoy(workdir, config(1), cert_dir=stack.pki.dir, as_port=stack.auth_server.port,
                      api_port=stack.api.port, etcd_ports=etcd.client_ports, name="replica-a")
    b = harness.Envoy(workdir, config(0), cert_dir=stack.pki.dir, as_port=stack.auth_server.port,
                      api_port=stack.api.port, etcd_ports=etcd.client_ports, name="replica-b")
    yield {"a": a, "b": b, "etcd": etcd}
    a.stop()
    b.stop()
    etcd.stop()


def token_via(envoy, stack, cert="good"):
    return requests.post(envoy.url + "/oauth2/token", data={"grant_type": "client_credentials", "client_id": "good-client"},
                         cert=stack.clients[cert].pair, verify=str(stack.pki.ca_path), timeout=15)


def introspect_via(envoy, stack, token):
    return requests.post(envoy.url + "/oauth2/introspect", data={"token": token}, auth=("demo-rs", "demo-rs-secret"),
                         verify=str(stack.pki.ca_path), timeout=15)


def resource_via(envoy, stack, token, cert="good"):
    return requests.get(envoy.url + "/api/x", headers={"authorization": f"Bearer {token}"},
                        cert=stack.clients[cert].pair if cert else None, verify=str(stack.pki.ca_path), timeout=15)


def etcd_calls(envoy) -> int:
    """Requests Envoy sent on its etcd cluster (active health checks are not counted here)."""
    with urllib.request.urlopen(
            f"http://127.0.0.1:{envoy.admin_port}/stats?filter=^cluster.etcd.upstream_rq_total$&format=json") as r:
        return int(json.loads(r.read())["stats"][0]["value"])


def etcd_key(token):
    return "test/certbound/b/" + base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).decode().rstrip("=")


def test_token_issued_through_one_replica_is_bound_through_the_other(stack, replicas):
    r = token_via(replicas["a"], stack)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    # The binding is in etcd under a hash of the token, with a lease.
    [kv] = replicas["etcd"].get(etcd_key(token))
    assert int(kv["lease"]) != 0
    assert token not in json.dumps(kv)
    body = introspect_via(replicas["b"], stack, token).json()
    assert body["cnf"] == {"x5t#S256": x5t_by_openssl(stack.clients["good"].cert_path)}
    ok = requests.get(replicas["b"].url + "/api/x", headers={"authorization": f"Bearer {token}"},
                      cert=stack.clients["good"].pair, verify=str(stack.pki.ca_path), timeout=15)
    assert ok.status_code == 200, ok.text
    bad = requests.get(replicas["b"].url + "/api/x", headers={"authorization": f"Bearer {token}"},
                       cert=stack.clients["stranger"].pair, verify=str(stack.pki.ca_path), timeout=15)
    assert bad.status_code == 401


def test_warm_reads_make_no_callout(stack, replicas):
    token = token_via(replicas["a"], stack).json()["access_token"]
    b = replicas["b"]
    # b makes no etcd call of its own (no clients refresh): its count moves only with binding reads.
    n0 = etcd_calls(b)
    assert "cnf" in introspect_via(b, stack, token).json()  # cold: one range call, then cached
    n1 = etcd_calls(b)
    assert n1 == n0 + 1, "the cold read is one etcd call; the count measures b's reads"
    for _ in range(5):
        assert "cnf" in introspect_via(b, stack, token).json()
    assert resource_via(b, stack, token).status_code == 200
    assert etcd_calls(b) == n1


def test_losing_an_etcd_member_never_releases_an_unbound_token(stack, replicas):
    etcd = replicas["etcd"]
    # Filled by the worker thread, judged here: an assert in a thread would only be a warning.
    results = []

    def issue(n):
        for _ in range(n):
            try:
                r = token_via(replicas["a"], stack)
                results.append((r.status_code, r.headers.get("retry-after"), r.text))
            except Exception as e:  # a request that failed outright is a result too
                results.append((None, None, repr(e)))

    worker = threading.Thread(target=issue, args=(60,), daemon=True)
    worker.start()
    try:
        time.sleep(0.3)
        etcd.stop(0)
        worker.join(timeout=120)
        assert not worker.is_alive(), f"the token requests did not finish in 120 s ({len(results)} done)"
        statuses = [status for status, _, _ in results]
        print(f"\netcd member killed mid-stream: {statuses.count(200)} tokens received, "
              f"{statuses.count(503)} refused with 503")
        assert len(results) == 60
        received = []
        for status, retry_after, text in results:
            if status == 200:
                received.append(json.loads(text)["access_token"])
            else:
                # Never a token without its binding: the only other answer is 503 with Retry-After.
                assert status == 503, text
                assert json.loads(text)["error"] == "temporarily_unavailable"
                assert "access_token" not in text
                assert retry_after
        assert len(received) >= 30, statuses
        x5t = x5t_by_openssl(stack.clients["good"].cert_path)
        for token in received:
            body = introspect_via(replicas["b"], stack, token).json()
            assert body.get("cnf", {}).get("x5t#S256") == x5t, token
    finally:
        if etcd.procs[0] is None:
            etcd.start(0)
        etcd.wait_healthy(0)


def test_without_etcd_no_token_leaves_and_it_recovers_without_restarting_envoy(stack, replicas):
    etcd, a, b = replicas["etcd"], replicas["a"], replicas["b"]
    # Bound through a while etcd is up; b has never read it, so b must ask etcd for it.
    bound = token_via(a, stack)
    assert bound.status_code == 200, bound.text
    bound = bound.json()["access_token"]
    names_a = ["store_errors", "store_retries", "refused.binding_store_failed"]
    names_b = ["store_errors", "store_retries", "refused.store_unavailable"]
    before_a = {n: a.counter(f"certbound.{n}") for n in names_a}
    before_b = {n: b.counter(f"certbound.{n}") for n in names_b}
    for i in range(3):
        etcd.stop(i)
    try:
        r = token_via(a, stack)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "temporarily_unavailable"
        assert "access_token" not in r.text
        assert r.headers["retry-after"]
        # Reads fail closed too: introspection 503 ...
        assert introspect_via(b, stack, "some-uncached-token").status_code == 503
        # ... and a protected resource 401, even for a bound token with its own certificate.
        test_id = uuid.uuid4().hex
        r = requests.get(b.url + "/api/x", headers={"authorization": f"Bearer {bound}", "x-test-id": test_id},
                         cert=stack.clients["good"].pair, verify=str(stack.pki.ca_path), timeout=15)
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "invalid_token"
        assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
        assert not [x for x in stack.api.received if x["headers"].get("x-test-id") == test_id]
        # Each failed call was sent twice, then counted once as a store error and once as a refusal.
        after_a = {n: a.counter(f"certbound.{n}") for n in names_a}
        after_b = {n: b.counter(f"certbound.{n}") for n in names_b}
        assert {n: after_a[n] - before_a[n] for n in names_a} == {
            "store_errors": 1, "store_retries": 1, "refused.binding_store_failed": 1}
        assert {n: after_b[n] - before_b[n] for n in names_b} == {
            "store_errors": 2, "store_retries": 2, "refused.store_unavailable": 2}
    finally:
        for i in range(3):
            etcd.start(i)
        for i in range(3):
            etcd.wait_healthy(i)
    deadline = time.monotonic() + 20
    while True:
        r = token_via(a, stack)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.status_code == 200, r.text
    assert "cnf" in introspect_via(b, stack, r.json()["access_token"]).json()
    # The binding b could not read while etcd was down is read now.
    assert resource_via(b, stack, bound).status_code == 200


def test_clients_registered_in_etcd_are_picked_up_and_removed_without_touching_envoy(stack, replicas):
    etcd, a = replicas["etcd"], replicas["a"]
    rsa = stack.clients["rsa"]

    def token(status, timeout=8):
        deadline = time.monotonic() + timeout
        while True:
            r = requests.post(a.url + "/oauth2/token", data={"grant_type": "client_credentials", "client_id": "rsa-client"},
                              cert=rsa.pair, verify=str(stack.pki.ca_path), timeout=15)
            if r.status_code == status or time.monotonic() > deadline:
                return r
            time.sleep(0.3)

    assert token(401, timeout=0).status_code == 401
    registration = harness.certbound_client("rsa-client", certificates=[rsa.pem],
                                            upstream_secret=UPSTREAM_SECRETS["rsa-client"])
    etcd.put("test/certbound/clients/rsa-client", json.dumps(registration))
    r = token(200)
    assert r.status_code == 200, r.text
    # Bound through a, read through b.
    assert introspect_via(replicas["b"], stack, r.json()["access_token"]).json()["cnf"]["x5t#S256"] == x5t_by_openssl(rsa.cert_path)
    etcd.delete("test/certbound/clients/rsa-client")
    assert token(401).status_code == 401


def test_certbound_client_command_registers_lists_and_removes_clients(stack, replicas, tmp_path):
    import subprocess

    etcd = replicas["etcd"]
    url = f"http://127.0.0.1:{etcd.client_ports[1]}"
    cli = lambda *a, stdin=None: subprocess.run([str(harness.ROOT / "target/release/certbound"), "client", *a,
                                                  "--etcd", url, "--prefix", "test/"],
                                                 input=stdin, capture_output=True, timeout=30)
    reg = tmp_path / "pinned.json"
    reg.write_text(json.dumps(harness.certbound_client(
        "pinned-client", thumbprints=[x5t_by_openssl(stack.clients["pinned"].cert_path)],
        upstream_secret=UPSTREAM_SECRETS["pinned-client"])))
    r = cli("add", str(reg))
    assert r.returncode == 0, r.stderr
    listed = cli("list").stdout.decode()
    assert "pinned-client\tself_signed_tls_client_auth" in listed
    bad = cli("add", "-", stdin=b'{"client_id":"x","token_endpoint_auth_method":"password"}')
    assert bad.returncode == 1 and b"certbound refuses the client" in bad.stderr
    deadline = time.monotonic() + 8
    while True:
        r = requests.post(replicas["a"].url + "/oauth2/token",
                          data={"grant_type": "client_credentials", "client_id": "pinned-client"},
                          cert=stack.clients["pinned"].pair, verify=str(stack.pki.ca_path), timeout=15)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.status_code == 200, r.text
    assert cli("remove", "pinned-client").returncode == 0
    assert "pinned-client" not in cli("list").stdout.decode()
    assert cli("remove", "pinned-client").returncode == 1


@pytest.fixture(scope="module")
def small_store(stack, tmp_path_factory):
    # An AS whose tokens live 3 s: bindings last as long as their tokens, so they expire as fast.
    workdir = tmp_path_factory.mktemp("small-store")
    auth_server = harness.AuthorizationServer(
        workdir, [harness.as_client("good-client", UPSTREAM_SECRETS["good-client"], ["client_credentials"]),
                  harness.as_client("demo-rs", "demo-rs-secret", [])],
        token_ttl=3)
    envoy = harness.Envoy(
        workdir,
        {
            "clients": [good_client(stack)],
            "binding": {"max_ttl_seconds": 3, "default_ttl_seconds": 3, "refresh_token_ttl_seconds": 3},
            "store": {"capacity": 8},
        },
        cert_dir=stack.pki.dir, as_port=auth_server.port, api_port=stack.api.port, name="small-store",
    )
    yield envoy
    harness.stop_all([auth_server, envoy])


def test_a_full_store_refuses_new_tokens_and_works_again_after_expiry(stack, small_store):
    got = [token_via(small_store, stack) for _ in range(9)]
    assert [r.status_code for r in got[:8]] == [200] * 8
    assert got[8].status_code == 503 and got[8].json()["error"] == "temporarily_unavailable"
    assert "access_token" not in got[8].text
    assert small_store.counter("certbound.refused.store_full") == 1
    # Every slot holds a binding; the refused token took none.
    assert small_store.counter("certbound.store_slots_capacity") == 8
    assert small_store.counter("certbound.store_slots_used") == 8
    # The 8 live bindings were kept.
    assert all("cnf" in introspect_via(small_store, stack, r.json()["access_token"]).json() for r in got[:8])
    time.sleep(3.5)
    r = token_via(small_store, stack)
    assert r.status_code == 200, r.text
    # Expired bindings leave the count when the sweep (a step a second; 8 slots are one step) reaches them.
    harness.wait_until("the sweep to free every expired slot",
                       lambda: small_store.counter("certbound.store_slots_used") == 0, timeout=20)


def allocated(envoy) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/memory", timeout=5) as r:
        return int(json.loads(r.read())["allocated"])


def test_memory_stays_flat_over_8_seconds_of_filling_and_reusing_expired_slots(stack, small_store):
    # 8 slots, 3 s bindings: issuing faster than they expire fills the table, and each slot is
    # reused after its binding expires, about 3 times over in 8 s. A short run, not a soak test:
    # it catches growth per issued token (a leak of a few KiB per token shows), not slow drift.
    session = requests.Session()

    def run(seconds):
        end, statuses = time.monotonic() + seconds, []
        while time.monotonic() < end:
            r = session.post(small_store.url + "/oauth2/token",
                             data={"grant_type": "client_credentials", "client_id": "good-client"},
                             cert=stack.clients["good"].pair, verify=str(stack.pki.ca_path), timeout=15)
            statuses.append(r.status_code)
            time.sleep(0.05)
        return statuses

    run(3)  # warm up: the table fills
    full_before = small_store.counter("certbound.refused.store_full")
    before = allocated(small_store)
    statuses = run(8)
    after = allocated(small_store)
    issued = statuses.count(200)
    print(f"\nshared-data store: {issued} tokens issued in 8 s, {statuses.count(503)} refused (full), "
          f"Envoy allocated {before} -> {after} bytes")
    assert set(statuses) <= {200, 503}, statuses
    # At least two table-fulls issued, and the table was full in between: expired slots were reused.
    assert issued >= 16, statuses
    assert small_store.counter("certbound.refused.store_full") - full_before == statuses.count(503) > 0
    assert after - before < 2 * 1024 * 1024
