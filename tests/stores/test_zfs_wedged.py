"""A zfs-fuse daemon that stops answering: a clear one-line error, never a hang.

The test stops the daemon (SIGSTOP) for a moment, as if it had wedged, and runs the CLI with
a short `OBUILDER_ZFS_TIMEOUT`; it always lets the daemon go on (SIGCONT) before it checks.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from obuilder_core.builder import Builder
from obuilder_core.images import LocalImages
from obuilder_core.spec import parse_spec
from obuilder_core.stores import open_store
from tests.fixtures.busybox import runc_root
from tests.fixtures.cli import start_obuilder

WEDGED = "zfs: the zfs-fuse daemon is not responding"
ENV = {**os.environ, "OBUILDER_ZFS_TIMEOUT": "2"}


def _daemon_pid() -> int:
    found = subprocess.run(["pgrep", "-x", "zfs-fuse"], capture_output=True, text=True)
    pids = found.stdout.split()
    if len(pids) != 1:
        pytest.skip(f"needs exactly one zfs-fuse daemon, found {len(pids)}")
    return int(pids[0])


@contextmanager
def daemon_stopped() -> Iterator[None]:
    pid = _daemon_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _cli(*args: str, **kw: object) -> subprocess.Popen[str]:
    return start_obuilder(*args, env=ENV, **kw)


def test_a_command_on_a_wedged_daemon_fails_in_one_line(zfs_store_spec: str) -> None:
    open_store(zfs_store_spec).close()
    with daemon_stopped():
        proc = _cli("df", "--store", zfs_store_spec)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    (line,) = err.splitlines()
    assert WEDGED in line, err


def test_a_build_whose_daemon_wedges_ends_instead_of_hanging(
    zfs_store_spec: str, busybox_oci: Path, tmp_path: Path
) -> None:
    from tests.fixtures.root import require_root, require_tool

    require_root()
    require_tool("runc")
    store = open_store(zfs_store_spec)
    LocalImages(store.state_dir() / "images").import_("busybox", busybox_oci)
    spec = tmp_path / "s.spec"
    spec.write_text('((from busybox) (shell /bin/sh -c) (run (shell "echo start; sleep 100000")))')
    proc = _cli("build", "-f", str(spec), "--store", zfs_store_spec, str(tmp_path))
    assert proc.stdout is not None
    try:
        while (line := proc.stdout.readline()) != "start\n":
            assert line, "the build ended before its step started"
        with daemon_stopped():
            _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 75
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"obuilder: error: {WEDGED} (") and last.endswith("; giving up"), err
    with Builder.open(zfs_store_spec) as builder:  # the daemon answers again: sweep, go on
        assert list(runc_root(zfs_store_spec).iterdir()) == []  # the orphan container is gone
        done = builder.build(parse_spec(spec.read_text().replace("100000", "0"), "s"), tmp_path)
        assert done.ok, done.failure
