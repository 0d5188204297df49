"""Reading and parsing very big specs: one list of a million atoms, and 200,000 operations.

Run: `.venv/bin/python bench/parse.py [--runs 5]`. Prints the median CPU time of `parse_spec`
for each, next to its floor measured in the same run (splitting the same text into words with
`str.split`, which is as little as any reader can do) and the ratio. Target: a million atoms
in under 1 s. Both used to take 6-7 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from obuilder_core.spec import parse_spec

TARGET_S = 1.0


def cpu_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median CPU time of `fn()` over `runs` runs."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    atoms = " ".join(f"file{i}.o" for i in range(1_000_000))
    cases = {
        "1M atoms (copy ... (exclude ...))": (
            f"((from busybox) (copy (src .) (dst /src) (exclude {atoms})))"
        ),
        "200k operations (env ...)": (
            "((from busybox) " + " ".join(f"(env K{i} v{i})" for i in range(200_000)) + ")"
        ),
    }
    print(f"{'spec':36} {'parse':>8} {'floor':>8} {'ratio':>6}")
    worst_atoms = 0.0
    for name, text in cases.items():
        parsed = cpu_seconds(lambda text=text: parse_spec(text), args.runs)  # type: ignore[misc]
        floor = cpu_seconds(lambda text=text: text.split(), args.runs)  # type: ignore[misc]
        print(f"{name:36} {parsed:7.2f}s {floor:7.3f}s {parsed / floor:6.1f}")
        if name.startswith("1M"):
            worst_atoms = parsed
    verdict = "met" if worst_atoms < TARGET_S else "MISSED"
    print(f"target: a million atoms in under {TARGET_S:g} s: {verdict}")
    return 0 if worst_atoms < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
