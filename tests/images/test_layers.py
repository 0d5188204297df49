"""Layer application: contents, whiteouts, and layers that try to write outside the rootfs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from obuilder_core.images.base import ImageError
from obuilder_core.images.layers import apply_layer, apply_layers
from tests.images.ocibuild import (
    Entry,
    compress,
    directory,
    file,
    hardlink,
    layer_tar,
    symlink,
    tree,
)


def write_layer(path: Path, entries: list[Entry], compression: str | None = None) -> Path:
    path.write_bytes(compress(layer_tar(entries), compression))
    return path


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    return tmp_path / "rootfs"


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    """A directory outside the rootfs that no layer may touch."""
    d = tmp_path / "sentinel"
    d.mkdir()
    (d / "keep").write_text("precious")
    return d


def apply(rootfs: Path, *layers: list[Entry], compression: str | None = None) -> None:
    paths = [
        write_layer(rootfs.parent / f"layer{i}.tar", entries, compression)
        for i, entries in enumerate(layers)
    ]
    apply_layers(rootfs, paths, lambda _: None, where="test image")


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_files_dirs_links_and_modes(rootfs: Path, compression: str | None) -> None:
    apply(
        rootfs,
        [
            directory("bin"),
            file("bin/tool", "#!/bin/sh\n", mode=0o755),
            symlink("bin/alias", "tool"),
            hardlink("bin/hard", "bin/tool"),
            directory("ro", mode=0o555),
            file("ro/inside", "x", mode=0o600),
            file("deep/implicit/parent", "y"),
        ],
        compression=compression,
    )
    assert tree(rootfs) == {
        "bin": "dir",
        "bin/alias": "-> tool",
        "bin/hard": "#!/bin/sh\n",
        "bin/tool": "#!/bin/sh\n",
        "deep": "dir",
        "deep/implicit": "dir",
        "deep/implicit/parent": "y",
        "ro": "dir",
        "ro/inside": "x",
    }
    assert stat.S_IMODE((rootfs / "bin/tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((rootfs / "ro").stat().st_mode) == 0o555
    assert stat.S_IMODE((rootfs / "ro/inside").stat().st_mode) == 0o600
    assert (rootfs / "bin/hard").stat().st_ino == (rootfs / "bin/tool").stat().st_ino
    assert (rootfs / "bin/tool").stat().st_mtime == 1_000_000


def test_owners_and_device_nodes_as_root(rootfs: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    apply(rootfs, [file("owned", "o", uid=1000), Entry("null", "char", mode=0o666)])
    assert (rootfs / "owned").stat().st_uid == 1000
    st = (rootfs / "null").stat()
    assert stat.S_ISCHR(st.st_mode)
    assert os.major(st.st_rdev) == 1


def test_whiteouts_and_opaque_dirs_across_layers(rootfs: Path) -> None:
    lower = [
        directory("etc"),
        file("etc/keep", "k"),
        file("etc/gone", "g"),
        directory("etc/subdir"),
        file("etc/subdir/gone-too", "g"),
        directory("opaque"),
        file("opaque/old", "old"),
        directory("opaque/olddir"),
        file("opaque/olddir/x", "x"),
    ]
    upper = [
        file("etc/.wh.gone"),
        file("etc/.wh.subdir"),
        file("etc/.wh.never-existed"),
        directory("opaque"),
        file("opaque/new", "new"),  # written before the marker: kept
        file("opaque/.wh..wh..opq"),
        file("opaque/newer", "newer"),
        directory(".wh..wh.plnk"),  # aufs bookkeeping: ignored, as docker does
        file(".wh..wh.plnk/123.456", "aufs"),
    ]
    apply(rootfs, lower, upper)
    assert tree(rootfs) == {
        "etc": "dir",
        "etc/keep": "k",
        "opaque": "dir",
        "opaque/new": "new",
        "opaque/newer": "newer",
    }


def test_later_layer_replaces_file_by_dir_and_symlink_by_file(rootfs: Path) -> None:
    apply(rootfs, [file("a", "file"), symlink("b", "a")], [directory("a"), file("b", "now a file")])
    assert tree(rootfs) == {"a": "dir", "b": "now a file"}


def test_directory_replaced_by_symlink_in_same_layer(rootfs: Path) -> None:
    apply(rootfs, [directory("a"), directory("a/b"), symlink("a", "elsewhere")])
    assert tree(rootfs) == {"a": "-> elsewhere"}


MALICIOUS = {
    "dotdot": ([file("../escaped", "x")], "contains '..'"),
    "dotdot-deep": ([file("a/../../escaped", "x")], "contains '..'"),
    "absolute": ([file("/tmp/escaped-obuilder-test", "x")], "absolute path"),
    "symlink-then-write": (
        [symlink("evil", "SENTINEL"), file("evil/pwned", "x")],
        "goes through symlink 'evil'",
    ),
    "relative-symlink-then-write": (
        [symlink("evil", "../sentinel"), file("evil/pwned", "x")],
        "goes through symlink 'evil'",
    ),
    "symlink-then-mkdir": (
        [symlink("evil", "SENTINEL"), directory("evil/sub")],
        "goes through symlink 'evil'",
    ),
    "hardlink-dotdot": ([hardlink("stolen", "../sentinel/keep")], "contains '..'"),
    "hardlink-absolute": ([hardlink("stolen", "SENTINEL/keep")], "absolute path"),
    "hardlink-through-symlink": (
        [symlink("evil", "SENTINEL"), hardlink("stolen", "evil/keep")],
        "goes through symlink 'evil'",
    ),
    "whiteout-through-symlink": (
        [symlink("evil", "SENTINEL"), file("evil/.wh.keep")],
        "goes through symlink 'evil'",
    ),
    "opaque-through-symlink": (
        [symlink("evil", "SENTINEL"), file("evil/.wh..wh..opq")],
        "goes through symlink 'evil'",
    ),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_layer_rejected_and_nothing_written_outside(
    rootfs: Path, sentinel: Path, case: str
) -> None:
    entries, message = MALICIOUS[case]
    entries = [
        Entry(e.name, e.kind, e.data, e.link.replace("SENTINEL", str(sentinel)), e.mode)
        for e in entries
    ]
    message = message.replace("SENTINEL", str(sentinel))
    layer = write_layer(rootfs.parent / "layer0.tar", entries)
    with pytest.raises(ImageError, match="test image") as err:
        apply_layer(rootfs, layer, where="test image")
    assert message in str(err.value)
    assert [p.name for p in sentinel.iterdir()] == ["keep"]
    assert (sentinel / "keep").read_text() == "precious"
    assert (sentinel / "keep").stat().st_nlink == 1
    assert not (rootfs.parent / "escaped").exists()
    assert not Path("/tmp/escaped-obuilder-test").exists()


def test_symlink_from_lower_layer_cannot_be_written_through(rootfs: Path, sentinel: Path) -> None:
    apply(rootfs, [symlink("lib", str(sentinel))])
    layer = write_layer(rootfs.parent / "layer1.tar", [file("lib/evil.so", "x")])
    with pytest.raises(ImageError, match="goes through symlink 'lib'"):
        apply_layer(rootfs, layer, where="test image")
    assert [p.name for p in sentinel.iterdir()] == ["keep"]


def test_garbage_layer_is_a_clear_error(rootfs: Path) -> None:
    layer = rootfs.parent / "junk.tar.gz"
    layer.write_bytes(b"\x1f\x8b" + b"not gzip at all" * 10)
    with pytest.raises(ImageError, match=r"test image: .*junk\.tar\.gz"):
        apply_layer(rootfs, layer, where="test image")
