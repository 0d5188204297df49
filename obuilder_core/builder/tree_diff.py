"""Comparing two root filesystems, as the determinism checker needs: what differs and how.

`compare_trees(a, b)` walks both trees once (lstat only), and reads file contents only when it
must: files whose sizes differ are different without reading; two files with the same inode,
size, mtime and ctime in two clones of one snapshot were not written since the clone (ctime
cannot be set from user space), so they are equal without reading; otherwise digests (xxh3)
come from the `StatCache` when the stat data match a recorded digest, and are read once else.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from obuilder_core.builder.archive_diff import archive_detail
from obuilder_core.errors import ObuilderError
from obuilder_core.manifest import DEFAULT_ALGORITHM, hash_file
from obuilder_core.stat_cache import StatCache

#: Difference kinds, in report order.
KINDS = ("only in A", "only in B", "type", "content", "device", "hard links", "mode", "owner",
         "link target", "xattrs", "mtime")  # fmt: skip
TEXT_DIFF_LIMIT = 64 * 1024
"""Files up to this size that decode as UTF-8 get a unified diff in the report."""
DIFF_LINES = 40
HEX_BYTES = 16


class CompareError(ObuilderError):
    """A tree could not be read while comparing."""


@dataclass(frozen=True)
class Difference:
    """One path (relative to the tree roots) that differs, of one kind, with the two values."""

    kind: str
    path: str
    a: str = ""
    b: str = ""


@dataclass(frozen=True)
class TreeDiff:
    """The differences between trees `a` and `b`, in KINDS order then path order."""

    a: Path
    b: Path
    differences: tuple[Difference, ...] = field(default=())

    @property
    def same(self) -> bool:
        """True when the trees do not differ."""
        return not self.differences

    def by_kind(self) -> dict[str, list[Difference]]:
        """The differences grouped by kind (only kinds that occur), in KINDS order."""
        groups: dict[str, list[Difference]] = {}
        for kind in KINDS:
            found = [d for d in self.differences if d.kind == kind]
            if found:
                groups[kind] = found
        return groups


def _walk(root: Path) -> dict[str, os.stat_result]:
    """Every path below `root` (relative, '' excluded) with its lstat result."""
    out: dict[str, os.stat_result] = {}
    stack = [""]
    base = os.fspath(root)
    while stack:
        rel = stack.pop()
        path = os.path.join(base, rel) if rel else base
        try:
            with os.scandir(path) as it:
                for e in it:
                    child = f"{rel}/{e.name}" if rel else e.name
                    st = e.stat(follow_symlinks=False)
                    out[child] = st
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(child)
        except OSError as err:
            raise CompareError(f"Can't read {path}: {err.strerror}") from None
    return out


def _type(st: os.stat_result) -> str:
    mode = st.st_mode
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISLNK, "symlink"), (stat.S_ISCHR, "char device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket")):  # fmt: skip
        if test(mode):
            return name
    return "unknown"


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        return {
            n: os.getxattr(path, n, follow_symlinks=False)
            for n in os.listxattr(path, follow_symlinks=False)
        }
    except OSError:
        return {}  # e.g. a filesystem without xattr support: nothing to compare


class _Digests:
    """File digests, from the stat cache when it has them, else read (and recorded)."""

    def __init__(self, cache: StatCache | None) -> None:
        self.cache = cache

    def get_all(self, root: Path, items: list[tuple[str, os.stat_result]]) -> dict[str, str]:
        known = (
            self.cache.get_many([st for _, st in items], DEFAULT_ALGORITHM) if self.cache else {}
        )
        base = os.fspath(root)
        prefix = base if base.endswith("/") else base + "/"  # str joins: no Path per file
        out = {}
        read: list[tuple[os.stat_result, str]] = []
        # In inode order: the callers' order is a set's, and random inodes read ~25% slower.
        for rel, st in sorted(items, key=lambda item: item[1].st_ino):
            digest = known.get((st.st_dev, st.st_ino))
            if digest is None:
                digest = self._read(prefix + rel)
                read.append((st, digest))
            out[rel] = digest
        if self.cache is not None:
            # Recorded under the walk's lstat, taken before the read: a write after it changes
            # the ctime, so a digest of newer content is never found for the file's new state.
            self.cache.put_many(read, DEFAULT_ALGORITHM)
        return out

    def _read(self, path: str) -> str:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise CompareError(f"Can't read {path}: {e.strerror}") from None
        try:
            return hash_file(fd, DEFAULT_ALGORITHM)
        except OSError as e:
            raise CompareError(f"Can't read {path}: {e.strerror}") from None
        finally:
            os.close(fd)


def _untouched(x: os.stat_result, y: os.stat_result) -> bool:
    return (x.st_ino, x.st_size, x.st_mtime_ns, x.st_ctime_ns) == (
        y.st_ino, y.st_size, y.st_mtime_ns, y.st_ctime_ns)  # fmt: skip


def compare_trees(
    a: Path,
    b: Path,
    *,
    check_mtimes: bool = False,
    mtime_clamp: int | None = None,
    stat_cache: StatCache | None = None,
) -> TreeDiff:
    """Compare trees `a` and `b`: set of paths, type, mode, owner, size and content (xxh3),
    device numbers, hard-link structure, symlink target, xattrs (file capabilities among
    them), and mtimes if `check_mtimes` (directories' too; an mtime later than `mtime_clamp`,
    in seconds since the epoch, compares as `mtime_clamp`, as SOURCE_DATE_EPOCH asks). The
    roots' own metadata is compared as path '.'. Raises CompareError if a tree cannot be read.
    """
    ta, tb = _walk(a), _walk(b)
    ta["."], tb["."] = os.lstat(a), os.lstat(b)
    diffs = [Difference("only in A", p) for p in ta.keys() - tb.keys()]
    diffs += [Difference("only in B", p) for p in tb.keys() - ta.keys()]
    to_hash: list[tuple[str, os.stat_result, os.stat_result]] = []
    links_a, links_b = _hard_links(ta), _hard_links(tb)
    mtimes = _MtimeRule(check_mtimes, None if mtime_clamp is None else mtime_clamp * 10**9)
    for rel in ta.keys() & tb.keys():
        x, y = ta[rel], tb[rel]
        if _type(x) != _type(y):
            diffs.append(Difference("type", rel, _type(x), _type(y)))
            continue
        diffs += _meta(a, b, rel, x, y, mtimes)
        if (stat.S_ISCHR(x.st_mode) or stat.S_ISBLK(x.st_mode)) and x.st_rdev != y.st_rdev:
            diffs.append(Difference("device", rel, _device(x), _device(y)))
        if links_a.get(rel, ()) != links_b.get(rel, ()):
            others_a, others_b = links_a.get(rel, ()), links_b.get(rel, ())
            diffs.append(Difference("hard links", rel, _names(others_a), _names(others_b)))
        if stat.S_ISREG(x.st_mode):
            if x.st_size != y.st_size:
                diffs.append(Difference("content", rel, f"{x.st_size} bytes", f"{y.st_size} bytes"))
            elif not _untouched(x, y):
                to_hash.append((rel, x, y))
    digests = _Digests(stat_cache)
    da = digests.get_all(a, [(r, x) for r, x, _ in to_hash])
    db = digests.get_all(b, [(r, y) for r, _, y in to_hash])
    if stat_cache is not None:
        stat_cache.flush()
    for rel, _, _ in to_hash:
        if da[rel] != db[rel]:
            diffs.append(Difference("content", rel, da[rel][:16], db[rel][:16]))
    diffs.sort(key=lambda d: (KINDS.index(d.kind), d.path))
    return TreeDiff(a, b, tuple(diffs))


def _hard_links(tree: dict[str, os.stat_result]) -> dict[str, tuple[str, ...]]:
    """For each non-directory path with more than one link: the other paths of the tree that
    are the same inode (`ln` and `cp` give equal contents but not the same tree)."""
    by_inode: dict[tuple[int, int], list[str]] = {}
    for rel, st in tree.items():
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            by_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
    return {
        rel: tuple(sorted(p for p in paths if p != rel))
        for paths in by_inode.values()
        for rel in paths
    }


def _names(paths: tuple[str, ...]) -> str:
    return ", ".join(f"/{p}" for p in paths) or "(none)"


def _device(st: os.stat_result) -> str:
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def iso_time(ns: int) -> str:
    """`2026-12-01T10:20:30.123456789Z`: a timestamp in nanoseconds, readable."""
    whole, frac = divmod(ns, 1_000_000_000)
    when = datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{when}.{frac:09d}Z"


@dataclass(frozen=True)
class _MtimeRule:
    """Whether mtimes are compared, and the time (ns) that later mtimes compare as."""

    check: bool
    clamp_ns: int | None

    def differ(self, x: os.stat_result, y: os.stat_result) -> bool:
        if not self.check or stat.S_ISLNK(x.st_mode):
            return False
        if self.clamp_ns is None:
            return x.st_mtime_ns != y.st_mtime_ns
        return min(x.st_mtime_ns, self.clamp_ns) != min(y.st_mtime_ns, self.clamp_ns)


def _meta(
    a: Path, b: Path, rel: str, x: os.stat_result, y: os.stat_result, mtimes: _MtimeRule
) -> list[Difference]:
    out = []
    if stat.S_IMODE(x.st_mode) != stat.S_IMODE(y.st_mode):
        out.append(Difference("mode", rel, f"{stat.S_IMODE(x.st_mode):04o}",
                              f"{stat.S_IMODE(y.st_mode):04o}"))  # fmt: skip
    if (x.st_uid, x.st_gid) != (y.st_uid, y.st_gid):
        out.append(Difference("owner", rel, f"{x.st_uid}:{x.st_gid}", f"{y.st_uid}:{y.st_gid}"))
    pa, pb = os.path.join(a, rel), os.path.join(b, rel)
    if stat.S_ISLNK(x.st_mode):
        la, lb = os.readlink(pa), os.readlink(pb)
        if la != lb:
            out.append(Difference("link target", rel, la, lb))
    xa, xb = _xattrs(pa), _xattrs(pb)
    if xa != xb:
        names = sorted(n for n in xa.keys() | xb.keys() if xa.get(n) != xb.get(n))
        out.append(Difference("xattrs", rel, ", ".join(n for n in names if n in xa),
                              ", ".join(n for n in names if n in xb)))  # fmt: skip
    if mtimes.differ(x, y):
        out.append(Difference("mtime", rel, iso_time(x.st_mtime_ns), iso_time(y.st_mtime_ns)))
    return out


def content_detail(
    a: Path,
    b: Path,
    limit_lines: int = DIFF_LINES,
    *,
    deep: Callable[[Path, Path], str] | None = None,
) -> str:
    """Two archives' member differences (tar, gzip, zip, ar: `archive_diff.py`), else a unified
    diff of two small text files, else a hex summary of where two binaries differ. For archives
    and binaries, `deep(a, b)` (diffoscope's report) follows when given and not empty."""
    summary = archive_detail(a, b)
    if summary is None:
        text = _text_diff(a, b, limit_lines)
        if text is not None:
            return text
        summary = hex_summary(a, b)
    more = deep(a, b) if deep is not None else ""
    return f"{summary}\n{more}" if more else summary


def _text_diff(a: Path, b: Path, limit_lines: int) -> str | None:
    """A unified diff of two files of at most TEXT_DIFF_LIMIT bytes that decode as UTF-8 and
    hold no NUL, else None."""
    try:
        da, db = a.read_bytes()[: TEXT_DIFF_LIMIT + 1], b.read_bytes()[: TEXT_DIFF_LIMIT + 1]
    except OSError as e:
        return f"(can't read: {e.strerror})"
    if len(da) > TEXT_DIFF_LIMIT or len(db) > TEXT_DIFF_LIMIT or b"\0" in da or b"\0" in db:
        return None
    try:
        ta, tb = da.decode(), db.decode()
    except UnicodeDecodeError:
        return None
    lines = list(difflib.unified_diff(ta.splitlines(), tb.splitlines(), "A", "B", lineterm=""))
    more = len(lines) - limit_lines
    return "\n".join(lines[:limit_lines] + ([f"... ({more} more lines)"] if more > 0 else []))


def hex_summary(a: Path, b: Path) -> str:
    """Sizes, the first differing offset and HEX_BYTES bytes of each file from there."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        offset = 0
        while True:
            ca, cb = fa.read(1 << 16), fb.read(1 << 16)
            if ca != cb:
                pairs = enumerate(zip(ca, cb, strict=False))
                i = next((k for k, (p, q) in pairs if p != q), min(len(ca), len(cb)))
                offset += i
                start = i - i % HEX_BYTES
                ha, hb = ca[start : start + HEX_BYTES], cb[start : start + HEX_BYTES]
                base = offset - (i - start)
                return (f"binary; sizes {a.stat().st_size} / {b.stat().st_size}; first difference "
                        f"at byte {offset}\n  A {base:08x}: {ha.hex(' ')}\n"
                        f"  B {base:08x}: {hb.hex(' ')}")  # fmt: skip
            if not ca:
                return "binary; identical bytes"
            offset += len(ca)
