"""rsync specifics: copies keep links, modes and owners; `auto`'s choice and default store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from obuilder_core.stores import open_store
from obuilder_core.stores.auto import can_mount_overlay, default_store_spec
from obuilder_core.stores.names import escape_cache_name
from obuilder_core.stores.rsync import RsyncStore


def test_child_copy_keeps_links_modes_and_owners(rsync_store_spec: str) -> None:
    store = open_store(rsync_store_spec)

    def base(tmp: Path) -> None:
        root = tmp / "rootfs"
        (root / "bin").mkdir(parents=True)
        (root / "bin" / "tool").write_text("#!/bin/sh\n")
        os.chmod(root / "bin" / "tool", 0o751)
        os.link(root / "bin" / "tool", root / "bin" / "hard")
        os.symlink("/etc/passwd", root / "abs-link")  # kept as a link, never followed
        os.symlink("bin/tool", root / "rel-link")
        (root / ".hidden").write_text("h")
        os.chmod(root / "bin", 0o700)
        if os.geteuid() == 0:
            os.chown(root / "bin" / "tool", 1000, 1001, follow_symlinks=False)

    store.build("p", None, base)
    seen: dict[str, object] = {}

    def child(tmp: Path) -> None:
        root = tmp / "rootfs"
        st = os.lstat(root / "bin" / "tool")
        seen.update(
            mode=st.st_mode & 0o7777,
            owner=(st.st_uid, st.st_gid),
            hard=os.stat(root / "bin" / "hard").st_ino == st.st_ino,
            abs_link=os.readlink(root / "abs-link"),
            rel_link=os.readlink(root / "rel-link"),
            hidden=(root / ".hidden").read_text(),
            bin_mode=os.stat(root / "bin").st_mode & 0o7777,
        )

    store.build("c", "p", child)
    assert seen["mode"] == 0o751
    assert seen["hard"] is True
    assert seen["abs_link"] == "/etc/passwd"
    assert seen["rel_link"] == "bin/tool"
    assert seen["hidden"] == "h"
    assert seen["bin_mode"] == 0o700
    if os.geteuid() == 0:
        assert seen["owner"] == (1000, 1001)


def test_escape_cache_name_is_injective_and_one_component() -> None:
    # OBuilder's unpadded %x mapped both of these to c-%a1 (reference §7 item 14)
    assert escape_cache_name("\n1") == "c-%0a1"
    assert escape_cache_name("\xa1") == "c-%c2%a1"
    assert escape_cache_name("a/1") == "c-a%2f1"
    assert escape_cache_name("%20") == "c-%2520"
    assert escape_cache_name("..") == "c-.."
    assert escape_cache_name("") == "c-"
    assert escape_cache_name("opam-archives") == "c-opam-archives"
    names = ["a/b", "a%2fb", "a b", "a%20b", "..", ".", "", "\n1", "\xa1", "%", "%25"]
    escaped = [escape_cache_name(n) for n in names]
    assert len(set(escaped)) == len(names)
    assert all("/" not in e and e not in (".", "..") for e in escaped)


def test_default_store_spec_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_store_spec() == f"auto:{tmp_path / 'xdg' / 'obuilder'}"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_spec() == f"auto:{tmp_path / 'home' / '.cache' / 'obuilder'}"


def test_auto_reopens_the_recorded_backend(tmp_path: Path) -> None:
    (tmp_path / "kind").write_text("rsync\n")
    store = open_store(f"auto:{tmp_path}")
    assert isinstance(store, RsyncStore)
    assert store.state_dir() == tmp_path / "rsync" / "state"


def test_overlay_probe_leaves_nothing(tmp_path: Path) -> None:
    mountable = can_mount_overlay(tmp_path)
    if os.geteuid() == 0 and "overlay" in Path("/proc/filesystems").read_text():
        assert mountable
    assert list(tmp_path.iterdir()) == []
    mounts = Path("/proc/mounts").read_text()
    assert str(tmp_path) not in mounts


def test_long_cache_names_fit_one_component_and_stay_distinct() -> None:
    long_a, long_b = "x" * 300 + "a", "x" * 300 + "b"
    ea, eb = escape_cache_name(long_a), escape_cache_name(long_b)
    assert ea != eb
    assert len(ea) <= 200 and ea.startswith("h-") and "/" not in ea
    assert escape_cache_name("h-x") == "c-h-x"  # short names never start with "h-"
