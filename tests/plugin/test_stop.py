"""Stopping a pytest session (Ctrl-C, a cancelled CI job, a closed terminal) leaves nothing.

A real pytest process builds specs whose step runs until killed; once the test has seen the
step's container running, it sends a signal. The session must end with 128 + the signal's
number after every container is gone, with and without pytest-xdist, and cache nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.fixtures.busybox import runc_root

SLOW = '((from busybox)\n (shell /bin/sh -c)\n (run (shell "echo {name}; sleep 100000")))\n'


def _running(store: str) -> list[str]:
    """The ids of running containers in the store's sandbox."""
    listed = subprocess.run(
        ["runc", "--root", str(runc_root(store)), "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    states = json.loads(listed.stdout or "null") or []
    return [s["id"] for s in states if s["status"] == "running"]


def _wait_for(cond: object, timeout: float = 120.0) -> None:
    """Wait for a condition another process makes true (the timeout only catches a hang)."""
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("signum", "workers", "to_group"),
    [
        (signal.SIGINT, "0", False),
        (signal.SIGTERM, "0", False),
        (signal.SIGHUP, "0", False),
        (signal.SIGTERM, "2", False),
        (signal.SIGINT, "2", True),
    ],
    ids=["SIGINT", "SIGTERM", "SIGHUP", "SIGTERM-to-the-controller", "Ctrl-C-to-all-workers"],
)
def test_a_stop_signal_cancels_every_step_and_waits_for_its_container(
    pytester: pytest.Pytester, busybox_store: str, signum: int, workers: str, to_group: bool
) -> None:
    """A CI runner signals the main process; a terminal's Ctrl-C signals the whole group."""
    if workers != "0":
        pytest.importorskip("xdist", reason="needs pytest-xdist")
    pytester.makefile(".spec", one=SLOW.format(name="one"), two=SLOW.format(name="two"))
    argv = [sys.executable, "-m", "pytest", f"--obuilder-store={busybox_store}", "-n", workers]
    proc = subprocess.Popen(
        argv,
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a job
    )
    try:
        expected = 1 if workers == "0" else 2  # one spec at a time, or one per worker
        _wait_for(lambda: len(_running(busybox_store)) == expected)
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signum, out
    assert _running(busybox_store) == []
    assert list(runc_root(busybox_store).iterdir()) == []  # deleted, not just stopped
    assert "Traceback" not in out, out
