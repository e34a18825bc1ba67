"""The differential test of certbound's parameter rule against real decoders.

The same generated cases (gen.py) go, one batch at a time, to certbound's
oracle (crates/certbound-core/examples/judge_params.rs) and to the real
decoders, each one process reading the whole batch on stdin:

- ``php``: PHP's ``parse_str`` (decode_php.php, Debian's php-cli);
- ``java:<charset>``: the JDK decoding parameters as Tomcat does (DecodeTomcat.java);
- ``qs``, ``qs-dots``, ``urlsearchparams``, ``querystring``: Node (decode_node.js, npm ``qs`` pinned);
- ``python:<charset>``, ``python-semicolon:<charset>``, ``django:<charset>``: ``urllib.parse.parse_qsl`` (decode_python.py).

A case fails when a decoder reads a token parameter certbound does not
refuse (see ``check``). The run also counts what certbound refuses among the
cases no decoder reads as carrying a token parameter.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# DIFF_ORACLE: another build of the oracle (e.g. a copy, so that a long run
# keeps one build while the tree is rebuilt).
ORACLE = Path(os.environ.get("DIFF_ORACLE") or ROOT / "target" / "release" / "examples" / "judge_params")
OUT_DIR = ROOT / "target" / "decoders"
CLASSES = OUT_DIR / "classes"
NODE_MODULES = HERE / "node_modules"
FAILURES = OUT_DIR / "failures.jsonl"

# What each context's check is about: the names a decoder must not read
# there unless certbound refuses (resource, endpoint_query) or judges the
# same value (token, introspection).
CONTEXTS = {
    "query": {
        "resource": ("access_token",),
        "endpoint_query": ("refresh_token", "token", "client_id", "grant_type", "client_secret", "code"),
    },
    "form": {
        "resource": ("access_token",),
        "token": ("refresh_token",),
        "introspection": ("token",),
    },
}
VALUE_CONTEXTS = {"token", "introspection"}
# The other names certbound judges in a context (client_auth::TOKEN_PARAMETERS,
# form::BODY_ONLY_PARAMETERS): a benign case refused while a decoder reads one
# of these is refused by the rule for judged names, not for nothing.
ALSO_JUDGED = {
    "resource": (),
    "endpoint_query": (
        "client_assertion",
        "client_assertion_type",
        "code_verifier",
        "redirect_uri",
        "token_type_hint",
        "scope",
        "resource",
    ),
    "token": ("client_id", "grant_type", "client_secret", "client_assertion", "client_assertion_type"),
    "introspection": (),
}


def commands():
    return {
        "certbound": [str(ORACLE)],
        "php": ["php", "-d", "max_input_vars=1000", str(HERE / "decode_php.php")],
        "java": ["java", "-XX:+UseSerialGC", "-Xshare:auto", "-cp", str(CLASSES), "DecodeTomcat"],
        "node": ["node", str(HERE / "decode_node.js")],
        "python": [sys.executable, str(HERE / "decode_python.py")],
    }


def missing():
    """What the run needs and does not find (`make decoders` builds and installs it)."""
    out = []
    for tool in ("php", "java", "node"):
        if shutil.which(tool) is None:
            out.append(f"{tool} (not on PATH)")
    if not ORACLE.exists():
        out.append(f"{ORACLE} (cargo build --release -p certbound-core --example judge_params)")
    if not (CLASSES / "DecodeTomcat.class").exists():
        out.append(f"{CLASSES.relative_to(ROOT)}/DecodeTomcat.class (javac)")
    if not (NODE_MODULES / "qs").exists():
        out.append("tests/decoders/node_modules/qs (npm ci)")
    return out


def versions():
    def first_line(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError) as e:
            return f"unavailable ({e})"

    qs_version = "missing"
    try:
        qs_version = json.loads((NODE_MODULES / "qs" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        pass
    return {
        "php": first_line(["php", "-v"]),
        "java": first_line(["java", "-version"]),
        "node": first_line(["node", "--version"]),
        "qs": qs_version,
        "python": sys.version.split()[0],
    }


def case_line(case):
    return json.dumps(
        {
            "id": case["id"],
            "where": case["where"],
            "content_type": case["content_type"],
            "charsets": case["charsets"],
            "data": base64.b64encode(case["data"]).decode(),
        }
    )


class Batch:
    """One batch of cases through every decoder and the oracle, each a single
    process reading them all, the processes running side by side."""

    def __init__(self, cases):
        self.cases = cases
        self.input = ("\n".join(case_line(c) for c in cases) + "\n").encode()
        self.results = {}
        self.errors = {}
        self.seconds = {}
        self.threads = []
        for name, cmd in commands().items():
            t = threading.Thread(target=self._run, args=(name, cmd), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, name, cmd):
        start = time.monotonic()
        try:
            p = subprocess.run(cmd, input=self.input, capture_output=True, cwd=ROOT, timeout=3600)
        except (OSError, subprocess.SubprocessError) as e:
            self.errors[name] = str(e)
            return
        self.seconds[name] = time.monotonic() - start
        if p.returncode != 0:
            self.errors[name] = f"exit {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}"
            return
        self.results[name] = p.stdout

    def wait(self):
        """Per case id: the oracle's verdict and every decoder's readings."""
        for t in self.threads:
            t.join()
        if self.errors:
            raise RuntimeError(f"decoder failed: {self.errors}")
        verdicts = {}
        readings = defaultdict(dict)
        unsupported = defaultdict(dict)
        for name, out in self.results.items():
            # Split on "\n" only: a JSON string may hold U+2028 or U+0085 as it is.
            lines = out.decode().split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            if len(lines) != len(self.cases):
                raise RuntimeError(f"{name} answered {len(lines)} lines for {len(self.cases)} cases")
            for line in lines:
                row = json.loads(line)
                if name == "certbound":
                    verdicts[row["id"]] = row
                else:
                    readings[row["id"]].update(row["r"])
                    if "err" in row:
                        unsupported[row["id"]].update(row["err"])
        return verdicts, readings, unsupported


def check(case, verdict, readings):
    """The failures of one case: (context, reading, name, value) for each
    token parameter a decoder reads that certbound lets through; and, per
    context, whether any decoder reads the case as carrying a token parameter."""
    failures = []
    carrying = {}
    for ctx, names in CONTEXTS[case["where"]].items():
        v = verdict[ctx]
        carrying[ctx] = False
        for reading, pairs in readings.items():
            for name, value in pairs:
                if name not in names:
                    continue
                carrying[ctx] = True
                if v["refused"]:
                    continue
                if ctx in VALUE_CONTEXTS:
                    if value != "" and v.get("value") != value:
                        failures.append((ctx, reading, name, value))
                else:
                    failures.append((ctx, reading, name, value))
    return failures, carrying


class Summary:
    def __init__(self):
        self.cases = Counter()  # where -> count
        self.ctx_cases = Counter()
        self.carrying = Counter()  # ctx -> cases some decoder reads a token parameter in
        self.carrying_refused = Counter()
        self.failed_cases = 0
        self.failures = Counter()  # ctx -> failing cases
        self.classes = {}  # class -> [count, shortest example]
        self.benign = Counter()  # ctx -> cases no decoder reads a token parameter in
        self.benign_refused = Counter()  # ctx -> refused among them
        self.benign_reasons = Counter()  # (ctx, reason)
        self.benign_refused_judged = Counter()  # ctx -> of those refused, a decoder reads another judged name
        self.family = Counter()  # (ctx, family) -> benign form bodies
        self.family_refused = Counter()
        self.family_reasons = Counter()  # (ctx, family, reason)
        self.unsupported = Counter()  # reading -> cases a decoder could not read (charset unknown to it)
        self.seconds = Counter()

    def add(self, case, verdict, readings, unsupported, failure_sink=None):
        where = case["where"]
        self.cases[where] += 1
        for reading in unsupported:
            self.unsupported[reading] += 1
        failures, carrying = check(case, verdict, readings)
        if failures:
            self.failed_cases += 1
        for ctx in {f[0] for f in failures}:
            self.failures[ctx] += 1
        for ctx, carried in carrying.items():
            self.ctx_cases[ctx] += 1
            refused = verdict[ctx]["refused"]
            if carried:
                self.carrying[ctx] += 1
                self.carrying_refused[ctx] += refused
                continue
            self.benign[ctx] += 1
            reason = verdict[ctx].get("reason", "")
            if refused:
                self.benign_refused[ctx] += 1
                self.benign_reasons[(ctx, reason)] += 1
                also = ALSO_JUDGED[ctx]
                if also and any(n in also for pairs in readings.values() for n, _ in pairs):
                    self.benign_refused_judged[ctx] += 1
            if where == "form":
                fam = case["family"] + (" + byte-order mark" if case["bom"] else "")
                self.family[(ctx, fam)] += 1
                if refused:
                    self.family_refused[(ctx, fam)] += 1
                    self.family_reasons[(ctx, fam, reason)] += 1
        seen = set()
        for ctx, reading, name, value in failures:
            decoder = reading.split(":", 1)[0]
            key = (where, ctx, decoder, name)
            if key in seen:
                continue
            seen.add(key)
            entry = self.classes.setdefault(key, [0, None])
            entry[0] += 1
            if entry[1] is None or len(case["data"]) < len(entry[1]["data"]):
                entry[1] = {**case, "reading": reading, "value": value, "verdict": verdict[ctx]}
        if failures and failure_sink is not None:
            failure_sink.write(
                json.dumps(
                    {
                        "id": case["id"],
                        "where": where,
                        "content_type": case["content_type"],
                        "data": base64.b64encode(case["data"]).decode(),
                        "data_escaped": escaped(case["data"]),
                        "tags": case["tags"],
                        "failures": [
                            {"context": c, "reading": r, "name": n, "value": v, "certbound": verdict[c]}
                            for c, r, n, v in failures
                        ],
                        "readings": readings,
                    }
                )
                + "\n"
            )

    def failure_lines(self):
        if not self.classes:
            return []
        lines = ["failure classes (where, context, decoder, name read): count, shortest example"]
        for key, (count, ex) in sorted(self.classes.items(), key=lambda kv: -kv[1][0]):
            lines.append(
                f"  {key}: {count} cases, e.g. data={escaped(ex['data'])!s} content_type={ex['content_type']!r}"
                f" {ex['reading']} read {key[3]}={ex['value']!r}, certbound: {json.dumps(ex['verdict'])}"
            )
        return lines

    def report(self):
        lines = []
        total = sum(self.cases.values())
        lines.append(
            f"cases: {total} ({self.cases['query']} queries, {self.cases['form']} form bodies); "
            f"failures: {self.failed_cases}"
        )
        lines.append("per context: cases | read as carrying a token parameter by some decoder (refused) | failures")
        for ctx in ("resource", "endpoint_query", "token", "introspection"):
            where = "query" if ctx == "endpoint_query" else ("form" if ctx in VALUE_CONTEXTS else "query+form")
            lines.append(
                f"  {ctx:<15} {where:<10} {self.ctx_cases[ctx]:>8} | {self.carrying[ctx]:>7} "
                f"({self.carrying_refused[ctx]} refused) | {self.failures[ctx]}"
            )
        lines.extend(self.failure_lines())
        lines.append("over-refusals: cases no decoder reads as carrying the context's token parameter, refused by certbound")
        for ctx in ("resource", "endpoint_query", "token", "introspection"):
            n, r = self.benign[ctx], self.benign_refused[ctx]
            lines.append(f"  {ctx}: {r} of {n} ({pct(r, n)})")
            if ALSO_JUDGED[ctx]:
                j = self.benign_refused_judged[ctx]
                lines.append(
                    f"      (of which {j} have another name certbound judges there read by some decoder: "
                    f"{', '.join(ALSO_JUDGED[ctx])}; {r - j} of {n} ({pct(r - j, n)}) do not)"
                )
            reasons = sorted(((k[1], c) for k, c in self.benign_reasons.items() if k[0] == ctx), key=lambda x: -x[1])
            for reason, c in reasons:
                lines.append(f"      {reason}: {c}")
        lines.append("  form bodies by declared charset (refused of benign, and why):")
        fams = sorted({k[1] for k in self.family})
        for ctx in ("resource", "token", "introspection"):
            lines.append(f"    {ctx}:")
            for fam in fams:
                n, r = self.family[(ctx, fam)], self.family_refused[(ctx, fam)]
                if not n:
                    continue
                why = ", ".join(
                    f"{k[2]} {c}"
                    for k, c in sorted(self.family_reasons.items(), key=lambda kv: -kv[1])
                    if k[0] == ctx and k[1] == fam
                )
                lines.append(f"      {fam:<28} {r:>7} of {n:>7} ({pct(r, n)}){': ' + why if why else ''}")
            for label, group in family_groups(fams):
                n = sum(self.family[(ctx, f)] for f in group)
                r = sum(self.family_refused[(ctx, f)] for f in group)
                lines.append(f"      = {label:<44} {r:>7} of {n:>7} ({pct(r, n)})")
        if self.unsupported:
            lines.append(
                "readings a decoder could not make (charset it does not know; Tomcat fails such a request): "
                + ", ".join(f"{k} {c}" for k, c in sorted(self.unsupported.items()))
            )
        if self.seconds:
            lines.append("process seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(self.seconds.items())))
        return "\n".join(lines)


def family_groups(fams):
    """The families the issue asks the over-refusal share for, and the rest."""
    plain = [f for f in fams if "mark" not in f]
    return [
        ("utf-8, us-ascii, latin-1 (iso-8859-1, windows-1252)", [f for f in plain if f in ("utf-8", "us-ascii", "latin-1")]),
        ("no charset", [f for f in plain if f == "none"]),
        ("other ISO-8859 / Windows-125x", [f for f in plain if f == "iso-8859-n/windows-125x"]),
        ("other charsets", [f for f in plain if f == "other"]),
        ("a byte-order mark, any charset", [f for f in fams if "mark" in f]),
    ]


def pct(a, b):
    return f"{100.0 * a / b:.1f} %" if b else "-"


def escaped(data):
    """Bytes as a readable string: printable ASCII as it is, the rest \\xNN."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in data)


def run(case_iter, chunk=25_000, failures_path=FAILURES, progress=None):
    """Runs every case of `case_iter` in batches of `chunk`, the next batch
    generated while the decoders read the current one. Returns the Summary."""
    failures_path = Path(failures_path)
    failures_path.parent.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    it = iter(case_iter)

    def next_chunk():
        out = []
        for c in it:
            out.append(c)
            if len(out) >= chunk:
                break
        return out

    started = time.monotonic()
    # Written aside and moved into place at the end, so that a run that is
    # going on never shares its file with another.
    partial = failures_path.with_name(f"{failures_path.name}.{os.getpid()}.partial")
    with open(partial, "w") as sink:
        cases = next_chunk()
        while cases:
            batch = Batch(cases)
            upcoming = next_chunk()
            verdicts, readings, unsupported = batch.wait()
            for name, s in batch.seconds.items():
                summary.seconds[name] += s
            for case in cases:
                summary.add(case, verdicts[case["id"]], readings[case["id"]], unsupported.get(case["id"], {}), sink)
            if progress:
                done = sum(summary.cases.values())
                progress(f"{done} cases, {summary.failed_cases} failing, {time.monotonic() - started:.0f} s")
            cases = upcoming
    if summary.failed_cases:
        os.replace(partial, failures_path)
    else:
        # No failures: neither this run's empty file nor an older run's stays.
        for p in (partial, failures_path):
            try:
                os.remove(p)
            except OSError:
                pass
    return summary
