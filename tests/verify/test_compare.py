"""compare_trees on plain directories: every kind of difference, and no false positives."""

from __future__ import annotations

import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from obuilder_core.builder.tree_diff import _SHARES, CompareError, compare_trees, content_detail
from obuilder_core.stat_cache import StatCache


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    """Two identical trees A and B: a dir, text and binary files, a symlink."""
    a = tmp_path / "A"
    (a / "etc").mkdir(parents=True)
    (a / "etc" / "conf").write_text("one\ntwo\nthree\n")
    (a / "bin.dat").write_bytes(bytes(range(256)) * 4)
    (a / "link").symlink_to("etc/conf")
    b = tmp_path / "B"
    shutil.copytree(a, b, symlinks=True)
    return a, b


def kinds(a: Path, b: Path, **kw: object) -> list[tuple[str, str]]:
    return [(d.kind, d.path) for d in compare_trees(a, b, **kw).differences]  # type: ignore[arg-type]


def test_identical_copies_are_the_same(trees: tuple[Path, Path]) -> None:
    a, b = trees
    os.utime(b / "etc" / "conf", (0, 0))  # mtimes count only when asked
    assert compare_trees(a, b).same
    assert kinds(a, b, check_mtimes=True) == [("mtime", "etc/conf")]


def test_each_kind_is_reported(trees: tuple[Path, Path]) -> None:
    a, b = trees
    (a / "only-a").write_text("a")
    (b / "only-b").mkdir()
    (b / "etc" / "conf").write_text("one\nTWO\nthree\n")
    os.chmod(b / "bin.dat", 0o600)
    (b / "link").unlink()
    (b / "link").symlink_to("elsewhere")
    os.setxattr(b / "etc", "user.test", b"1")
    assert kinds(a, b) == [
        ("only in A", "only-a"),
        ("only in B", "only-b"),
        ("content", "etc/conf"),
        ("mode", "bin.dat"),
        ("link target", "link"),
        ("xattrs", "etc"),
    ]


def test_owner_and_type(trees: tuple[Path, Path]) -> None:
    a, b = trees
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    os.chown(b / "bin.dat", 1234, 5678)
    (b / "etc" / "conf").unlink()
    (b / "etc" / "conf").mkdir()
    diff = compare_trees(a, b)
    assert [(d.kind, d.path, d.a, d.b) for d in diff.differences] == [
        ("type", "etc/conf", "file", "directory"),
        ("owner", "bin.dat", "0:0", "1234:5678"),
    ]


def test_mtimes_are_shown_as_iso_times(trees: tuple[Path, Path]) -> None:
    a, b = trees
    os.utime(b / "etc" / "conf", ns=(0, 1_700_000_000_123456789))
    os.utime(a / "etc" / "conf", ns=(0, 1_700_000_000_000000000))
    (diff,) = compare_trees(a, b, check_mtimes=True).differences
    assert (diff.a, diff.b) == ("2023-11-14T22:13:20.000000000Z", "2023-11-14T22:13:20.123456789Z")


def test_mtimes_later_than_the_clamp_compare_as_it(trees: tuple[Path, Path]) -> None:
    a, b = trees
    os.utime(a / "etc" / "conf", (0, 2_000_000_000))
    os.utime(b / "etc" / "conf", (0, 2_000_000_005))
    os.utime(a / "bin.dat", (0, 1_000_000_000))  # older than the clamp: compared as it is
    os.utime(b / "bin.dat", (0, 1_000_000_001))
    clamped = compare_trees(a, b, check_mtimes=True, mtime_clamp=1_500_000_000)
    assert [(d.kind, d.path) for d in clamped.differences] == [("mtime", "bin.dat")]


def test_hard_link_structure_is_compared(trees: tuple[Path, Path]) -> None:
    a, b = trees
    os.link(a / "etc" / "conf", a / "conf-link")  # ln in A, cp -p in B: same bytes, not a link
    shutil.copy2(b / "etc" / "conf", b / "conf-link")
    diff = compare_trees(a, b)
    assert [(d.kind, d.path, d.a, d.b) for d in diff.differences] == [
        ("hard links", "conf-link", "/etc/conf", "(none)"),
        ("hard links", "etc/conf", "/conf-link", "(none)"),
    ]
    os.unlink(b / "conf-link")
    os.link(b / "etc" / "conf", b / "conf-link")  # the same structure: the same tree
    assert compare_trees(a, b).same


def test_device_numbers_fifos_and_sockets(trees: tuple[Path, Path]) -> None:
    a, b = trees
    if os.geteuid() != 0:
        pytest.skip("needs root to mknod")
    os.mknod(a / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 1))
    os.mknod(b / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 2))
    os.mkfifo(a / "pipe")
    (b / "pipe").write_text("")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(a / "sock"))
    os.mkfifo(b / "sock")
    diff = compare_trees(a, b)
    assert [(d.kind, d.path, d.a, d.b) for d in diff.differences] == [
        ("type", "pipe", "fifo", "file"),
        ("type", "sock", "socket", "fifo"),
        ("device", "null", "1:1", "1:2"),
    ]


def test_details_text_diff_and_hex(trees: tuple[Path, Path]) -> None:
    a, b = trees
    (b / "etc" / "conf").write_text("one\nTWO\nthree\n")
    data = bytearray((b / "bin.dat").read_bytes())
    data[300] ^= 0xFF
    (b / "bin.dat").write_bytes(bytes(data))
    text = content_detail(a / "etc" / "conf", b / "etc" / "conf")
    assert "-two\n+TWO" in text
    hexed = content_detail(a / "bin.dat", b / "bin.dat")
    assert "first difference at byte 300" in hexed
    assert "A 00000120:" in hexed and "B 00000120:" in hexed


def test_stat_cache_avoids_rereading(trees: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = trees
    os.utime(a / "etc" / "conf", (1, 1))  # older than the racy window, so digests are kept
    os.utime(a / "bin.dat", (1, 1))
    for p in (b / "etc" / "conf", b / "bin.dat"):
        os.utime(p, (1, 1))
    # ctime cannot be set: wait out the racy window by using a zero window instead.
    with StatCache(tmp_path / "cache.sqlite", racy_window_ns=0) as cache:
        assert compare_trees(a, b, stat_cache=cache).same
        rows = cache.get_many([os.lstat(a / "bin.dat"), os.lstat(b / "bin.dat")], "xxh3_128")
        # A's digest is recorded, so the next comparison reads only B: the scratch tree (a
        # rebuild, deleted after) is always read, its digests would only fill the cache.
        assert list(rows) == [(os.lstat(a).st_dev, os.lstat(a / "bin.dat").st_ino)]
        (b / "bin.dat").write_bytes(b"x" * 1024)  # same size, new content: must miss
        assert kinds(a, b, stat_cache=cache) == [("content", "bin.dat")]


@pytest.mark.parametrize("missing", ["A", "B"])
def test_a_tree_that_cannot_be_read_is_an_error(
    trees: tuple[Path, Path], tmp_path: Path, missing: str
) -> None:
    # Both processes read both trees: whichever fails first, the error names the tree.
    a, b = trees
    shutil.rmtree(tmp_path / missing)
    with pytest.raises(CompareError, match=rf"Can't read .*/{missing}: No such file"):
        compare_trees(a, b)


def _one_path_per_share(names: list[str]) -> list[str]:
    """The first of `names` that each process owns: the paths are shared between the two
    by hash (`tree_diff._compare_share`), and the test must reach both."""
    owners = {hash(n) % _SHARES: n for n in reversed(names)}
    assert len(owners) == _SHARES, "pick more names"
    return [owners[k] for k in sorted(owners)]


def test_differences_are_found_by_either_process(tmp_path: Path) -> None:
    # Each process compares and reads its own share of the paths: a difference of each kind
    # in a path of each share must be reported, and both shares' digests of A recorded.
    a, b = tmp_path / "A", tmp_path / "B"
    names = [f"d{d}/f{f}" for d in range(4) for f in range(10)]
    for i, name in enumerate(names):
        (a / name).parent.mkdir(parents=True, exist_ok=True)
        (a / name).write_bytes(bytes([i]) * 4096)
    shutil.copytree(a, b)
    changed, chmodded = _one_path_per_share(names[:20]), _one_path_per_share(names[20:])
    for name in changed:
        (b / name).write_bytes(b"x" * 4096)
    for name in chmodded:
        os.chmod(b / name, 0o600)
    # ctime cannot be set: a zero racy window lets the new files' digests be recorded.
    with StatCache(tmp_path / "cache.sqlite", racy_window_ns=0) as cache:
        assert kinds(a, b, stat_cache=cache) == [("content", n) for n in sorted(changed)] + [
            ("mode", n) for n in sorted(chmodded)
        ]
        recorded = cache.get_many([os.lstat(a / n) for n in names], "xxh3_128")
    assert len(recorded) == len(names)


def test_hard_links_between_the_shares_are_compared(tmp_path: Path) -> None:
    # Two names of one inode, in two directories, compared by the two processes.
    a, b = tmp_path / "A", tmp_path / "B"
    first = "x/f"
    second = next(
        f"y/g{i}" for i in range(64) if hash(f"y/g{i}") % _SHARES != hash(first) % _SHARES
    )
    for tree in (a, b):
        (tree / "x").mkdir(parents=True)
        (tree / "y").mkdir()
        (tree / first).write_text("same bytes")
    os.link(a / first, a / second)
    shutil.copy2(b / first, b / second)
    assert [(d.kind, d.path, d.a, d.b) for d in compare_trees(a, b).differences] == [
        ("hard links", first, f"/{second}", "(none)"),
        ("hard links", second, f"/{first}", "(none)"),
    ]
