"""Copy manifests: what a `(copy (src ...))` item contains, as a tree of content digests.

A manifest is what the copy step's id is computed from (see keys.CopyKey) and what the tar stream
(copy_tar) sends. Semantics follow OBuilder's `Manifest.generate` (reference §2.7) with the
changes of DESIGN.md: file digests are xxh3-128 by default (sha256 on request), a stat cache
avoids re-reading unchanged files, and a file's mode (exec bit) is part of the manifest."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from obuilder_core.errors import ObuilderError
from obuilder_core.spec.reader import ocaml_string
from obuilder_core.stat_cache import StatCache

#: Digest algorithms a manifest may use; the name is part of every copy step's key.
ALGORITHMS: dict[str, Callable[[], Any]] = {
    "xxh3_128": xxhash.xxh3_128,
    "sha256": hashlib.sha256,
}


DEFAULT_ALGORITHM = "xxh3_128"


#: The modes a copied file can have: any exec bit in the source makes it 0755, else 0644.
EXEC_MODE = 0o755


PLAIN_MODE = 0o644


_CHUNK = 1 << 20


class ManifestError(ObuilderError):
    """A copy source is unusable: missing, `..`, wrong file type, unreadable, or changing."""


@dataclass(frozen=True)
class File:
    """A regular file: `path` relative to the source dir, content digest, size and copy mode;
    `mtime` (`whole_seconds`) as the manifest saw it, which is not part of the copy's key."""

    path: str
    digest: str
    size: int
    mode: int
    mtime: int = field(compare=False)


@dataclass(frozen=True)
class Symlink:
    """A symbolic link, recorded by its target string (never followed)."""

    path: str
    target: str


@dataclass(frozen=True)
class Dir:
    """A directory and its entries, sorted by the bytes of their basenames, excludes removed."""

    path: str
    entries: tuple[Entry, ...]


Entry = File | Symlink | Dir


@dataclass(frozen=True)
class Manifest:
    """One copy source item: the tree rooted at `root.path` ('' for the whole source dir)."""

    root: Entry
    algorithm: str


def copy_mode(st_mode: int) -> int:
    """The mode a file is copied with: 0755 if any exec bit (u, g or o) is set, else 0644.

    Only the exec bits count: git records nothing else, so checkouts with different umasks give
    the same ids. setuid/setgid/sticky are dropped.
    """
    return EXEC_MODE if st_mode & 0o111 else PLAIN_MODE


def whole_seconds(st: os.stat_result) -> int:
    """The mtime of `st` in whole seconds, as a copy writes it (truncated; never negative)."""
    return max(0, st.st_mtime_ns // 1_000_000_000)


def quote(s: str) -> str:
    """Quote a path for an error message, OCaml `%S` style (`spec.reader.ocaml_string`)."""
    return ocaml_string(s)


def hash_file(fd: int, algorithm: str, size_hint: int | None = None) -> str:
    """Digest exactly the content of the open regular file `fd` (read from its current offset).

    `size_hint`, the size a stat gave, saves the read that finds the end of a small file: a
    regular file's read returns all it has up to the count asked, so getting exactly the
    expected bytes when asking for one more means the end.
    """
    h = ALGORITHMS[algorithm]()
    if size_hint is not None and size_hint < _CHUNK:
        first = os.read(fd, size_hint + 1)
        h.update(first)
        if len(first) == size_hint or not first:
            return str(h.hexdigest())
    while chunk := os.read(fd, _CHUNK):
        h.update(chunk)
    return str(h.hexdigest())


def generate(
    src_dir: Path,
    src: str,
    exclude: Sequence[str],
    *,
    algorithm: str = DEFAULT_ALGORITHM,
    stat_cache: StatCache | None = None,
) -> Manifest:
    """The manifest of source item `src` (a spec `(src ...)` string) inside `src_dir`.

    `src` is split on '/', empty and '.' components dropped; `..` is rejected. Every component
    but the last must be a real directory (symlinks are not followed); the last may be a
    directory, regular file or symlink. Entries whose basename is in `exclude` are skipped at
    every depth below the top. Raises ManifestError with the reference's messages.
    """
    if algorithm not in ALGORITHMS:
        raise ManifestError(f"Unknown digest algorithm {quote(algorithm)}")
    parts = [p for p in src.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ManifestError(f"Can't use .. in source paths! (in {quote(src)})")
    walker = _Walker(os.fspath(src_dir), frozenset(exclude), algorithm, stat_cache)
    for i in range(len(parts) - 1):
        _check_intermediate(Path(src_dir), parts[: i + 1], src)
    if parts:
        st = _lstat_or_none(Path(src_dir, *parts))
        if st is None:
            raise ManifestError(f"Source path {quote(src)} not found")
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise ManifestError(f"Not a regular file: {'/'.join(parts)} (in {quote(src)})")
    root = walker.root("/".join(parts))
    if stat_cache is not None:
        stat_cache.flush()
    return Manifest(root=root, algorithm=algorithm)


def _lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as e:
        raise ManifestError(f"Can't read source path {quote(str(path))}: {e.strerror}") from None


def _check_intermediate(src_dir: Path, parts: list[str], src: str) -> None:
    """The component `parts[-1]` (a prefix of src) must be a real directory."""
    st = _lstat_or_none(src_dir.joinpath(*parts))
    shown = "/".join(parts)
    if st is None:
        raise ManifestError(f"Source path {quote(src)} not found")
    if stat.S_ISREG(st.st_mode):
        raise ManifestError(f"Not a directory: {shown} (in {quote(src)})")
    if not stat.S_ISDIR(st.st_mode):
        raise ManifestError(f"Not a regular file: {shown} (in {quote(src)})")


@dataclass(frozen=True)
class _Walker:
    """Walks the tree below an item, producing manifest entries (str paths: pathlib is slow)."""

    src_dir: str
    exclude: frozenset[str]
    algorithm: str
    stat_cache: StatCache | None

    def root(self, rel: str) -> Entry:
        """The entry of the item at `rel` ('' for the whole source dir)."""
        path = os.path.join(self.src_dir, rel) if rel else self.src_dir
        # The source dir itself may be reached through a symlink: it is not part of the copy.
        st = self._lstat(path, rel) if rel else self._stat_root(path)
        return self.entry(path, rel, st, self._cached([st]).get((st.st_dev, st.st_ino)))

    def entry(self, path: str, rel: str, st: os.stat_result, cached: str | None) -> Entry:
        """The entry at `rel` with lstat `st` and stat-cached digest `cached` (if any)."""
        if stat.S_ISLNK(st.st_mode):
            return Symlink(rel, self._readlink(path, rel))
        if stat.S_ISREG(st.st_mode):
            if cached is not None:
                return File(rel, cached, st.st_size, copy_mode(st.st_mode), whole_seconds(st))
            return self._file(path, rel)
        if stat.S_ISDIR(st.st_mode):
            return Dir(rel, self._dir_entries(path, rel))
        raise ManifestError(f"Unsupported file type for {quote(rel)}")

    def _dir_entries(self, path: str, rel: str) -> tuple[Entry, ...]:
        children = self._children(path, rel)
        # One stat cache query per directory rather than one per file.
        digests = self._cached([st for _, st in children if stat.S_ISREG(st.st_mode)])
        prefix = f"{rel}/" if rel else ""
        entries: list[Entry] = []
        for name, st in children:
            digest = digests.get((st.st_dev, st.st_ino))
            if digest is not None and stat.S_ISREG(st.st_mode):
                # A file the stat cache knows, by far the commonest entry of a rebuild: made
                # here, without its host path or a call per entry (a fifth of the walk).
                mode, mtime = copy_mode(st.st_mode), whole_seconds(st)
                entries.append(File(prefix + name, digest, st.st_size, mode, mtime))
            else:
                entries.append(self.entry(os.path.join(path, name), prefix + name, st, digest))
        return tuple(entries)

    def _cached(self, stats: list[os.stat_result]) -> dict[tuple[int, int], str]:
        if self.stat_cache is None or not stats:
            return {}
        return self.stat_cache.get_many(stats, self.algorithm)

    @staticmethod
    def _stat_root(path: str) -> os.stat_result:
        try:
            st = os.stat(path)
        except OSError as e:
            raise ManifestError(f"Can't read source directory {path}: {e.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise ManifestError(f"Source directory {path} is not a directory")
        return st

    @staticmethod
    def _lstat(path: str, rel: str) -> os.stat_result:
        try:
            return os.lstat(path)
        except FileNotFoundError:
            raise ManifestError(f"File {quote(rel)} not found in source directory") from None
        except OSError as e:
            raise ManifestError(f"Can't read {quote(rel)}: {e.strerror}") from None

    def _children(self, path: str, rel: str) -> list[tuple[str, os.stat_result]]:
        """(name, lstat) of the entries of a directory, excludes removed, in byte order."""
        out = []
        try:
            with os.scandir(path) as it:
                for e in it:
                    if e.name not in self.exclude:
                        out.append((e.name, e.stat(follow_symlinks=False)))
        except FileNotFoundError as e:
            missing = rel if e.filename == path else _join(rel, os.path.basename(e.filename))
            raise ManifestError(f"File {quote(missing)} not found in source directory") from None
        except OSError as e:
            raise ManifestError(f"Can't list {quote(rel or '.')}: {e.strerror}") from None
        # Byte order, like OCaml's String.compare; fsencode undoes surrogateescape.
        out.sort(key=lambda c: os.fsencode(c[0]))
        return out

    @staticmethod
    def _readlink(path: str, rel: str) -> str:
        try:
            return os.readlink(path)
        except OSError as e:
            raise ManifestError(f"Can't read symlink {quote(rel)}: {e.strerror}") from None

    def _file(self, path: str, rel: str) -> File:
        digest, st = self._read_digest(path, rel)
        if self.stat_cache is not None:
            self.stat_cache.put(st, self.algorithm, digest)
        return File(rel, digest, st.st_size, copy_mode(st.st_mode), whole_seconds(st))

    def _read_digest(self, path: str, rel: str) -> tuple[str, os.stat_result]:
        """Digest the file; retry if it changes while read, so digest and stat agree."""
        for _ in range(3):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                raise ManifestError(f"File {quote(rel)} not found in source directory") from None
            except OSError as e:
                raise ManifestError(f"Can't read {quote(rel)}: {e.strerror}") from None
            try:
                before = os.fstat(fd)
                if not stat.S_ISREG(before.st_mode):
                    raise ManifestError(f"Unsupported file type for {quote(rel)}")
                digest = hash_file(fd, self.algorithm, before.st_size)
                after = os.fstat(fd)
            except OSError as e:
                raise ManifestError(f"Can't read {quote(rel)}: {e.strerror}") from None
            finally:
                os.close(fd)
            if _same_version(before, after):
                return digest, after
        raise ManifestError(f"Source file {quote(rel)} kept changing while it was read")


def _same_version(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def iter_entries(entry: Entry) -> list[Entry]:
    """All entries of a tree in manifest order (a directory before its contents)."""
    out: list[Entry] = []
    stack = [entry]
    while stack:
        e = stack.pop()
        out.append(e)
        if isinstance(e, Dir):
            stack.extend(reversed(e.entries))
    return out
