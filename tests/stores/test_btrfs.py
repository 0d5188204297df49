"""btrfs specifics: read-only results, subvolumes by ioctl (no `btrfs` process per step), a full
disk, refusal of non-btrfs paths, auto's choice."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from obuilder_core.errors import ObuilderError
from obuilder_core.stores import btrfs_ioctl, open_store
from obuilder_core.stores.btrfs import BtrfsStore, is_subvolume
from obuilder_core.stores.disk import fs_type, is_full, statvfs_free_pct
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


def _btrfs(*args: str) -> str:
    return subprocess.run(["btrfs", *args], capture_output=True, text=True, check=True).stdout


def _show(subvolume: Path) -> dict[str, str]:
    """`btrfs subvolume show`'s "Key: value" lines (UUID, Parent UUID, Flags, ...)."""
    lines = _btrfs("subvolume", "show", str(subvolume)).splitlines()[1:]
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_a_committed_step_is_a_read_only_subvolume(btrfs_store_spec: str) -> None:
    store = open_store(btrfs_store_spec)
    path = store.build("s", None, write_step({"a": "A"}))
    assert is_subvolume(path) and btrfs_ioctl.is_read_only(path)
    assert _show(path)["Flags"] == "readonly"
    for change in (
        lambda: (path / "rootfs" / "new").write_text("x"),
        lambda: (path / "rootfs" / "a").unlink(),
        lambda: (path / "log").rename(path / "log2"),
    ):
        with pytest.raises(OSError) as e:
            change()
        assert e.value.errno == errno.EROFS
    assert rootfs_files(path) == {"a": "A"}


def test_a_clone_is_a_writable_snapshot_sharing_its_parents_data(btrfs_store_spec: str) -> None:
    store = open_store(btrfs_store_spec)
    big = os.urandom(1 << 20)

    def parent(tmp: Path) -> None:
        write_step({"a": "A"})(tmp)
        (tmp / "rootfs" / "big").write_bytes(big)

    src = store.build("p", None, parent)
    seen: dict[str, object] = {}

    def child(tmp: Path) -> None:
        show = _show(tmp)
        seen.update(parent_uuid=show["Parent UUID"], flags=show["Flags"])
        seen["read_only"] = btrfs_ioctl.is_read_only(tmp)
        seen["big"] = (tmp / "rootfs" / "big").read_bytes() == big
        # btrfs filesystem du: "Total Exclusive Set-shared Filename"; nothing of it is copied
        du = _btrfs("filesystem", "du", "--raw", str(tmp / "rootfs" / "big")).splitlines()[-1]
        seen["exclusive"] = int(du.split()[1])
        write_step({"a": "child"})(tmp)

    dst = store.build("c", "p", child)
    assert seen == {
        "parent_uuid": _show(src)["UUID"],
        "flags": "-",
        "read_only": False,
        "big": True,
        "exclusive": 0,
    }
    assert rootfs_files(dst)["a"] == "child" and rootfs_files(src)["a"] == "A"


def test_committing_over_an_existing_step_is_refused(btrfs_store_spec: str) -> None:
    store = open_store(btrfs_store_spec)
    path = store.build("s", None, write_step({"a": "A"}))
    with pytest.raises(ObuilderError, match=r"^step s already exists in the store$"):
        store.build("s", None, write_step({"a": "B"}))
    assert rootfs_files(path) == {"a": "A"}
    assert [p.name for p in (_root(btrfs_store_spec) / "result-tmp").iterdir()] == [".locks"]


def _subvolumes(spec: str, btrfs_mount: BtrfsMount) -> list[str]:
    """The paths (below the store root) of the subvolumes `btrfs subvolume list` shows."""
    top = _root(spec).relative_to(btrfs_mount.path)
    lines = _btrfs("subvolume", "list", str(btrfs_mount.path)).splitlines()
    listed = (line.split(" path ", 1)[1] for line in lines)
    return sorted(str(Path(p).relative_to(top)) for p in listed if Path(p).is_relative_to(top))


def test_delete_removes_read_only_steps_and_nested_subvolumes(
    btrfs_store_spec: str, btrfs_mount: BtrfsMount
) -> None:
    store = open_store(btrfs_store_spec)
    store.build("s", None, write_step({"a": "A"}))
    store.delete("s")
    assert store.result("s") is None and store.ids() == []

    def nests(tmp: Path) -> None:
        # in a subvolume: a writable subvolume holding another, and a read-only snapshot
        write_step({"a": "A"})(tmp)
        rootfs = tmp / "rootfs"
        _btrfs("subvolume", "create", str(rootfs / "sub"))
        _btrfs("subvolume", "create", str(rootfs / "sub" / "inner"))
        (rootfs / "sub" / "inner" / "f").write_text("x")
        _btrfs("subvolume", "snapshot", "-r", str(rootfs / "sub"), str(rootfs / "ro"))
        raise RuntimeError("fail after making nested subvolumes")

    with pytest.raises(RuntimeError):
        store.build("t", None, nests)
    lease = store.cache("c", (0, 0))
    _btrfs("subvolume", "create", str(lease.path / "sub"))
    lease.release()
    assert _subvolumes(btrfs_store_spec, btrfs_mount) == ["cache/c-c", "cache/c-c/sub"]
    store.delete_cache("c")
    assert _subvolumes(btrfs_store_spec, btrfs_mount) == []
    assert [p.name for p in (_root(btrfs_store_spec) / "result-tmp").iterdir()] == [".locks"]


def test_build_commit_and_delete_start_no_btrfs_process(
    btrfs_store_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(btrfs_store_spec)
    called = tmp_path / "btrfs-was-run"
    fake = tmp_path / "bin" / "btrfs"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {called}\necho "fake btrfs run" >&2\nexit 99\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    assert shutil.which("btrfs") == str(fake)

    store.build("s", None, write_step({"a": "A"}))
    child = store.build("c", "s", write_step({"b": "B"}))

    def nests(tmp: Path) -> None:
        btrfs_ioctl.create_subvolume(tmp / "rootfs" / "sub")
        raise RuntimeError("fail after making a nested subvolume")

    with pytest.raises(RuntimeError):
        store.build("t", "c", nests)
    for _ in range(2):
        lease = store.cache("k", (0, 0))
        (lease.path / "f").write_text("x")
        lease.release()
    store.delete_cache("k")
    assert rootfs_files(child) == {"a": "A", "b": "B"}
    store.delete("c")
    store.delete("s")
    assert store.ids() == []
    assert not called.exists(), called.read_text()
    # the fake is really on the path: df() still runs the command (filesystem usage)
    with pytest.raises(ObuilderError, match="fake btrfs run"):
        store.df()
    assert called.exists()


def test_a_build_that_fills_the_disk_gives_its_space_back_at_once(
    small_btrfs_store_spec: str,
) -> None:
    store = open_store(small_btrfs_store_spec)
    root = _root(small_btrfs_store_spec)
    store.build("s", None, write_step({"a": "A"}))

    def fill(tmp: Path) -> None:
        with open(tmp / "rootfs" / "big", "wb") as f:
            while True:
                f.write(b"x" * (1 << 20))
                f.flush()

    with pytest.raises(OSError) as e:
        store.build("f", "s", fill)
    assert e.value.errno == errno.ENOSPC
    # the temp was deleted, and the cleaner waited for: the space is free without a df()
    assert not is_full(root) and statvfs_free_pct(root) > 80
    assert [p.name for p in (root / "result-tmp").iterdir()] == [".locks"]
    child = store.build("c", "s", write_step({"b": "B"}))
    assert rootfs_files(child) == {"a": "A", "b": "B"}
