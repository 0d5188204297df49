"""Fixtures for the sandbox tests: a RuncSandbox in a private state dir, cleaned up by id."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obuilder_core.sandbox import RunConfig, RuncSandbox
from tests.fixtures.busybox import delete_containers
from tests.fixtures.root import require_root, require_tool

PATH_ENV = (("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),)


def sh(script: str, **fields: Any) -> RunConfig:
    """A RunConfig running `script` with busybox's sh and a PATH."""
    fields.setdefault("env", PATH_ENV)
    return RunConfig(argv=("/bin/sh", "-c", script), **fields)


def runc_states(state_dir: Path) -> list[dict[str, Any]]:
    """`runc list` of a sandbox's state dir: one dict (id, pid, status, ...) per container."""
    proc = subprocess.run(
        ["runc", "--root", str(state_dir / "runc"), "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout or "null") or []


def runc_containers(state_dir: Path) -> list[str]:
    """The ids runc still knows in a sandbox's state dir."""
    return [c["id"] for c in runc_states(state_dir)]


@pytest.fixture
def sandbox_state(tmp_path: Path) -> Iterator[Path]:
    """A sandbox state dir; any container left in it is deleted at teardown."""
    require_root()
    require_tool("runc")
    state = tmp_path / "sandbox-state"
    yield state
    if (state / "runc").exists():
        delete_containers(state / "runc")
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def sandbox(sandbox_state: Path) -> RuncSandbox:
    """A RuncSandbox without fast-sync."""
    return RuncSandbox(sandbox_state)
