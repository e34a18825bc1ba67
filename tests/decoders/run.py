#!/usr/bin/env python3
"""The differential test, long (make fuzz): certbound's parameter rule against
real decoders over many generated cases, streamed in batches so that 10^6
cases fit in memory.

    python tests/decoders/run.py --cases 1000000 [--seed N] [--chunk 25000]

Needs what `make decoders-build` builds. Prints the seed, progress, then the
summary; the failing cases go to target/decoders/failures.jsonl. Exits 1
when a decoder reads a token parameter that certbound does not refuse.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen  # noqa: E402
import harness  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=None, help="default: chosen from the clock, and printed")
    ap.add_argument("--chunk", type=int, default=25_000, help="cases per batch (one process per decoder per batch)")
    ap.add_argument("--failures", default=str(harness.FAILURES))
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    gone = harness.missing()
    if gone:
        print("missing (make decoders-build): " + "; ".join(gone), file=sys.stderr)
        return 2
    print(f"differential test: {args.cases} cases, seed {seed}, batches of {args.chunk}", flush=True)
    for k, v in harness.versions().items():
        print(f"  {k}: {v}")
    started = time.monotonic()
    summary = harness.run(
        gen.cases(seed, args.cases),
        chunk=args.chunk,
        failures_path=args.failures,
        progress=lambda s: print("  " + s, file=sys.stderr, flush=True),
    )
    elapsed = time.monotonic() - started
    print(summary.report())
    print(f"seed {seed}: {args.cases} cases in {elapsed:.0f} s ({args.cases / max(elapsed, 1e-9):.0f} cases/s)")
    if summary.failed_cases:
        print(f"FAILED: {summary.failed_cases} cases; they are in {args.failures}")
        return 1
    print("0 failures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
