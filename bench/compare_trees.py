"""Comparing two copies of workload W's 40 MB tree, as `obuilder verify` does, against xxhsum.

Run: `flock /tmp/obuilder-pytest.lock .venv/bin/python bench/compare_trees.py [--runs 5]`.
Needs `xxhsum` (Debian package `xxhash`). Generates srcdir/ (WORKLOAD.md) as tree A, copies it
with `cp -a` to tree B (new inodes, so the stat cache, not the same-inode shortcut, is what
avoids reading), and prints medians, over interleaved rounds, of:

  cold     compare_trees with an empty stat cache (reads every file of both trees)
  warm     compare_trees with the stat cache filled by an earlier run (opened anew each time,
           as in verify's process): A's digests are cached, B (verify's rebuild, a scratch
           tree) is read
  floor    `find A B -type f -print0 | xargs -0 xxhsum -H3`: hashing every file of both trees
           (XXH3, as the project's xxh3-128 digest) in one C process, page cache warm
  diff -r  for reference: GNU diff reading both trees

the ratios cold / floor and warm / floor, and the load average (other work skews the figures).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from obuilder_core.builder.tree_diff import compare_trees  # noqa: E402
from obuilder_core.stat_cache import RACY_WINDOW_NS, StatCache  # noqa: E402


def make_srcdir(root: Path) -> Path:
    """Workload W's source tree (5,000 files of 8,000 random bytes) under `root/srcdir`."""
    random.seed(20240601)
    for d in range(50):
        dd = root / "srcdir" / f"d{d:02d}"
        dd.mkdir(parents=True, exist_ok=True)
        for f in range(100):
            (dd / f"f{d * 100 + f:04d}.bin").write_bytes(random.randbytes(8000))
    return root / "srcdir"


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call of `fn`, in seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def xxhsum_floor(a: Path, b: Path) -> None:
    """Hash every file of both trees with xxhsum (output discarded)."""
    subprocess.run(
        f"find {a} {b} -type f -print0 | xargs -0 xxhsum -H3 >/dev/null",
        shell=True,
        check=True,
    )


def main() -> None:
    """Build the trees, time the comparisons, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        work = Path(tmp)
        a = make_srcdir(work / "A")
        b = work / "B"
        subprocess.run(["cp", "-a", str(a), str(b)], check=True)
        # Files changed within the racy window are hashed but not cached: wait it out.
        time.sleep(RACY_WINDOW_NS / 1e9 + 0.5)
        xxhsum_floor(a, b)  # warm the page cache

        def cold() -> None:
            path = work / f"cold-{os.urandom(4).hex()}.sqlite"
            with StatCache(path) as cache:
                assert compare_trees(a, b, stat_cache=cache).same

        def warm() -> None:
            # A new connection each time, as verify's process has: no rows in memory.
            with StatCache(work / "warm.sqlite") as cache:
                assert compare_trees(a, b, stat_cache=cache).same

        def diff_r() -> None:
            subprocess.run(["diff", "-r", str(a), str(b)], check=True)

        warm()  # fills the cache
        # Interleaved rounds, so that the VM's drifting speed moves every figure alike.
        scenarios = {"floor": lambda: xxhsum_floor(a, b), "cold": cold, "warm": warm,
                     "diff": diff_r}  # fmt: skip
        samples: dict[str, list[float]] = {name: [] for name in scenarios}
        for _ in range(args.runs):
            for name, fn in scenarios.items():
                samples[name].append(timed(fn))
        t_floor, t_cold, t_warm, t_diff = (statistics.median(samples[n]) for n in scenarios)
    load_after = os.getloadavg()
    print(f"workload W tree: 5000 files, 40 MB, two copies; medians of {args.runs} runs")
    print(f"  compare_trees cold (no stat cache): {t_cold * 1000:8.1f} ms")
    print(f"  compare_trees warm (stat cache):    {t_warm * 1000:8.1f} ms")
    print(f"  xxhsum -H3 over both (floor):       {t_floor * 1000:8.1f} ms")
    print(f"  diff -r (reference):                {t_diff * 1000:8.1f} ms")
    print(f"  ratio cold / floor: {t_cold / t_floor:.2f}   warm / floor: {t_warm / t_floor:.2f}")
    fmt = ", ".join
    print(
        f"  load average (1, 5, 15 min): before {fmt(f'{x:.2f}' for x in load_before)};"
        f" after {fmt(f'{x:.2f}' for x in load_after)} ({os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
