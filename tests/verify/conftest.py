"""Fixtures for the determinism checker: one real Builder (runc, btrfs) for the whole module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from obuilder_core.builder import Builder
from obuilder_core.images.local import LocalImages
from tests.builder.helpers import running_builder
from tests.fixtures.btrfs import BtrfsMount
from tests.verify.glibc_image import IMAGE_NAME, build_image_tar, missing_tools


@pytest.fixture(scope="module")
def verify_builder(btrfs_mount: BtrfsMount, busybox_oci: Path) -> Iterator[Builder]:
    """A Builder with runc on a fresh btrfs store (busybox imported), shared by a module."""
    with running_builder(f"btrfs:{btrfs_mount.fresh_dir()}", busybox_oci) as builder:
        yield builder


@pytest.fixture
def context(tmp_path: Path) -> Path:
    """An empty build context with one file, `hello.txt`."""
    (tmp_path / "hello.txt").write_text("hello\n")
    return tmp_path


@pytest.fixture(scope="module")
def glibc_builder(verify_builder: Builder, glibc_locale_tar: Path) -> Builder:
    """The module's verify builder with the glibc image imported as IMAGE_NAME."""
    LocalImages(verify_builder.store.state_dir() / "images").import_(IMAGE_NAME, glibc_locale_tar)
    return verify_builder


@pytest.fixture(scope="session")
def glibc_locale_tar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A plain rootfs tarball of a tiny glibc image (host dash, sort, date, fr_CH.UTF-8 data),
    built once per session and removed at the end; skips if localedef or the sources are missing.
    """
    reason = missing_tools()
    if reason is not None:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("glibc-image")
    try:
        yield build_image_tar(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
