"""Scores a cargo-mutants run per file: caught / viable, where viable is
caught + missed + timed out (a timeout is a test that noticed: it hung).
Unviable mutants (that do not build) are not counted. Prints one row per
file and the missed mutants, minus those the README explains as equivalent
(tests/mutants/equivalent.txt: one mutant name a line, `#` comments), and
exits 1 when a file scores under the target.

    python tests/mutants/score.py target/mutants/all/mutants.out [--target 95]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def equivalent() -> set[str]:
    path = HERE / "equivalent.txt"
    if not path.exists():
        return set()
    return {line.split("#", 1)[0].strip() for line in path.read_text().splitlines() if line.split("#", 1)[0].strip()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path, help="the mutants.out directory of a run")
    ap.add_argument("--target", type=float, default=95.0, help="the lowest score a file may have, in percent")
    args = ap.parse_args()
    outcomes = json.loads((args.out / "outcomes.json").read_text())["outcomes"]
    known = equivalent()
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    missed: list[str] = []
    for o in outcomes:
        mutant = o["scenario"].get("Mutant") if isinstance(o["scenario"], dict) else None
        if not mutant:
            continue
        kind = o["summary"]
        name = mutant["name"]
        # The line:column prefix moves with every edit; equivalents are named without it.
        stable = f'{mutant["file"]}: {name.split(": ", 1)[1]}' if ": " in name else name
        if kind == "MissedMutant" and stable in known:
            kind = "Equivalent"
        rows[mutant["file"]][kind] += 1
        if kind == "MissedMutant":
            missed.append(name)
    failed = False
    print(f"{'file':52} {'caught':>6} {'missed':>6} {'timeout':>7} {'equiv':>5} {'unviable':>8} {'score':>7}")
    for f in sorted(rows):
        r = rows[f]
        caught, miss, timeout = r["CaughtMutant"], r["MissedMutant"], r["Timeout"]
        viable = caught + miss + timeout
        score = 100.0 * (caught + timeout) / viable if viable else 100.0
        failed |= score < args.target
        print(f"{f:52} {caught:6} {miss:6} {timeout:7} {r['Equivalent']:5} {r['Unviable']:8} {score:6.1f}%")
    for name in missed:
        print(f"missed: {name}")
    if failed:
        print(f"a file scores under {args.target}%", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
