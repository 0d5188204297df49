"""A step's change written as a layer and applied to its parent gives the step's tree back.

Each case edits a copy of one tree, writes the layer of `upper` against `lower`, applies it to
another copy of `lower` and compares with the determinism checker's `compare_trees` (contents,
types, modes, owners, link targets, device numbers, hard-link structure, xattrs, mtimes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from obuilder_core.builder.tree_diff import compare_trees
from obuilder_core.images.layer_writer import LayerInfo, write_layer
from obuilder_core.images.layers import apply_layer, open_tar
from tests.fixtures.root import require_root

Edit = Callable[[Path], None]


def make_lower(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0\n")
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"\x7fELF" + bytes(range(256)) * 40)
    (root / "bin/tool").chmod(0o755)
    (root / "bin/alias").symlink_to("tool")
    (root / "data/deep/er").mkdir(parents=True)
    for i in range(20):
        (root / f"data/deep/er/f{i:02}").write_text(f"file {i}\n" * (i + 1))
    (root / "data/same-size").write_text("aaaa")
    os.link(root / "etc/passwd", root / "etc/passwd.link")
    os.mkfifo(root / "data/pipe")


def copy_tree(src: Path, dst: Path) -> None:
    # New inodes and ctimes, so unchanged files are recognised by their contents. GNU tar in
    # POSIX format keeps nanosecond mtimes of everything (`cp -a` and rsync do not, always).
    pack = subprocess.Popen(
        ["tar", "-C", str(src), "--format=posix", "--xattrs", "-cf", "-", "."],
        stdout=subprocess.PIPE,
    )
    subprocess.run(["tar", "-C", str(dst), "--xattrs", "-xpf", "-"], stdin=pack.stdout, check=True)
    assert pack.wait() == 0


def rewrite_same_size(root: Path) -> None:
    path = root / "data/same-size"
    st = path.stat()
    path.write_text("bbbb")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only contents


def replace_dir_by_file(root: Path) -> None:
    shutil.rmtree(root / "data/deep")
    (root / "data/deep").write_text("now a file\n")


def replace_file_by_dir(root: Path) -> None:
    (root / "etc/passwd.link").unlink()
    (root / "etc/passwd").unlink()
    (root / "etc/passwd").mkdir()
    (root / "etc/passwd/inside").write_text("x")


def replace_file_by_symlink(root: Path) -> None:
    (root / "bin/tool").unlink()
    (root / "bin/tool").symlink_to("/elsewhere")


def retarget_symlink(root: Path) -> None:
    (root / "bin/alias").unlink()
    (root / "bin/alias").symlink_to("other")


def add_hard_link(root: Path) -> None:
    os.link(root / "bin/tool", root / "bin/tool2")


def break_hard_link(root: Path) -> None:
    (root / "etc/passwd.link").unlink()
    shutil.copy2(root / "etc/passwd", root / "etc/passwd.link")


def add_device_and_xattr(root: Path) -> None:
    os.mknod(root / "data/null", 0o020666, os.makedev(1, 3))
    os.setxattr(root / "bin/tool", "user.note", b"hello")


def nanosecond_mtime(root: Path) -> None:
    os.utime(root / "etc/passwd", ns=(0, 1_700_000_000_123_456_789))


def chown_only(root: Path) -> None:
    os.chown(root / "data/deep/er/f03", 1000, 1000)


CASES: dict[str, Edit] = {
    "nothing": lambda root: None,
    "change": lambda root: (root / "etc/passwd").write_text("root:x:0:0\nuser:x:1000:1000\n"),
    "add": lambda root: (root / "data/deep/new").write_text("new\n"),
    "add a tree": lambda root: (root / "opt/a/b").mkdir(parents=True),
    "delete a file": lambda root: (root / "data/deep/er/f05").unlink(),
    "delete a tree": lambda root: shutil.rmtree(root / "data/deep"),
    "mode only": lambda root: (root / "bin/tool").chmod(0o700),
    "owner only": chown_only,
    "same size, same mtime, new contents": rewrite_same_size,
    "dir -> file": replace_dir_by_file,
    "file -> dir": replace_file_by_dir,
    "file -> symlink": replace_file_by_symlink,
    "symlink retargeted": retarget_symlink,
    "new hard link": add_hard_link,
    "hard link broken": break_hard_link,
    "device and xattr": add_device_and_xattr,
    "mtime nanoseconds": nanosecond_mtime,
}


def round_trip(tmp_path: Path, edit: Edit) -> tuple[LayerInfo, Path, Path]:
    lower, upper, applied = tmp_path / "lower", tmp_path / "upper", tmp_path / "applied"
    for d in (lower, upper, applied):
        d.mkdir()
    make_lower(lower)
    copy_tree(lower, upper)
    edit(upper)
    info = write_layer(lower, upper, tmp_path / "layer.tar.gz")
    copy_tree(lower, applied)
    apply_layer(applied, tmp_path / "layer.tar.gz", where="test layer")
    return info, upper, applied


@pytest.mark.parametrize("edit", CASES.values(), ids=CASES.keys())
def test_applying_the_layer_to_the_parent_gives_the_step_back(tmp_path: Path, edit: Edit) -> None:
    require_root()  # owners and device nodes
    info, upper, applied = round_trip(tmp_path, edit)
    diff = compare_trees(upper, applied, check_mtimes=True)
    assert [d for d in diff.differences if d.path != "."] == []
    assert info.size == (tmp_path / "layer.tar.gz").stat().st_size


def test_an_unchanged_copy_gives_an_empty_layer(tmp_path: Path) -> None:
    info, _, _ = round_trip(tmp_path, CASES["nothing"])
    assert (info.entries, info.whiteouts) == (0, 0)


def test_a_layer_holds_only_what_changed(tmp_path: Path) -> None:
    info, _, _ = round_trip(tmp_path, CASES["delete a tree"])
    with open_tar(tmp_path / "layer.tar.gz", where="test") as tar:
        names = [m.name for m in tar]
    # One whiteout for the whole tree, and its parent directory (its mtime changed).
    assert names == ["data/.wh.deep", "data"]
    assert (info.entries, info.whiteouts) == (1, 1)


def test_without_a_parent_the_layer_holds_everything(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    make_lower(tmp_path / "tree")
    (tmp_path / "out").mkdir()
    write_layer(None, tmp_path / "tree", tmp_path / "layer.tar.gz")
    apply_layer(tmp_path / "out", tmp_path / "layer.tar.gz", where="test layer")
    diff = compare_trees(tmp_path / "tree", tmp_path / "out", check_mtimes=True)
    assert [d for d in diff.differences if d.path != "."] == []
