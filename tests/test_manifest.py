"""Copy manifests: the reference's path rules and errors, excludes, symlinks, modes, stat cache."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import xxhash

from obuilder_core import manifest
from obuilder_core.manifest import (
    Dir,
    File,
    Manifest,
    ManifestError,
    Symlink,
    generate,
    iter_entries,
)
from obuilder_core.stat_cache import StatCache


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    """A build context: a/b/file, a/link -> b, file, fifo, dir/{x,fifo-free}."""
    root = tmp_path / "ctx"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "file").write_text("in b\n")
    (root / "a" / "link").symlink_to("b")
    (root / "file").write_text("hello\n")
    os.mkfifo(root / "fifo")
    return root


def _paths(m: Manifest) -> list[str]:
    return [e.path for e in iter_entries(m.root)]


def _error(ctx: Path, src: str) -> str:
    with pytest.raises(ManifestError) as info:
        generate(ctx, src, [])
    return str(info.value)


# --- source path rules ---------------------------------------------------------------------


@pytest.mark.parametrize("src", ["file", "./file", "/file", ".//file/."])
def test_spellings_of_one_file(ctx: Path, src: str) -> None:
    m = generate(ctx, src, [])
    assert m.root == File("file", xxhash.xxh3_128(b"hello\n").hexdigest(), 6, 0o644, mtime=0)
    assert m.algorithm == "xxh3_128"


@pytest.mark.parametrize("cached", [False, True], ids=["read", "stat-cached"])
def test_a_file_keeps_its_mtime_in_whole_seconds_outside_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cached: bool
) -> None:
    """Truncated, as a tar header holds it (a float would round ...999999999 ns up)."""
    (tmp_path / "f").write_text("f\n")
    os.utime(tmp_path / "f", ns=(0, 1_600_000_000_999_999_999))
    with StatCache(tmp_path / "cache.sqlite", racy_window_ns=0) as cache:
        m = generate(tmp_path, "f", [], stat_cache=cache)
        if cached:  # the digest must now come from the stat cache
            monkeypatch.setattr(manifest, "hash_file", None)
            m = generate(tmp_path, "f", [], stat_cache=cache)
    assert isinstance(m.root, File) and m.root.mtime == 1_600_000_000
    assert m.root == dataclasses.replace(m.root, mtime=0)


def test_nested_source_keeps_its_relative_path(ctx: Path) -> None:
    assert generate(ctx, "a//b/./file", []).root.path == "a/b/file"


@pytest.mark.parametrize("src", [".", "/", ""])
def test_whole_context_has_empty_path(tmp_path: Path, src: str) -> None:
    (tmp_path / "x").write_text("x")
    m = generate(tmp_path, src, [])
    assert m.root == Dir("", (File("x", xxhash.xxh3_128(b"x").hexdigest(), 1, 0o644, mtime=0),))


@pytest.mark.parametrize(
    ("src", "message"),
    [
        ("../file", 'Can\'t use .. in source paths! (in "../file")'),
        ("a/../file", 'Can\'t use .. in source paths! (in "a/../file")'),
        ("a/nope/x", 'Source path "a/nope/x" not found'),
        ("nope", 'Source path "nope" not found'),
        ("a/b/file/x", 'Not a directory: a/b/file (in "a/b/file/x")'),
        ("file/file2", 'Not a directory: file (in "file/file2")'),
        ("a/link/file", 'Not a regular file: a/link (in "a/link/file")'),
        ("fifo", 'Not a regular file: fifo (in "fifo")'),
        ("fifo/x", 'Not a regular file: fifo (in "fifo/x")'),
    ],
)
def test_source_errors(ctx: Path, src: str, message: str) -> None:
    assert _error(ctx, src) == message


def test_special_file_inside_a_tree_is_unsupported(ctx: Path) -> None:
    os.mkfifo(ctx / "a" / "b" / "pipe")
    assert _error(ctx, "a") == 'Unsupported file type for "a/b/pipe"'


def test_unknown_algorithm(ctx: Path) -> None:
    with pytest.raises(ManifestError, match='Unknown digest algorithm "md5"'):
        generate(ctx, "file", [], algorithm="md5")


# --- trees ---------------------------------------------------------------------------------


def test_tree_is_sorted_by_bytes(tmp_path: Path) -> None:
    names = [b"b", b"B", b"a", b"_", b"\xc3\xa9", b"\xff", b"a.txt", b"a0"]
    for n in names:
        (tmp_path / os.fsdecode(n)).write_bytes(n)
    m = generate(tmp_path, ".", [])
    assert [os.fsencode(p) for p in _paths(m)[1:]] == sorted(names)


def test_excludes_match_basenames_below_the_top(tmp_path: Path) -> None:
    for rel in ["src/.git/HEAD", "src/main.ml", "src/sub/.git/x", "src/sub/_build/y", "src/ok"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    m = generate(tmp_path, "src", [".git", "_build", "sub/ok"])
    assert _paths(m) == ["src", "src/main.ml", "src/ok", "src/sub"]
    # The top-level item itself is never excluded.
    assert _paths(generate(tmp_path, "src/.git", [".git"])) == ["src/.git", "src/.git/HEAD"]


def test_symlinks_are_recorded_never_followed(ctx: Path) -> None:
    (ctx / "a" / "dangling").symlink_to("/does/not/exist")
    (ctx / "a" / "escape").symlink_to("../../../../etc")
    m = generate(ctx, "a", [])
    entries = {e.path: e for e in iter_entries(m.root)}
    assert entries["a/link"] == Symlink("a/link", "b")
    assert entries["a/dangling"] == Symlink("a/dangling", "/does/not/exist")
    assert entries["a/escape"] == Symlink("a/escape", "../../../../etc")
    assert generate(ctx, "a/link", []).root == Symlink("a/link", "b")


def test_exec_bit_is_in_the_manifest_other_bits_are_not(ctx: Path) -> None:
    path = ctx / "file"
    path.chmod(0o644)
    plain = generate(ctx, "file", [])
    path.chmod(0o600)
    assert generate(ctx, "file", []) == plain
    path.chmod(0o744)
    executable = generate(ctx, "file", [])
    assert isinstance(executable.root, File)
    assert executable.root.mode == 0o755
    assert executable != plain
    path.chmod(0o6701)  # any x bit counts; setuid/setgid are dropped
    assert generate(ctx, "file", []) == executable


def test_sha256_can_be_chosen(ctx: Path) -> None:
    m = generate(ctx, "file", [], algorithm="sha256")
    assert m.root == File("file", hashlib.sha256(b"hello\n").hexdigest(), 6, 0o644, mtime=0)
    assert m.algorithm == "sha256"


def test_hard_links_are_separate_files(tmp_path: Path) -> None:
    (tmp_path / "one").write_text("same")
    os.link(tmp_path / "one", tmp_path / "two")
    m = generate(tmp_path, ".", [])
    assert isinstance(m.root, Dir)
    assert [type(e) for e in m.root.entries] == [File, File]


# --- the stat cache ------------------------------------------------------------------------


class ReadCounter:
    """Wraps manifest.hash_file (the one place file content is read) to count reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = manifest.hash_file

        def counting(fd: int, algorithm: str, size_hint: int | None = None) -> str:
            self.count += 1
            return real(fd, algorithm, size_hint)

        monkeypatch.setattr(manifest, "hash_file", counting)


def _tree(root: Path, n: int = 20) -> None:
    for i in range(n):
        d = root / f"d{i % 4}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_bytes(os.urandom(100))


def test_stat_cache_avoids_rereading_across_runs(tmp_path: Path, monkeypatch) -> None:
    _tree(tmp_path / "src")
    db = tmp_path / "stat.db"
    reads = ReadCounter(monkeypatch)
    with StatCache(db, racy_window_ns=0) as cache:
        first = generate(tmp_path, "src", [], stat_cache=cache)
    assert reads.count == 20
    with StatCache(db, racy_window_ns=0) as cache:  # a new process would do the same
        second = generate(tmp_path, "src", [], stat_cache=cache)
    assert reads.count == 20
    assert second == first == generate(tmp_path, "src", [])


def test_a_changed_file_is_reread_even_with_size_and_mtime_restored(tmp_path: Path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(b"old content")
    st = path.stat()
    reads = ReadCounter(monkeypatch)
    with StatCache(tmp_path / "stat.db", racy_window_ns=0) as cache:
        old = generate(tmp_path, "f", [], stat_cache=cache)
        # Rewrite until the coarse filesystem clock has ticked, so that only the ctime differs.
        while path.stat().st_ctime_ns == st.st_ctime_ns:
            path.write_bytes(b"new content")
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size
        new = generate(tmp_path, "f", [], stat_cache=cache)
    assert reads.count == 2
    assert isinstance(new.root, File)
    assert new.root.digest == xxhash.xxh3_128(b"new content").hexdigest() != old.root.digest


def test_a_process_keeps_what_it_looked_up(tmp_path: Path, monkeypatch) -> None:
    """Rows read once are kept in memory: with sqlite's rows gone, a second manifest still
    reads no file. A file changed since still misses and is read."""
    _tree(tmp_path / "src")
    db = tmp_path / "stat.db"
    with StatCache(db, racy_window_ns=0) as cache:
        generate(tmp_path, "src", [], stat_cache=cache)
    reads = ReadCounter(monkeypatch)
    with StatCache(db, racy_window_ns=0) as cache:
        first = generate(tmp_path, "src", [], stat_cache=cache)  # from sqlite
        with sqlite3.connect(db) as other:
            other.execute("DELETE FROM digests")
        assert generate(tmp_path, "src", [], stat_cache=cache) == first
        assert reads.count == 0
        (tmp_path / "src" / "d1" / "f1").write_bytes(b"changed")
        changed = generate(tmp_path, "src", [], stat_cache=cache)
    assert reads.count == 1
    assert changed == generate(tmp_path, "src", [])


def test_chmod_is_seen_through_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("#!/bin/sh\n")
    with StatCache(tmp_path / "stat.db", racy_window_ns=0) as cache:
        generate(tmp_path, "f", [], stat_cache=cache)
        path.chmod(0o755)
        m = generate(tmp_path, "f", [], stat_cache=cache)
    assert isinstance(m.root, File)
    assert m.root.mode == 0o755


def test_recently_changed_files_are_not_cached(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "f").write_text("fresh")
    reads = ReadCounter(monkeypatch)
    with StatCache(tmp_path / "stat.db") as cache:  # default racy window: 2 s
        generate(tmp_path, "f", [], stat_cache=cache)
        generate(tmp_path, "f", [], stat_cache=cache)
    assert reads.count == 2


def test_algorithms_are_cached_separately(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with StatCache(tmp_path / "stat.db", racy_window_ns=0) as cache:
        xxh = generate(tmp_path, "f", [], stat_cache=cache)
        sha = generate(tmp_path, "f", [], algorithm="sha256", stat_cache=cache)
    assert isinstance(sha.root, File) and isinstance(xxh.root, File)
    assert sha.root.digest == hashlib.sha256(b"x").hexdigest()
    assert xxh.root.digest == xxhash.xxh3_128(b"x").hexdigest()


def _generate_in_process(args: tuple[Path, Path]) -> Manifest:
    ctx, db = args
    with StatCache(db, racy_window_ns=0) as cache:
        return generate(ctx, "src", [], stat_cache=cache)


def test_stat_cache_is_safe_for_concurrent_processes(tmp_path: Path) -> None:
    _tree(tmp_path / "src", 200)
    with ProcessPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(_generate_in_process, [(tmp_path, tmp_path / "stat.db")] * 12))
    assert all(r == results[0] for r in results)
    assert results[0] == generate(tmp_path, "src", [])


def test_unusable_stat_cache_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(manifest.ObuilderError, match="Can't open stat cache"):
        StatCache(tmp_path / "no" / "such" / "dir" / "stat.db")


def test_source_dir_may_be_a_symlink(ctx: Path, tmp_path: Path) -> None:
    (ctx / "fifo").unlink()
    (tmp_path / "via-link").symlink_to(ctx)
    assert generate(tmp_path / "via-link", ".", []) == generate(ctx, ".", [])
    assert generate(tmp_path / "via-link", "file", []) == generate(ctx, "file", [])


def test_missing_source_dir(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"Can't read source directory .*/nope: No such file"):
        generate(tmp_path / "nope", ".", [])


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, (1 << 20) - 1, 1 << 20, (1 << 20) + 7])
def test_hash_file_with_a_size_hint_digests_the_same(tmp_path: Path, size: int) -> None:
    # The hint saves a read for small files; right, wrong (the file changed) or absent, the
    # digest is always of the whole content.
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    expected = xxhash.xxh3_128(path.read_bytes()).hexdigest()
    for hint in (None, size, max(size - 1, 0), size + 1):
        fd = os.open(path, os.O_RDONLY)
        try:
            assert manifest.hash_file(fd, "xxh3_128", hint) == expected, hint
        finally:
            os.close(fd)
