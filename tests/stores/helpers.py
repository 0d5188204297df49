"""Helpers for the store tests: step contents, leftover search, child processes using a store."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from obuilder_core.stores import Store
from tests.fixtures.zfs import WEDGED, abandon_wedged_daemon

REAP_TIMEOUT = 30.0
"""Seconds a killed child may take to end (it is freed at once unless a filesystem hangs)."""
READY_TIMEOUT = 120.0
"""Seconds a child may take to say it is ready (a few, unless a filesystem hangs)."""


def write_step(files: dict[str, str]) -> Callable[[Path], None]:
    """A build function that writes `files` (relative to rootfs/) and a log."""

    def fn(tmp: Path) -> None:
        rootfs = tmp / "rootfs"
        rootfs.mkdir(exist_ok=True)
        for rel, text in files.items():
            (rootfs / rel).parent.mkdir(parents=True, exist_ok=True)
            (rootfs / rel).write_text(text)
        (tmp / "log").write_text(f"wrote {sorted(files)}\n")

    return fn


def rootfs_files(step_dir: Path) -> dict[str, str]:
    """The regular files under `step_dir/rootfs`, as {relative path: text}."""
    return tree_files(step_dir / "rootfs")


def step_files(store: Store, id: str) -> dict[str, str]:
    """The regular files of committed step `id`'s whole rootfs (through a view)."""
    with store.view(id) as step_dir:
        return rootfs_files(step_dir)


def tree_files(path: Path) -> dict[str, str]:
    """The regular files under `path`, as {relative path: text}."""
    out = {}
    for dirpath, _, names in os.walk(path):
        for name in names:
            p = Path(dirpath, name)
            out[str(p.relative_to(path))] = p.read_text(errors="replace")
    return out


def store_area(store: Store) -> Path:
    """The directory holding everything a store keeps on disk (parent of its state dir)."""
    return store.state_dir().parent


def find_named(root: Path, name: str) -> list[Path]:
    """Every path under `root` called `name` (not following symlinks or entering .zfs)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".zfs"]
        found += [Path(dirpath, n) for n in dirnames + filenames if n == name]
    return found


# A child process that opens a store and blocks inside a build (or while holding a cache
# clone, or before looking up a result) until it reads a line on stdin, so a test can kill it
# or let it finish.
CHILD = r"""
import sys
from pathlib import Path
from obuilder_core.index import Index
from obuilder_core.stores import open_store

mode, spec, name, parent, marker = sys.argv[1:6]
store = open_store(spec)

def fn(tmp: Path) -> None:
    (tmp / "rootfs").mkdir(exist_ok=True)
    (tmp / "rootfs" / marker).write_text("x")
    (tmp / "log").write_text("log\n")
    print("ready", flush=True)
    sys.stdin.readline()

if mode == "build":
    store.build(name, parent or None, fn)
    Index(store).add(name, parent or None)
elif mode == "cache":
    lease = store.cache(name, (0, 0))
    (lease.path / marker).write_text("x")
    print("ready", flush=True)
    sys.stdin.readline()
    lease.release()
elif mode == "protect":
    with Index(store).protect([name]):
        print("ready", flush=True)
        sys.stdin.readline()
elif mode == "result":
    print("ready", flush=True)
    sys.stdin.readline()
    print(store.result(name), flush=True)
elif mode == "chain":
    index = Index(store)
    prev = parent or None
    for i in range(int(marker)):
        step = f"{name}-{i}"
        def fn2(tmp: Path, i: int = i) -> None:
            (tmp / "rootfs").mkdir(exist_ok=True)
            (tmp / "rootfs" / f"{name}-{i}").write_text(str(i))
        store.build(step, prev, fn2)
        index.add(step, prev)
        prev = step
print("done", flush=True)
"""


def spawn(mode: str, spec: str, name: str, parent: str = "", marker: str = "m") -> subprocess.Popen:
    """Start the CHILD script; for "build"/"cache" modes it prints "ready" then waits for stdin."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, spec, name, parent, marker],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen) -> None:
    """Wait until the child printed "ready" (fail with its stderr if it died first, or gave no
    sign for READY_TIMEOUT seconds: a hung filesystem must not hang the suite)."""
    assert proc.stdout is not None
    answered, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)
    line = proc.stdout.readline() if answered else ""
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"child did not get ready: {line!r}\n{err}")


def reap(proc: subprocess.Popen, store_spec: str) -> None:
    """Kill a child and wait for it, bounded. A child that SIGKILL does not end is stuck in a
    filesystem request nobody answers: zfs-fuse wedges now and then under two writers (it
    happened once in seven runs of the suite). Its daemon is then stopped, which frees the
    child, and the test skips, as the zfs fixtures do for a daemon found wedged."""
    proc.kill()
    try:
        proc.wait(timeout=REAP_TIMEOUT)
        return
    except subprocess.TimeoutExpired:
        if not (store_spec.startswith("zfs:") and abandon_wedged_daemon()):
            raise
    proc.wait(timeout=REAP_TIMEOUT)
    pytest.skip(f"{WEDGED} (a child was stuck in a request to it)")


def finish(proc: subprocess.Popen) -> str:
    """Let a waiting child go on and return its stdout; fail with its stderr if it failed."""
    out, err = proc.communicate("\n", timeout=120)
    assert proc.returncode == 0, err
    return out
