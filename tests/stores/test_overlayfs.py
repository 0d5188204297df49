"""overlayfs backend specifics: bounded layer stacks, whiteouts, mounts, crash cleanup, caches."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from obuilder_core.stores import open_store
from obuilder_core.stores.overlayfs import MAX_DEPTH, OverlayStore, mounts_under
from tests.stores.helpers import find_named, spawn, step_files, tree_files, wait_ready, write_step


@pytest.fixture
def store(overlayfs_dir: Path) -> OverlayStore:
    """A fresh overlayfs store."""
    opened = open_store(f"overlayfs:{overlayfs_dir}")
    assert isinstance(opened, OverlayStore)
    return opened


def stack_depth(store: OverlayStore, id: str) -> int:
    """How many layers an overlay of step `id` stacks (1 for a base or flattened layer)."""
    depth = 1
    while (lower := store.root / "result" / id / "lower").exists():
        id = lower.read_text().strip()
        depth += 1
    return depth


def test_deep_chain_is_flattened_and_reads_correctly(store: OverlayStore) -> None:
    steps = 40

    def step(i: int):
        def fn(tmp: Path) -> None:
            rootfs = tmp / "rootfs"
            rootfs.mkdir(exist_ok=True)
            (rootfs / f"f{i}").write_text(str(i))
            if i >= 1:
                (rootfs / f"f{i - 1}").write_text(f"{i - 1} changed by {i}")
            if i >= 2:
                (rootfs / f"f{i - 2}").unlink()  # whiteouts all along the chain
            (tmp / "log").write_text(f"step {i}\n")

        return fn

    parent = None
    for i in range(steps):
        store.build(f"s{i}", parent, step(i))
        parent = f"s{i}"
    depths = [stack_depth(store, f"s{i}") for i in range(steps)]
    assert max(depths) <= MAX_DEPTH
    assert 1 in depths[1:], "some step of the chain was flattened into a base layer"
    last = store.result(f"s{steps - 1}")
    assert step_files(store, f"s{steps - 1}") == {
        f"f{steps - 1}": str(steps - 1),
        f"f{steps - 2}": f"{steps - 2} changed by {steps - 1}",
    }
    assert (last / "log").read_text() == f"step {steps - 1}\n"
    store.result("s20")
    assert step_files(store, "s20") == {"f20": "20", "f19": "19 changed by 20"}


def test_whiteouts_hide_in_child_only(store: OverlayStore) -> None:
    store.build("p", None, write_step({"keep": "k", "gone": "g", "dir/x": "x", "dir/y": "y"}))

    def fn(tmp: Path) -> None:
        (tmp / "rootfs" / "gone").unlink()
        for name in ("x", "y"):
            (tmp / "rootfs" / "dir" / name).unlink()
        (tmp / "rootfs" / "dir").rmdir()
        (tmp / "rootfs" / "dir").mkdir()  # re-created: must be opaque, old entries stay hidden
        (tmp / "rootfs" / "dir" / "z").write_text("z")

    store.build("c", "p", fn)
    assert step_files(store, "c") == {"keep": "k", "dir/z": "z"}
    assert step_files(store, "p") == {
        "keep": "k",
        "gone": "g",
        "dir/x": "x",
        "dir/y": "y",
    }
    store.build("g", "c", write_step({"more": "m"}))
    assert step_files(store, "g") == {"keep": "k", "dir/z": "z", "more": "m"}


def test_views_are_read_only(store: OverlayStore) -> None:
    store.build("p", None, write_step({"a": "A"}))
    store.build("c", "p", write_step({"b": "B"}))
    with store.view("c") as child, pytest.raises(OSError):
        (child / "rootfs" / "b").write_text("tampered")


def test_no_mounts_left_by_builds(store: OverlayStore) -> None:
    store.build("p", None, write_step({"a": "A"}))

    def fails(tmp: Path) -> None:
        write_step({"b": "B"})(tmp)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.build("c", "p", fails)
    assert mounts_under(store.root) == []
    assert os.listdir(store.root / "tmp") == [".locks"]
    store.build("c", "p", write_step({"b": "B"}))
    assert store.result("c") is not None
    assert mounts_under(store.root) == []  # a query mounts nothing
    with store.view("c"):
        assert mounts_under(store.root) == [store.root / "view" / "c"]
    assert mounts_under(store.root) == []  # the block's end unmounts the view


def test_killed_build_is_unmounted_and_removed_on_reopen(overlayfs_dir: Path) -> None:
    spec = f"overlayfs:{overlayfs_dir}"
    store = open_store(spec)
    store.build("p", None, write_step({"a": "A"}))
    marker = f"killed-{uuid.uuid4().hex}"
    child = spawn("build", spec, "victim", "p", marker=marker)
    try:
        wait_ready(child)
        assert mounts_under(overlayfs_dir / "tmp"), "the build runs on an overlay mount"
    finally:
        child.kill()  # SIGKILL: its overlay stays mounted until someone cleans up
        child.wait()
    store = open_store(spec)
    assert mounts_under(overlayfs_dir / "tmp") == []
    assert os.listdir(overlayfs_dir / "tmp") == [".locks"]
    assert store.result("victim") is None
    assert find_named(overlayfs_dir, marker) == []


def test_cache_release_replaces_the_version_deletions_included(store: OverlayStore) -> None:
    lease = store.cache("c", (0, 0))
    (lease.path / "old").write_text("1")
    (lease.path / "keep").write_text("k")
    lease.release()
    a, b = store.cache("c", (0, 0)), store.cache("c", (0, 0))
    (a.path / "old").unlink()
    (b.path / "from-b").write_text("b")
    a.release()  # first release wins, with its deletion
    b.release()  # discarded: nothing of b is merged in (unlike OBuilder's `cp -u`)
    lease = store.cache("c", (0, 0))
    assert tree_files(lease.path) == {"keep": "k"}
    lease.release()
    assert os.listdir(store.root / "cache-tmp") == [".locks"]


def test_escaped_cache_dirs_stay_inside_the_store(store: OverlayStore) -> None:
    lease = store.cache("../../x", (0, 0))
    lease.release()
    assert [p.name for p in (store.root / "cache").iterdir()] == ["c-..%2f..%2fx"]


HOLD_VIEW = """
import sys
from obuilder_core.stores import open_store
store = open_store(sys.argv[1])
with store.view(sys.argv[2]) as view:
    print(view, flush=True)
    sys.stdin.readline()
"""


def test_a_view_stays_while_another_process_uses_it(overlayfs_dir: Path) -> None:
    spec = f"overlayfs:{overlayfs_dir}"
    store = open_store(spec)
    store.build("p", None, write_step({"a": "A"}))
    store.build("c", "p", write_step({"b": "B"}))
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD_VIEW, spec, "c"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        view = Path(other.stdout.readline().strip())
        with store.view("c") as mine:
            assert mine == view
        # the other process still reads the view, so it stays mounted
        assert mounts_under(overlayfs_dir) == [view]
        assert (view / "rootfs" / "b").read_text() == "B"
    finally:
        other.kill()  # dies holding the view: the next open cleans up after it
        other.wait()
    reopened = open_store(spec)
    assert mounts_under(overlayfs_dir) == []
    with reopened.view("c") as again:
        assert (again / "rootfs" / "a").read_text() == "A"
    assert mounts_under(overlayfs_dir) == []
