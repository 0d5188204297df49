"""Per-step limits with the real runc: processes, memory, wall-clock time.

Each limited command fails with a one-line reason and leaves no container behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from obuilder_core.sandbox import Limits, RuncSandbox, StepFailed, TimedOut
from obuilder_core.sandbox.limits import LimitError, format_size, parse_seconds, parse_size
from tests.sandbox.helpers import assert_no_leftovers, run, sh

FORK_50 = "i=0; while [ $i -lt 50 ]; do sleep 1000 & i=$((i+1)); done; echo spawned"


def test_the_pids_limit_stops_a_fork_bomb(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    log = bytearray()
    with pytest.raises(StepFailed) as e:
        sandbox.run(sh(FORK_50, limits=Limits(pids=20)), busybox_rootfs, log=log.extend)
    assert str(e.value).endswith(": hit its limit of 20 processes")
    assert b"can't fork" in log
    assert_no_leftovers(sandbox)


def test_the_default_pids_limit_lets_ordinary_work_run(
    sandbox: RuncSandbox, busybox_rootfs: Path
) -> None:
    assert run(sandbox, busybox_rootfs, sh(FORK_50 + "; kill $(jobs -p)")) == "spawned\n"
    # cgroup v1 has the pids controller in a directory of its own, v2 in the unified one
    read = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"
    assert run(sandbox, busybox_rootfs, sh(read)) == "4096\n"


def test_the_memory_limit_kills_with_a_reason(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    config = sh("dd if=/dev/zero of=/dev/null bs=200M count=1", limits=Limits(memory=64 << 20))
    with pytest.raises(StepFailed) as e:
        run(sandbox, busybox_rootfs, config)
    assert str(e.value) == (
        '"/bin/sh" "-c" "dd if=/dev/zero of=/dev/null bs=200M count=1"'
        " killed: out of memory (limit 64 MiB)"
    )
    assert_no_leftovers(sandbox)
    # the same command within its limit
    assert "1+0 records" in run(
        sandbox, busybox_rootfs, sh(config.argv[-1] + " 2>&1", limits=Limits(memory=1 << 30))
    )


def test_the_step_timeout_kills_with_a_reason(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    with pytest.raises(TimedOut) as e:
        run(sandbox, busybox_rootfs, sh("sleep 100000", limits=Limits(timeout=1.5)))
    assert str(e.value) == '"/bin/sh" "-c" "sleep 100000" killed: step timeout 1.5s'
    assert_no_leftovers(sandbox)


@pytest.mark.parametrize(
    ("text", "size"),
    [("256M", 256 << 20), ("1.5G", 3 << 29), ("512MiB", 512 << 20), ("4096", 4096)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_bad_limits_are_one_line_errors() -> None:
    with pytest.raises(LimitError, match=r"^invalid size 'lots': expected a number and K, M"):
        parse_size("lots")
    with pytest.raises(LimitError, match=r"^invalid duration 'soon'"):
        parse_seconds("soon")
    with pytest.raises(LimitError, match=r"^memory limit 1 KiB: expected at least 4 MiB$"):
        Limits(memory=1024)
    with pytest.raises(LimitError, match=r"^pids limit 0: expected at least 1$"):
        Limits(pids=0)
    assert parse_seconds("10m") == 600 and format_size(256 << 20) == "256 MiB"
