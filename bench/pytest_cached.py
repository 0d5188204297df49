"""Fully cached specs in one pytest session: milliseconds per spec, against plain pytest tests.

Run as root: `.venv/bin/python bench/pytest_cached.py [--specs 200] [--runs 3]`. Makes a
btrfs loop filesystem, imports the busybox image, writes N specs
`((from busybox) (shell /bin/sh -c) (run (shell "echo I")))` and builds them once; then times
`pytest -q -p no:cacheprovider DIR --obuilder-store=btrfs:...` with every spec cached, against
the floor of the same pytest run over N trivial Python tests (`def test_I(): pass`), and
prints the extra milliseconds per spec (issue 12's goal: at most 20 ms per cached spec).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from snapshot import loop_btrfs  # noqa: E402  (bench/ is not a package)
from workload import busybox_image  # noqa: E402

from obuilder_core.images import LocalImages  # noqa: E402
from obuilder_core.stores import open_store  # noqa: E402


def pytest_run(directory: Path, *options: str) -> float:
    """Seconds taken by one pytest session over `directory` (failing loudly)."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)]
    t = time.perf_counter()
    proc = subprocess.run([*argv, *options], capture_output=True, text=True, cwd=directory)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    oci = busybox_image()
    with loop_btrfs() as mnt, tempfile.TemporaryDirectory(prefix="obuilder-pc-") as work:
        specs, plain = Path(work, "specs"), Path(work, "plain")
        specs.mkdir()
        plain.mkdir()
        for i in range(args.specs):
            (specs / f"s{i:04d}.spec").write_text(
                f'((from busybox) (shell /bin/sh -c) (run (shell "echo {i}")))\n'
            )
        (plain / "test_plain.py").write_text(
            "".join(f"def test_{i}():\n    pass\n\n" for i in range(args.specs))
        )
        store = f"btrfs:{mnt / 'store'}"
        LocalImages(open_store(store).state_dir() / "images").import_("busybox", oci)
        pytest_run(specs, f"--obuilder-store={store}")  # builds every spec once
        cached = [pytest_run(specs, f"--obuilder-store={store}") for _ in range(args.runs)]
        floor = [pytest_run(plain) for _ in range(args.runs)]
    c, f = statistics.median(cached), statistics.median(floor)
    n = args.specs
    print(
        f"{n} cached specs in one pytest session, medians of {args.runs} runs: "
        f"{c * 1e3:.0f} ms; {n} plain tests: {f * 1e3:.0f} ms; "
        f"{(c - f) / n * 1e3:.1f} ms more per spec (goal: 20)"
    )


if __name__ == "__main__":
    main()
