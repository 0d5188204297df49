"""Snapshot cost of the btrfs store against raw btrfs snapshots, for trees of 1k and 20k files.

Run as root: `.venv/bin/python bench/snapshot.py [--runs 7] [--sizes 1000 20000]`.
Makes its own loop device with a btrfs filesystem and removes it at the end (even on error).

For each tree size N it builds a parent step with N files, then times, median of --runs:
  store   `store.build(child, parent, no-op)`: writable snapshot, read-only snapshot, delete;
  raw     one `btrfs subvolume snapshot` of the parent's step dir (a clone by the command);
  floor   `snapshot` + `snapshot -r` + `subvolume delete` (the WORKLOAD.md floor of a step, by
          the `btrfs` command: what the store cost when it ran the command);
  ioctl   the same three as in-process ioctls (`btrfs_ioctl`), the floor of the store now;
and prints the medians and the ratios store/raw, store/floor and store/ioctl. A ratio that stays
flat from 1k to 20k files shows that snapshot cost does not grow with the size of the tree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from obuilder_core.sandbox import state_dir_for
from obuilder_core.stores import btrfs_ioctl
from obuilder_core.stores.btrfs import BtrfsStore
from obuilder_core.stores.btrfs import open_backend as open_btrfs


def remove_sandbox_dirs(root: Path) -> None:
    """Remove the sandbox state dirs (`/run/obuilder/sandbox-*`, tmpfs) of the stores a bench
    made below `root` (their state dirs: `root/*/state`, `root/*/*/state`), which would pile
    up until a reboot; one still holding a container is kept."""
    for state in [*root.glob("*/state"), *root.glob("*/*/state")]:
        sandbox = state_dir_for(state)
        if sandbox.is_dir() and not any((sandbox / "runc").glob("*")):
            shutil.rmtree(sandbox, ignore_errors=True)


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory for a bench's stores, removed with their sandbox state dirs."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        try:
            yield Path(tmp)
        finally:
            remove_sandbox_dirs(Path(tmp))


def sh(*argv: str) -> str:
    """Run a command, failing loudly."""
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def loop_btrfs(size: str = "4G") -> Iterator[Path]:
    """A freshly made btrfs filesystem on a loop device; unmounted and detached afterwards."""
    work = Path(tempfile.mkdtemp(prefix="obuilder-bench-"))
    image, mnt = work / "btrfs.img", work / "mnt"
    mnt.mkdir()
    loop, mounted = None, False
    try:
        sh("truncate", "-s", size, str(image))
        loop = sh("losetup", "--find", "--show", str(image))
        sh("mkfs.btrfs", "-q", loop)
        sh("mount", "-t", "btrfs", loop, str(mnt))
        mounted = True
        yield mnt
    finally:
        remove_sandbox_dirs(mnt)
        if mounted and subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mnt)], check=False)
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False)
        shutil.rmtree(work, ignore_errors=True)


def tree_of(n: int) -> Callable[[Path], None]:
    """A build function writing `n` small files in directories of 100."""

    def fn(tmp: Path) -> None:
        root = tmp / "rootfs"
        for i in range(n):
            d = root / f"d{i // 100:04d}"
            if i % 100 == 0:
                d.mkdir(parents=True)
            (d / f"f{i:06d}").write_bytes(b"x" * 64)
        (tmp / "log").write_text(f"{n} files\n")

    return fn


def median_ms(runs: int, once: Callable[[int], float]) -> float:
    """Median over `runs` calls of `once(i)`, which returns the seconds it measured."""
    return statistics.median(once(i) for i in range(runs)) * 1000


def bench_size(
    store: BtrfsStore, scratch: Path, n: int, runs: int
) -> tuple[float, float, float, float]:
    """(store build, raw snapshot, floor, ioctl floor) medians in ms for a parent of `n` files."""
    parent = f"parent-{n}"
    src = store.build(parent, None, tree_of(n))
    # Write the tree out first, so the runs time snapshots and not the tree's writeback.
    sh("btrfs", "filesystem", "sync", str(src))

    def store_once(i: int) -> float:
        t = time.perf_counter()
        store.build(f"child-{n}-{i}", parent, lambda tmp: None)
        dt = time.perf_counter() - t
        store.delete(f"child-{n}-{i}")
        return dt

    def raw_once(i: int) -> float:
        dst = scratch / f"raw-{n}-{i}"
        t = time.perf_counter()
        sh("btrfs", "subvolume", "snapshot", str(src), str(dst))
        dt = time.perf_counter() - t
        sh("btrfs", "subvolume", "delete", str(dst))
        return dt

    def floor_once(i: int) -> float:
        tmp, ro = scratch / f"tmp-{n}-{i}", scratch / f"ro-{n}-{i}"
        t = time.perf_counter()
        sh("btrfs", "subvolume", "snapshot", str(src), str(tmp))
        sh("btrfs", "subvolume", "snapshot", "-r", str(tmp), str(ro))
        sh("btrfs", "subvolume", "delete", str(tmp))
        dt = time.perf_counter() - t
        sh("btrfs", "subvolume", "delete", str(ro))
        return dt

    def ioctl_once(i: int) -> float:
        tmp, ro = scratch / f"itmp-{n}-{i}", scratch / f"iro-{n}-{i}"
        t = time.perf_counter()
        btrfs_ioctl.snapshot(src, tmp, read_only=False)
        btrfs_ioctl.snapshot(tmp, ro, read_only=True)
        btrfs_ioctl.delete_subvolume(tmp)
        dt = time.perf_counter() - t
        btrfs_ioctl.delete_subvolume(ro)
        return dt

    store_ms, raw_ms = median_ms(runs, store_once), median_ms(runs, raw_once)
    return store_ms, raw_ms, median_ms(runs, floor_once), median_ms(runs, ioctl_once)


def main(argv: list[str] | None = None) -> int:
    """Print the benchmark table; exit status 2 when not run as root."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/snapshot.py needs root (it makes a loop device)", file=sys.stderr)
        return 2
    with loop_btrfs() as mnt:
        store = open_btrfs(str(mnt / "store"))
        scratch = mnt / "scratch"
        scratch.mkdir()
        print(f"btrfs store snapshot cost, median of {args.runs} runs (ms)")
        medians = ("files", "store", "raw", "floor", "ioctl")
        ratios = ("store/raw", "store/floor", "store/ioctl")
        print("{:>7} {:>8} {:>8} {:>8} {:>8} {:>10} {:>12} {:>12}".format(*medians, *ratios))
        for n in args.sizes:
            s, r, f, i = bench_size(store, scratch, n, args.runs)
            print(f"{n:>7} {s:8.1f} {r:8.1f} {f:8.1f} {i:8.1f}", end="")
            print(f" {s / r:10.2f} {s / f:12.2f} {s / i:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
