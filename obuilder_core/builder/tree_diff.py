"""Comparing two root filesystems, as the determinism checker needs: what differs and how.

`compare_trees(a, b)` walks both trees once (lstat, listxattr), and reads file contents only
when it must: files whose sizes differ are different without reading; two files with the same
inode, size, mtime and ctime in two clones of one snapshot were not written since the clone
(ctime cannot be set from user space), so they are equal without reading; otherwise digests
(xxh3) of tree `a` come from the `StatCache` when the stat data match a recorded digest, and
are read once else. A forked helper process (`forked.Forked`) does half the walking and reading."""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from obuilder_core.builder.archive_diff import archive_detail
from obuilder_core.builder.forked import Forked
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


class Entry(NamedTuple):
    """What is compared of one path: its lstat fields, xattrs and symlink target."""

    st_mode: int
    st_ino: int
    st_dev: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_rdev: int
    xattrs: tuple[tuple[str, bytes], ...]
    target: str
    """A symlink's target ('' for other types)."""


Tree = dict[str, Entry]
"""Every path below a root, relative to it ('.' for the root), with its Entry."""


def _scan(root: str) -> list[tuple[str, tuple[object, ...]]]:
    """(path, Entry fields) for every path of the tree at `root`; plain tuples, not Entry,
    because they pickle three times faster (the helper process sends one tree back)."""
    path = root
    try:
        rows: list[tuple[str, tuple[object, ...]]] = [(".", _fields(root, os.lstat(root)))]
        stack = [""]
        while stack:
            rel = stack.pop()
            path = os.path.join(root, rel) if rel else root
            with os.scandir(path) as it:
                for e in it:
                    child = f"{rel}/{e.name}" if rel else e.name
                    st = e.stat(follow_symlinks=False)
                    rows.append((child, _fields(e.path, st)))
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(child)
    except OSError as err:
        raise CompareError(f"Can't read {err.filename or path}: {err.strerror}") from None
    return rows


def _fields(path: str, st: os.stat_result) -> tuple[object, ...]:
    target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
    return (st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
            st.st_mtime_ns, st.st_ctime_ns, st.st_rdev, _xattrs(path), target)  # fmt: skip


def _tree(rows: list[tuple[str, tuple[object, ...]]]) -> Tree:
    make = Entry._make
    return {rel: make(fields) for rel, fields in rows}


def _type(e: Entry) -> str:
    mode = e.st_mode
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISLNK, "symlink"), (stat.S_ISCHR, "char device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket")):  # fmt: skip
        if test(mode):
            return name
    return "unknown"


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
        if not names:  # nearly always: the cheap way out
            return ()
        return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))
    except OSError:
        return ()  # e.g. a filesystem without xattr support: nothing to compare


def _digests(files: list[tuple[str, int]]) -> list[str]:
    """The digest of each (path, size) file, read in the order given (module-level: the
    helper process runs it)."""
    return [_read(path, size) for path, size in files]


def _read(path: str, size: int) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise CompareError(f"Can't read {path}: {e.strerror}") from None
    try:
        return hash_file(fd, DEFAULT_ALGORITHM, size)
    except OSError as e:
        raise CompareError(f"Can't read {path}: {e.strerror}") from None
    finally:
        os.close(fd)


def _same_meta(x: Entry, y: Entry) -> bool:
    """Whether `_meta` would find nothing, mtimes aside."""
    return (x.st_mode == y.st_mode and x.st_uid == y.st_uid and x.st_gid == y.st_gid
            and x.target == y.target and x.xattrs == y.xattrs)  # fmt: skip


def _untouched(x: Entry, y: Entry) -> bool:
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

    `a` is the tree that stays (verify's original step): its digests come from and go to
    `stat_cache`. `b` is a scratch tree (the rebuild, deleted after), always read. A forked
    helper scans and reads about half of the work, so the comparison uses two CPUs.
    """
    with Forked() as helper:
        scan_a = helper.start(_scan, os.fspath(a))
        tb = _tree(_scan(os.fspath(b)))
        ta = _tree(scan_a())
        mtimes = _MtimeRule(check_mtimes, None if mtime_clamp is None else mtime_clamp * 10**9)
        diffs, to_hash = _compare_entries(ta, tb, mtimes)
        known = _cached(stat_cache, [x for _, x, _ in to_hash])
        reads_a = _by_inode(
            [(rel, x) for rel, x, _ in to_hash if (x.st_dev, x.st_ino) not in known]
        )
        reads_b = _by_inode([(rel, y) for rel, _, y in to_hash])
        digests = _read_on_two_cpus(
            helper,
            [(f"{a}/{rel}", x.st_size) for rel, x in reads_a]
            + [(f"{b}/{rel}", y.st_size) for rel, y in reads_b],
        )
    if stat_cache is not None:
        # Recorded under the scan's lstat, taken before the read: a write after it changes
        # the ctime, so a digest of newer content is never found for the file's new state.
        stat_cache.put_many(zip((x for _, x in reads_a), digests, strict=False), DEFAULT_ALGORITHM)
        stat_cache.flush()
    read_a = dict(zip((rel for rel, _ in reads_a), digests, strict=False))
    read_b = dict(zip((rel for rel, _ in reads_b), digests[len(reads_a) :], strict=True))
    for rel, x, _ in to_hash:
        da, db = known.get((x.st_dev, x.st_ino)) or read_a[rel], read_b[rel]
        if da != db:
            diffs.append(Difference("content", rel, da[:16], db[:16]))
    diffs.sort(key=lambda d: (KINDS.index(d.kind), d.path))
    return TreeDiff(a, b, tuple(diffs))


def _compare_entries(
    ta: Tree, tb: Tree, mtimes: _MtimeRule
) -> tuple[list[Difference], list[tuple[str, Entry, Entry]]]:
    """The differences found without reading contents, and the files whose contents must be
    compared: same size, but not the same inode untouched since a clone (ctime cannot be set
    from user space)."""
    diffs = [Difference("only in A", p) for p in ta.keys() - tb.keys()]
    diffs += [Difference("only in B", p) for p in tb.keys() - ta.keys()]
    to_hash: list[tuple[str, Entry, Entry]] = []
    links_a, links_b = _hard_links(ta), _hard_links(tb)
    # The tests go cheapest first: most paths of two builds of one step differ in nothing.
    for rel in ta.keys() & tb.keys():
        x, y = ta[rel], tb[rel]
        if stat.S_IFMT(x.st_mode) != stat.S_IFMT(y.st_mode):
            diffs.append(Difference("type", rel, _type(x), _type(y)))
            continue
        if mtimes.check or not _same_meta(x, y):
            diffs += _meta(rel, x, y, mtimes)
        if x.st_rdev != y.st_rdev and (stat.S_ISCHR(x.st_mode) or stat.S_ISBLK(x.st_mode)):
            diffs.append(Difference("device", rel, _device(x), _device(y)))
        if x.st_nlink > 1 or y.st_nlink > 1:
            others_a, others_b = links_a.get(rel, ()), links_b.get(rel, ())
            if others_a != others_b:
                diffs.append(Difference("hard links", rel, _names(others_a), _names(others_b)))
        if stat.S_ISREG(x.st_mode):
            if x.st_size != y.st_size:
                diffs.append(Difference("content", rel, f"{x.st_size} bytes", f"{y.st_size} bytes"))
            elif not _untouched(x, y):
                to_hash.append((rel, x, y))
    return diffs, to_hash


def _cached(cache: StatCache | None, entries: list[Entry]) -> dict[tuple[int, int], str]:
    return cache.get_many(entries, DEFAULT_ALGORITHM) if cache is not None else {}


def _by_inode(reads: list[tuple[str, Entry]]) -> list[tuple[str, Entry]]:
    """In inode order: files in random inode order read ~25% slower."""
    return sorted(reads, key=lambda r: r[1].st_ino)


def _read_on_two_cpus(helper: Forked, files: list[tuple[str, int]]) -> list[str]:
    """The digests of the (path, size) files: the helper reads the first half of the bytes,
    this process the rest."""
    half, cut = sum(size for _, size in files) / 2, 0
    while cut < len(files) and half > 0:
        half -= files[cut][1]
        cut += 1
    theirs = helper.start(_digests, files[:cut])
    mine = _digests(files[cut:])
    return theirs() + mine


def _hard_links(tree: Tree) -> dict[str, tuple[str, ...]]:
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


def _device(st: Entry) -> str:
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

    def differ(self, x: Entry, y: Entry) -> bool:
        if not self.check or stat.S_ISLNK(x.st_mode):
            return False
        if self.clamp_ns is None:
            return x.st_mtime_ns != y.st_mtime_ns
        return min(x.st_mtime_ns, self.clamp_ns) != min(y.st_mtime_ns, self.clamp_ns)


def _meta(rel: str, x: Entry, y: Entry, mtimes: _MtimeRule) -> list[Difference]:
    out = []
    if stat.S_IMODE(x.st_mode) != stat.S_IMODE(y.st_mode):
        out.append(Difference("mode", rel, f"{stat.S_IMODE(x.st_mode):04o}",
                              f"{stat.S_IMODE(y.st_mode):04o}"))  # fmt: skip
    if (x.st_uid, x.st_gid) != (y.st_uid, y.st_gid):
        out.append(Difference("owner", rel, f"{x.st_uid}:{x.st_gid}", f"{y.st_uid}:{y.st_gid}"))
    if x.target != y.target:
        out.append(Difference("link target", rel, x.target, y.target))
    if x.xattrs != y.xattrs:
        xa, xb = dict(x.xattrs), dict(y.xattrs)
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
