"""btrfs specifics: read-only results, subvolumes, refusal of non-btrfs paths, auto's choice."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from obuilder_core.errors import ObuilderError
from obuilder_core.stores import open_store
from obuilder_core.stores.btrfs import BtrfsStore, is_subvolume
from obuilder_core.stores.disk import fs_type
from tests.fixtures.btrfs import BtrfsMount
from tests.stores.helpers import rootfs_files, write_step


def test_results_are_read_only_snapshots(btrfs_store_spec: str) -> None:
    store = open_store(btrfs_store_spec)
    path = store.build("s", None, write_step({"a": "A"}))
    assert is_subvolume(path)
    prop = subprocess.run(
        ["btrfs", "property", "get", str(path), "ro"], capture_output=True, text=True, check=True
    )
    assert prop.stdout.strip() == "ro=true"
    with pytest.raises(OSError) as e:
        (path / "rootfs" / "a").write_text("changed")
    assert e.value.errno == errno.EROFS
    # a child is a writable snapshot while it builds
    child = store.build("c", "s", write_step({"a": "child"}))
    assert rootfs_files(child) == {"a": "child"}
    assert rootfs_files(path) == {"a": "A"}


def test_nested_subvolumes_made_by_a_build_are_cleaned_up(btrfs_store_spec: str) -> None:
    store = open_store(btrfs_store_spec)

    def fn(tmp: Path) -> None:
        write_step({"a": "A"})(tmp)
        subprocess.run(["btrfs", "subvolume", "create", str(tmp / "rootfs" / "sub")], check=True)
        (tmp / "rootfs" / "sub" / "inner").write_text("x")

    path = store.build("s", None, fn)
    assert rootfs_files(path) == {"a": "A"}  # snapshots do not descend into subvolumes

    def failing(tmp: Path) -> None:
        fn(tmp)
        raise RuntimeError("fail after making a nested subvolume")

    with pytest.raises(RuntimeError):
        store.build("t", None, failing)
    temps = _root(btrfs_store_spec) / "result-tmp"
    assert [p.name for p in temps.iterdir()] == [".locks"]


def _root(spec: str) -> Path:
    return Path(spec.partition(":")[2])


def test_caches_are_subvolumes(btrfs_store_spec: str) -> None:
    store = open_store(btrfs_store_spec)
    lease = store.cache("c", (0, 0))
    assert is_subvolume(lease.path)
    lease.release()
    assert is_subvolume(_root(btrfs_store_spec) / "cache" / "c-c")


def test_btrfs_store_refuses_other_filesystems(tmp_path: Path) -> None:
    on = fs_type(tmp_path)  # "ext4" where `stat -f` says "ext2/ext3"
    assert on != "unknown" and "/" not in on
    with pytest.raises(ObuilderError, match=f"not on a btrfs filesystem \\(it is {on}\\)"):
        open_store(f"btrfs:{tmp_path / 'store'}")


def test_auto_picks_btrfs_on_btrfs(btrfs_mount: BtrfsMount) -> None:
    root = btrfs_mount.fresh_dir()
    store = open_store(f"auto:{root}")
    assert isinstance(store, BtrfsStore)
    assert (root / "kind").read_text() == "btrfs\n"
    store.build("s", None, write_step({"a": "A"}))
    assert open_store(f"auto:{root}").result("s") is not None
