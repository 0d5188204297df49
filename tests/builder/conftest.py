"""Fixtures for the builder tests: a real Builder (runc) on a fresh store with busybox imported.

The helpers the tests call are in `tests/builder/helpers.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from obuilder_core.builder import Builder
from tests.builder.helpers import running_builder


@pytest.fixture
def btrfs_builder(btrfs_store_spec: str, busybox_oci: Path) -> Iterator[Builder]:
    """A Builder with runc on a fresh btrfs store (busybox imported)."""
    with running_builder(btrfs_store_spec, busybox_oci) as builder:
        yield builder


@pytest.fixture
def rsync_builder(rsync_store_spec: str, busybox_oci: Path) -> Iterator[Builder]:
    """A Builder with runc on a fresh rsync store (busybox imported)."""
    with running_builder(rsync_store_spec, busybox_oci) as builder:
        yield builder
