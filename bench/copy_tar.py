"""Micro-benchmark: the copy step's host side (manifest + tar stream) against host GNU tar.

Workload W's source tree (5,000 files of 8,000 bytes in 50 dirs, ../shared/bench/WORKLOAD.md) is
generated in a temporary directory. Each figure is the median of several runs in this process,
printed beside its floor measured in the same run:

- stream:     write_copy_tar of the tree into a pipe read by `cat > /dev/null`
                vs `tar -cf - srcdir | cat > /dev/null` (cat defeats GNU tar's /dev/null shortcut)
- stream+x:   write_copy_tar piped into `tar -xf - -C fresh` vs `tar -cf - srcdir | tar -xf -`
- manifest:   generate() with no stat cache (every file read and hashed), and with a warm stat
                cache (no file read), both against the `tar -cf` floor

Run: .venv/bin/python bench/copy_tar.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from obuilder_core.copy_tar import write_copy_tar
from obuilder_core.manifest import Manifest, generate
from obuilder_core.paths import CopyShape
from obuilder_core.spec.model import UnixUser
from obuilder_core.stat_cache import StatCache


def make_workload(ctx: Path) -> None:
    """Workload W's srcdir, byte for byte."""
    random.seed(20240601)
    for d in range(50):
        dd = ctx / "srcdir" / f"d{d:02d}"
        dd.mkdir(parents=True, exist_ok=True)
        for f in range(100):
            (dd / f"f{d * 100 + f:04d}.bin").write_bytes(random.randbytes(8000))


def median_time(
    fn: Callable[[], object], runs: int, setup: Callable[[], object] = lambda: None
) -> float:
    """Median wall time of `fn` over `runs` runs (after one warm-up run); `setup` is untimed."""
    setup()
    fn()
    times = []
    for _ in range(runs):
        setup()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def shell(cmd: str, cwd: Path) -> None:
    subprocess.run(["bash", "-c", cmd], cwd=cwd, check=True)


def stream_into(argv: list[str], ctx: Path, m: Manifest) -> None:
    """Send the copy stream of `m` into the stdin of `argv`, like the builder into the sandbox."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    with proc.stdin as pipe:
        write_copy_tar(pipe, ctx, [m], "/src", CopyShape.MULTI, UnixUser(0, 0))
    if proc.wait() != 0:
        raise SystemExit(f"{argv} failed")


def fresh_dir(base: Path) -> Path:
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-copy-tar-", dir="/var/tmp") as tmp:
        ctx = Path(tmp) / "ctx"
        make_workload(ctx)
        time.sleep(2.1)  # older than the stat cache's racy window, as a real checkout is
        out = Path(tmp) / "out"
        m = generate(ctx, "srcdir", [])
        n = args.runs

        tar_c = median_time(lambda: shell("tar -cf - srcdir | cat > /dev/null", ctx), n)
        ours = median_time(lambda: stream_into(["bash", "-c", "cat > /dev/null"], ctx, m), n)

        def host_tar_x() -> None:
            shell(f"tar -cf - srcdir | tar -xf - -C {out}", ctx)

        def ours_x() -> None:
            stream_into(["tar", "-xf", "-", "-C", str(out)], ctx, m)

        tar_cx = median_time(host_tar_x, n, setup=lambda: fresh_dir(out))
        ours_cx = median_time(ours_x, n, setup=lambda: fresh_dir(out))

        cold = median_time(lambda: generate(ctx, "srcdir", []), n)
        db = Path(tmp) / "stat.db"
        with StatCache(db) as cache:
            generate(ctx, "srcdir", [], stat_cache=cache)
            warm = median_time(lambda: generate(ctx, "srcdir", [], stat_cache=cache), n)
        assert os.path.exists(db)

    print(f"workload W copy, host side, median of {n} runs (ratio = ours / floor)")
    rows = [
        ("stream -> cat", ours, tar_c, "tar -cf - | cat"),
        ("stream -> tar -x", ours_cx, tar_cx, "tar -cf - | tar -x"),
        ("manifest, no stat cache", cold, tar_c, "tar -cf - | cat"),
        ("manifest, warm stat cache", warm, tar_c, "tar -cf - | cat"),
        ("manifest(warm) + stream -> tar -x", warm + ours_cx, tar_cx, "tar -cf - | tar -x"),
    ]
    for name, t, floor, floor_name in rows:
        print(
            f"{name:36s} {t * 1000:8.1f} ms  floor {floor * 1000:8.1f} ms ({floor_name})"
            f"  ratio {t / floor:5.2f}"
        )


if __name__ == "__main__":
    main()
