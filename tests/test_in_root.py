"""`in_root`: paths of a rootfs looked at and removed from the host, resolved inside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from obuilder_core.in_root import exists_in_root, remove_in_root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the rootfs standing for the host's, with a file to keep."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "precious").write_text("keep\n")
    return host


@pytest.fixture
def rootfs(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "app" / "sub").mkdir(parents=True)
    (root / "app" / "sub" / "f").write_text("f\n")
    (root / "app" / "precious").write_text("in the rootfs\n")
    (root / "abs").symlink_to(outside)  # absolute: the host's dir, if followed on the host
    (root / "up").symlink_to("../../host")  # relative, climbing out
    (root / "file-link").symlink_to(outside / "precious")
    return root


def test_absolute_and_climbing_symlinks_resolve_inside(rootfs: Path, outside: Path) -> None:
    assert not exists_in_root(rootfs, "abs/precious")  # /abs -> <host> has no such dir inside
    assert not exists_in_root(rootfs, "up/precious")
    remove_in_root(rootfs, "abs/precious")
    remove_in_root(rootfs, "up/precious")
    remove_in_root(rootfs, "../../host/precious")  # `..` stops at the rootfs' /
    assert (outside / "precious").read_text() == "keep\n"


def test_a_symlink_is_removed_not_followed(rootfs: Path, outside: Path) -> None:
    assert exists_in_root(rootfs, "file-link")
    remove_in_root(rootfs, "file-link")
    remove_in_root(rootfs, "abs")
    assert not (rootfs / "file-link").is_symlink() and not (rootfs / "abs").is_symlink()
    assert (outside / "precious").read_text() == "keep\n"


def test_a_directory_goes_with_its_contents(rootfs: Path) -> None:
    assert exists_in_root(rootfs, "app/sub/f")
    remove_in_root(rootfs, "app/sub")
    assert not (rootfs / "app" / "sub").exists()
    assert (rootfs / "app" / "precious").exists()


def test_missing_paths_are_a_no_op(rootfs: Path) -> None:
    remove_in_root(rootfs, "app/missing")
    remove_in_root(rootfs, "missing/deeper/still")
    remove_in_root(rootfs, "app/precious/not-a-dir")
    assert not exists_in_root(rootfs, "missing/deeper")
    assert not exists_in_root(rootfs, "app/precious/not-a-dir")
    assert (rootfs / "app" / "precious").exists()
