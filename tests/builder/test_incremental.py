"""Incremental copies (builder/incremental.py), with runc on real btrfs and rsync stores: a copy
that misses starts from the previous result of the same copy and gives the full copy's tree."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from obuilder_core.builder import Builder
from obuilder_core.builder.incremental import LISTING, stale_members
from obuilder_core.builder.tree_diff import compare_trees
from obuilder_core.copy_tar import Listing
from tests.builder.helpers import collect, ok, running_builder, spec, text

NOTE = "the last result of this copy"

Edit = Callable[[Path], None]


def _write(rel: str, data: str = "x\n") -> Edit:
    def edit(src: Path) -> None:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(data)

    return edit


def _remove(rel: str) -> Edit:
    def edit(src: Path) -> None:
        path = src / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()

    return edit


def _symlink(rel: str, target: str) -> Edit:
    def edit(src: Path) -> None:
        (src / rel).symlink_to(target)

    return edit


def _chmod(rel: str, mode: int) -> Edit:
    return lambda src: os.chmod(src / rel, mode)


def _touch(rel: str, mtime: int) -> Edit:
    return lambda src: os.utime(src / rel, (mtime, mtime), follow_symlinks=False)


def _mkdir(rel: str) -> Edit:
    return lambda src: (src / rel).mkdir()


# Each pattern is applied to the source after the previous ones, then the copy is rebuilt.
PATTERNS: list[tuple[str, list[Edit]]] = [
    ("change a file", [_write("a.txt", "two\n")]),
    ("add files and a directory", [_write("new.txt"), _write("d2/e/f.txt", "deep\n")]),
    ("delete a file", [_remove("b/c.txt")]),
    ("delete a directory", [_remove("d2")]),
    ("file becomes a directory", [_remove("a.txt"), _write("a.txt/inner", "in\n")]),
    ("directory becomes a file", [_remove("b"), _write("b", "now a file\n")]),
    ("file becomes a symlink", [_remove("new.txt"), _symlink("new.txt", "a.txt/inner")]),
    ("symlink becomes a file", [_remove("link"), _write("link", "was a link\n")]),
    ("directory becomes a symlink", [_remove("a.txt"), _symlink("a.txt", "/etc")]),
    ("mode only", [_chmod("link", 0o755)]),
    # Neither an mtime nor an excluded file is in the key: each comes with another change.
    ("mtimes", [_touch("link", 10**9), _touch("new.txt", 10**9), _write("m.txt")]),
    ("an excluded file appears", [_write("skip.log", "ignored\n"), _write("m.txt", "2\n")]),
    ("an empty directory appears", [_mkdir("empty")]),
]

COPIES = [
    "(copy (src src) (dst /app/) (exclude skip.log))",
    "(copy (src src) (dst /srv/deep/x) (exclude skip.log))",
]


def _source(ctx: Path) -> Path:
    src = ctx / "src"
    (src / "b").mkdir(parents=True)
    (src / "a.txt").write_text("one\n")
    (src / "b" / "c.txt").write_text("c\n")
    (src / "b" / "d.txt").write_text("d\n")
    (src / "link").symlink_to("b/c.txt")
    return src


def _differences(builder: Builder, a: str, b: str) -> list[str]:
    """How results `a` and `b` differ: everything a filesystem records, mtimes included, but
    the mtimes of directories (busybox tar sets a directory's before writing into it, so in
    a full copy too they are the time of the copy)."""
    with builder.view(a) as ra, builder.view(b) as rb:
        diff = compare_trees(ra, rb, check_mtimes=True)
        return [
            f"{d.kind} {d.path}: {d.a} / {d.b}"
            for d in diff.differences
            if not (d.kind == "mtime" and (ra / d.path).is_dir() and not (ra / d.path).is_symlink())
        ]


def _check_patterns(builder: Builder, ctx: Path, copy: str) -> None:
    src = _source(ctx)
    s = spec(copy)
    ok(builder.build(s, ctx))
    for name, edits in PATTERNS:
        for edit in edits:
            edit(src)
        events, log = collect()
        edited = ok(builder.build(s, ctx, log=log))
        assert edited.steps[-1].cached is False, name
        assert NOTE in text(events), f"{name}: the copy was not incremental"
        full = ok(builder.build(s, ctx, use_cache=False))
        assert full.id != edited.id
        assert _differences(builder, edited.id or "", full.id or "") == [], name


@pytest.mark.parametrize("copy", COPIES, ids=["multi", "single"])
def test_an_edited_copy_gives_the_full_copys_tree(
    btrfs_builder: Builder, tmp_path: Path, copy: str
) -> None:
    _check_patterns(btrfs_builder, tmp_path, copy)


def test_an_edited_copy_on_rsync_gives_the_full_copys_tree(
    rsync_builder: Builder, tmp_path: Path
) -> None:
    _check_patterns(rsync_builder, tmp_path, COPIES[0])


def test_a_parent_file_the_previous_copy_replaced_comes_back(
    btrfs_builder: Builder, tmp_path: Path
) -> None:
    """The previous copy overwrote /app/p from the parent; this one does not write it. Only a
    full copy restores the parent's /app/p, so the copy is full."""
    (tmp_path / "p").write_text("copied\n")
    (tmp_path / "q").write_text("q\n")
    s = spec('(run (shell "mkdir /app; echo parent > /app/p"))', "(copy (src .) (dst /app/))")
    ok(btrfs_builder.build(s, tmp_path))
    (tmp_path / "p").unlink()
    events, log = collect()
    result = ok(btrfs_builder.build(s, tmp_path, log=log))
    assert NOTE not in text(events)
    with btrfs_builder.view(result.id or "") as rootfs:
        assert (rootfs / "app" / "p").read_text() == "parent\n"
        assert (rootfs / "app" / "q").read_text() == "q\n"


def test_removals_stay_inside_the_rootfs(btrfs_builder: Builder, tmp_path: Path) -> None:
    """A run step before the copy made /app a symlink to /etc; removing what the previous
    copy wrote resolves /app inside the container, never the host's /etc."""
    victim = Path("/etc") / f"obuilder-test-{os.getpid()}"
    victim.write_text("host file\n")
    try:
        (tmp_path / victim.name).write_text("copied\n")
        (tmp_path / "keep").write_text("k\n")
        s = spec('(run (shell "ln -s /etc /app"))', "(copy (src .) (dst /app/))")
        ok(btrfs_builder.build(s, tmp_path))
        (tmp_path / victim.name).unlink()
        events, log = collect()
        result = ok(btrfs_builder.build(s, tmp_path, log=log))
        assert NOTE in text(events)
        assert victim.read_text() == "host file\n"
        with btrfs_builder.view(result.id or "") as rootfs:
            assert not (rootfs / "etc" / victim.name).exists()
            assert (rootfs / "etc" / "keep").read_text() == "k\n"
    finally:
        victim.unlink()


def test_an_edit_sends_only_what_changed(btrfs_builder: Builder, tmp_path: Path) -> None:
    """One file of a hundred rewritten: the copy sends that file, not the other 10 MB (a copy
    reports its progress after each MiB sent)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(100):
        (src / f"f{i}").write_bytes(bytes([i]) * 100_000)
    s = spec("(copy (src src) (dst /app/))")

    def build() -> tuple[str, list[int]]:
        events, log = collect()
        ok(btrfs_builder.build(s, tmp_path, log=log))
        return text(events), [int(e.data) for e in events if e.kind == "progress"]

    _, sent = build()
    assert sent[-1] >= 9 << 20  # the whole 10 MB
    (src / "f7").write_bytes(b"changed" * 10)
    shown, sent = build()
    assert NOTE in shown
    assert max(sent, default=0) < 1 << 20
    with btrfs_builder.view(ok(btrfs_builder.build(s, tmp_path)).id or "") as rootfs:
        assert (rootfs / "app" / "src" / "f7").read_bytes() == b"changed" * 10
        assert (rootfs / "app" / "src" / "f8").read_bytes() == bytes([8]) * 100_000


def test_fresh_builds_copy_in_full(btrfs_builder: Builder, tmp_path: Path) -> None:
    """`use_cache=False` (and so the determinism checker's rebuilds) never starts from an
    earlier result: it is meant to redo the work."""
    (tmp_path / "a").write_text("1\n")
    s = spec("(copy (src a) (dst /a))")
    ok(btrfs_builder.build(s, tmp_path))
    (tmp_path / "a").write_text("2\n")
    events, log = collect()
    ok(btrfs_builder.build(s, tmp_path, log=log, use_cache=False))
    assert NOTE not in text(events)


def test_every_copy_saves_its_listing(btrfs_builder: Builder, tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1\n")
    result = ok(btrfs_builder.build(spec("(copy (src a) (dst /x/a))"), tmp_path))
    step_dir = btrfs_builder.store.result(result.id or "")
    assert step_dir is not None and (step_dir / LISTING).is_file()


def test_stale_members_are_the_outermost_gone_or_retyped() -> None:
    previous: Listing = {
        "app": ("d", "", 0, 0o755, 0),
        "app/a": ("d", "", 0, 0o755, 5),
        "app/a/x": ("f", "d1", 1, 0o644, 5),
        "app/a-b": ("f", "d2", 1, 0o644, 5),
        "app/l": ("l", "a", 0, 0o777, 5),
        "app/same": ("f", "d3", 1, 0o644, 5),
    }
    wanted = {"app": "d", "app/l": "f", "app/same": "f"}
    assert stale_members(previous, wanted) == ["app/a", "app/a-b", "app/l"]


@pytest.mark.parametrize("store_fixture", ["overlayfs_store_spec", "zfs_store_spec"])
def test_stores_whose_clones_depend_on_their_source_copy_in_full(
    request: pytest.FixtureRequest, busybox_oci: Path, tmp_path: Path, store_fixture: str
) -> None:
    """An overlayfs step is layered on its parent and a zfs clone depends on its origin, so
    their copies never start from another result; the edited copy is still right."""
    store_spec = request.getfixturevalue(store_fixture)
    (tmp_path / "a").write_text("1\n")
    (tmp_path / "b").write_text("b\n")
    s = spec("(copy (src a b) (dst /x/))")
    with running_builder(store_spec, busybox_oci) as builder:
        ok(builder.build(s, tmp_path))
        (tmp_path / "a").write_text("2\n")
        (tmp_path / "b").unlink()
        (tmp_path / "b").mkdir()
        events, log = collect()
        result = ok(builder.build(s, tmp_path, log=log))
        assert NOTE not in text(events)
        with builder.view(result.id or "") as rootfs:
            assert (rootfs / "x" / "a").read_text() == "2\n"
            assert (rootfs / "x" / "b").is_dir()
