"""Fixtures for the sandbox tests: a RuncSandbox in a private state dir, cleaned up by id.

The helpers the tests call are in `tests/sandbox/helpers.py`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from obuilder_core.sandbox import RuncSandbox
from tests.fixtures.busybox import delete_containers
from tests.fixtures.root import require_root, require_tool


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
