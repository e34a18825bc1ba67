"""make bench: CPU time per request of the processes on the request's path, and where they run.

A measured window is one oha run. Around it the bench reads:

- Envoy's requests: the sum of `http.<stat_prefix>.downstream_rq_total` over every listener but the admin
  one, from the admin endpoint, once before and once after the window (the two reads fall outside the
  window, so their cost is not counted). Only the measured listener takes requests during a window;
  the calls Envoy makes (to the AS, the upstream Envoy, etcd, the authorizer) are upstream requests and
  are not in this sum. This counts the requests that Envoy answered, including the few that oha
  cancelled at its deadline.
- CPU time: user + system (fields 14 and 15 of `/proc/<pid>/stat`, in clock ticks of
  `os.sysconf("SC_CLK_TCK")`) of every tracked process and its descendants, and of Envoy's worker thread
  (`/proc/<pid>/task/<tid>/stat`, the thread named `wrk:worker_0`).

CPU per request = the CPU time of the window / Envoy's requests of the window. Resolution: one clock
tick (10 ms at 100 Hz) per window and process, i.e. 0.2 % of a 5 s window in which Envoy is busy.

Pinning (`pin_plan`): with two usable cores or more, the load generator (oha) runs on the first, the
bench Envoy (all its threads) alone on the second, and everything else (the bench script, the AS, the
ext_authz authorizer, the upstream Envoy, etcd) on the remaining cores, or with oha when there are only
two. `BENCH_PIN=0` turns pinning off.
"""

import json
import os
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(path):
    """The fields of a /proc stat file after the command name (which may hold spaces and parentheses)."""
    with open(path) as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()


def cpu_ticks(path):
    """utime + stime (fields 14, 15) of a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat, in ticks."""
    rest = _stat_fields(path)
    return int(rest[11]) + int(rest[12])


def descendants(pid):
    """pid and every process below it now (a wrapper that forked would otherwise hide its child's CPU)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_stat_fields(f"/proc/{entry}/stat")[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return sorted(out)


def tasks(pid):
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []


def task_name(pid, tid):
    try:
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def pin_plan():
    """Which cores the load generator, the bench Envoy and the rest get, or None (not pinned)."""
    cores = sorted(os.sched_getaffinity(0))
    if os.environ.get("BENCH_PIN", "1") == "0" or len(cores) < 2:
        return None
    return {"load_generator": [cores[0]], "envoy": [cores[1]], "others": cores[2:] or [cores[0]], "usable_cores": cores}


def pin_process(pid, cpus):
    """Every thread of pid (and of its descendants) onto cpus; threads created later inherit it."""
    for p in descendants(pid):
        for tid in tasks(p):
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass


def affinity_of(pid):
    """The cores each thread of pid may run on, as a sorted list of distinct sets (one set: all agree)."""
    seen = set()
    for tid in tasks(pid):
        try:
            seen.add(tuple(sorted(os.sched_getaffinity(tid))))
        except OSError:
            pass
    return [list(s) for s in sorted(seen)]


class Meter:
    """CPU time per request of the bench Envoy (process and worker thread) and of the other processes."""

    def __init__(self, admin_port, envoy_pid, others):
        """others: name -> pid (the process and its descendants are summed)."""
        self.admin_port = admin_port
        self.envoy_pid = envoy_pid
        self.pids = {"envoy": descendants(envoy_pid), **{k: descendants(p) for k, p in others.items()}}
        self.worker = next((t for t in tasks(envoy_pid) if task_name(envoy_pid, t).startswith("wrk:worker")), None)

    def requests(self):
        """Requests answered by the bench Envoy's listeners so far (the admin listener left out)."""
        url = f"http://127.0.0.1:{self.admin_port}/stats?format=json&filter=^http\\..*\\.downstream_rq_total$"
        with urllib.request.urlopen(url, timeout=10) as r:
            stats = json.loads(r.read())["stats"]
        return sum(int(s.get("value", 0)) for s in stats
                   if "name" in s and s["name"] != "http.admin.downstream_rq_total")

    def cpu(self):
        out = {}
        for name, pids in self.pids.items():
            total = 0
            for p in pids:
                try:
                    total += cpu_ticks(f"/proc/{p}/stat")
                except (OSError, ValueError, IndexError):
                    pass  # gone: its last ticks are lost to this window, said by `missing` below
            out[name] = total
        if self.worker is not None:
            try:
                out["envoy_worker"] = cpu_ticks(f"/proc/{self.envoy_pid}/task/{self.worker}/stat")
            except (OSError, ValueError, IndexError):
                pass
        return out

    def start(self):
        rq = self.requests()
        return rq, self.cpu(), time.monotonic()

    def stop(self, started):
        rq0, cpu0, t0 = started
        cpu1, t1 = self.cpu(), time.monotonic()
        rq1 = self.requests()
        return {"requests": rq1 - rq0, "seconds": t1 - t0,
                "cpu_us": {k: (cpu1[k] - cpu0.get(k, 0)) * 1e6 / CLK_TCK for k in cpu1}}
