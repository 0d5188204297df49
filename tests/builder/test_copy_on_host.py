"""Copies written by the host (copy_host.py), with runc and busybox on a real btrfs store: the
same tree as busybox's `tar -x` in the container gives, and no container run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from obuilder_core.builder import Builder
from obuilder_core.builder import steps as builder_steps
from obuilder_core.builder.tree_diff import compare_trees
from tests.builder.helpers import collect, ok, output, spec
from tests.builder.wrappers import CountingSandbox

COPY = "(user (uid 1000) (gid 1001)) (copy (src src) (dst /app/))"


def _source(ctx: Path) -> Path:
    src = ctx / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "a.txt").write_text("a\n")
    (src / "sub" / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (src / "sub" / "run.sh").chmod(0o755)
    for i in range(50):
        (src / "sub" / "deeper" / f"f{i}").write_bytes(os.urandom(9000))
    (src / "link").symlink_to("sub/run.sh")
    for i, p in enumerate(sorted(src.rglob("*"), reverse=True)):
        os.utime(p, (1_500_000_000 + i, 1_500_000_000 + i), follow_symlinks=False)
    return src


def test_the_host_gives_the_tree_tar_gives_in_the_container(
    btrfs_builder: Builder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything a filesystem records is the same, mtimes of files and symlinks included, but
    two things busybox tar does not do as the stream says and GNU tar and the host do: it sets
    a directory's mtime before writing into it (so it is the time of the copy; the host's are
    the source's), and it leaves symlinks root's (the host gives them the copy's user)."""
    src = _source(tmp_path)
    s = spec(COPY, '(run (shell "/app/src/sub/run.sh && ls -ln /app/src"))')
    counting = CountingSandbox(btrfs_builder.sandbox)
    btrfs_builder.sandbox = counting  # type: ignore[assignment]
    events, log = collect()
    by_host = ok(btrfs_builder.build(s, tmp_path, log=log))
    assert b"ran\n" in output(events)
    assert b"1000     1001" in output(events)
    assert len(counting.argvs) == 1  # the run step; the copy ran no container

    monkeypatch.setattr(builder_steps, "writes_on_host", lambda user: False)
    in_sandbox = ok(btrfs_builder.build(s, tmp_path, use_cache=False))
    assert len(counting.argvs) == 3  # tar -xf - this time, and the run step again

    host_copy, sandbox_copy = by_host.steps[-2].id, in_sandbox.steps[-2].id
    assert host_copy != sandbox_copy
    with btrfs_builder.view(host_copy) as a, btrfs_builder.view(sandbox_copy) as b:
        diff = compare_trees(a, b, check_mtimes=True)
        found = [(d.kind, d.path) for d in diff.differences]
        made = {".", "app"}  # the rootfs, and /app made by the copy: time of the copy, mtime 0
        dirs = made | {"app/src", "app/src/sub", "app/src/sub/deeper", "app/src/empty"}
        assert {p for k, p in found if k == "mtime"} <= dirs
        assert [(k, p) for k, p in found if k != "mtime"] == [("owner", "app/src/link")]
        assert os.lstat(a / "app" / "src" / "link").st_uid == 1000
        assert os.lstat(a / "app" / "src" / "sub").st_mtime == os.lstat(src / "sub").st_mtime
