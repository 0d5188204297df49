"""Containers left by a crashed process are removed; those of live processes are not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from obuilder_core.sandbox import Cancelled, RuncSandbox
from tests.sandbox.helpers import runc_containers, sh

REPO = Path(__file__).resolve().parents[2]

CRASHING_BUILDER = """
import sys
from pathlib import Path
from obuilder_core.sandbox import RunConfig, RuncSandbox
sandbox = RuncSandbox(Path(sys.argv[1]))
sandbox.run(RunConfig(argv=("/bin/sleep", "1000")), Path(sys.argv[2]), log=lambda b: None)
"""


def wait_for(predicate: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll `predicate` until true; fail naming `what` after `limit` seconds."""
    give_up = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > give_up:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_leftovers_of_a_dead_process_are_removed(sandbox_state: Path, busybox_rootfs: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_BUILDER, str(sandbox_state), str(busybox_rootfs)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_for(lambda: len(runc_containers(sandbox_state)) == 1, "the child's container")
        (leftover,) = runc_containers(sandbox_state)
        assert leftover.startswith(f"obuilder-{child.pid}-")
    finally:
        child.send_signal(signal.SIGKILL)  # the crash: runc and the container live on
        child.wait()
    assert runc_containers(sandbox_state) == [leftover]
    assert (sandbox_state / "bundles" / leftover).exists()

    sandbox = RuncSandbox(sandbox_state)
    assert runc_containers(sandbox_state) == []
    assert list(sandbox.bundles.iterdir()) == []
    assert sandbox.remove_leftovers() == []


def test_containers_of_live_processes_are_kept(sandbox_state: Path, busybox_rootfs: Path) -> None:
    first = RuncSandbox(sandbox_state)
    cancel = threading.Event()
    errors: list[BaseException] = []

    def build() -> None:
        try:
            first.run(sh("sleep 1000"), busybox_rootfs, log=lambda b: None, cancel=cancel)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=build)
    thread.start()
    try:
        wait_for(lambda: len(runc_containers(sandbox_state)) == 1, "the running container")
        second = RuncSandbox(sandbox_state)  # same process: its owner is alive
        assert second.remove_leftovers() == []
        assert len(runc_containers(sandbox_state)) == 1
    finally:
        cancel.set()
        thread.join()
    assert [type(e) for e in errors] == [Cancelled]
    assert runc_containers(sandbox_state) == []
