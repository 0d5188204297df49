"""Fixtures for the determinism checker: one real Builder (runc, btrfs) for the whole module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from obuilder_core.builder import Builder
from tests.builder.conftest import kill_leftovers, make_builder
from tests.fixtures.btrfs import BtrfsMount
from tests.fixtures.root import require_root, require_tool


@pytest.fixture(scope="module")
def verify_builder(btrfs_mount: BtrfsMount, busybox_oci: Path) -> Iterator[Builder]:
    """A Builder with runc on a fresh btrfs store (busybox imported), shared by a module."""
    require_root()
    require_tool("runc")
    builder = make_builder(f"btrfs:{btrfs_mount.fresh_dir()}", busybox_oci)
    try:
        yield builder
    finally:
        kill_leftovers(builder)
        builder.close()


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """An empty build context with one file, `hello.txt`."""
    (tmp_path / "hello.txt").write_text("hello\n")
    return tmp_path


@pytest.fixture
def busybox_rsync_store(rsync_store_spec: str, busybox_oci: Path) -> str:
    """A fresh rsync store spec holding the local image `busybox`; needs root and runc."""
    require_root()
    require_tool("runc")
    from obuilder_core.images.local import LocalImages
    from obuilder_core.stores import open_store

    store = open_store(rsync_store_spec)
    LocalImages(store.state_dir() / "images").import_("busybox", busybox_oci)
    return rsync_store_spec
