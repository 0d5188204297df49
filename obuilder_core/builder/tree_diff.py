"""Comparing two root filesystems, as the determinism checker needs: what differs and how.

`compare_trees(a, b)` walks both trees once (readdir, lstat, listxattr), and reads file contents
only when it must: files whose sizes differ are different without reading; two files with the
same inode, size, mtime and ctime in two clones of one snapshot were not written since the clone
(ctime cannot be set from user space), so they are equal without reading; otherwise digests
(xxh3) of tree `a` come from the `StatCache` when the stat data match a recorded digest, and
are read once else. The paths are split between this process and a forked helper
(`forked.Forked`): each walks, compares and reads its half, and only the findings cross."""

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
    """What is compared of one path: its lstat result, xattrs and symlink target (the stat
    result itself, not its fields copied: building 10,000 entries costs half as much)."""

    st: os.stat_result
    xattrs: tuple[tuple[str, bytes], ...]
    target: str
    """A symlink's target ('' for other types)."""


def _type(e: Entry) -> str:
    mode = e.st.st_mode
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
    sx, sy = x.st, y.st
    return (sx.st_mode == sy.st_mode and sx.st_uid == sy.st_uid and sx.st_gid == sy.st_gid
            and x.target == y.target and x.xattrs == y.xattrs)  # fmt: skip


def _untouched(sx: os.stat_result, sy: os.stat_result) -> bool:
    return (sx.st_ino, sx.st_size, sx.st_mtime_ns, sx.st_ctime_ns) == (
        sy.st_ino, sy.st_size, sy.st_mtime_ns, sy.st_ctime_ns)  # fmt: skip


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
    `stat_cache`. `b` is a scratch tree (the rebuild, deleted after), always read. The paths
    are shared between this process and a forked helper, each comparing its share end to end
    (`_compare_share`), so the comparison uses two CPUs; only findings, the files to read
    and their digests cross between the two.
    """
    mtimes = _MtimeRule(check_mtimes, None if mtime_clamp is None else mtime_clamp * 10**9)
    job = _Job(os.fspath(a), os.fspath(b), mtimes)
    with Forked() as helper:
        theirs = helper.start(_compare_share, job, 1)
        shares = [_compare_share(job, 0), theirs()]
        files = [f for share in shares for f in share.to_read]
        # Tree b is always read: the helper reads its half while this process looks tree a
        # up in the stat cache (sqlite must not be used across a fork: only this process does).
        theirs_b = helper.start(_digests, job.b, _by_b_inode(shares[1].to_read))
        known = _known(stat_cache, files)
        digests_b = dict(_digests(job.b, _by_b_inode(shares[0].to_read))) | dict(theirs_b())
        misses = sorted((f for f in files if (f[1], f[2]) not in known), key=lambda f: f[2])
        theirs_a = helper.start(_digests, job.a, misses[1::2])
        digests_a = dict(_digests(job.a, misses[0::2])) | dict(theirs_a())
    diffs = [d for share in shares for d in share.diffs] + _hard_link_diffs(shares)
    for path, dev, ino, *_ in files:
        da, db = known.get((dev, ino)) or digests_a[path], digests_b[path]
        if da != db:
            diffs.append(Difference("content", path, da[:16], db[:16]))
    if stat_cache is not None:
        # Recorded under the walk's lstat, taken before the read: a write after it changes
        # the ctime, so a digest of newer content is never found for the file's new state.
        read = [(_Stamp._make(f[1:6]), digests_a[f[0]]) for f in misses]
        stat_cache.put_many(read, DEFAULT_ALGORITHM)
        stat_cache.flush()
    diffs.sort(key=lambda d: (KINDS.index(d.kind), d.path))
    return TreeDiff(a, b, tuple(diffs))


_SHARES = 2
"""Processes sharing a comparison: this one and one forked helper."""


@dataclass(frozen=True)
class _Job:
    """One comparison, as each process sharing it needs it (it is sent to the helper)."""

    a: str
    b: str
    mtimes: _MtimeRule


class _Stamp(NamedTuple):
    """A file's identity and times, as the stat cache keys a digest."""

    st_dev: int
    st_ino: int
    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int


_ToRead = tuple[str, int, int, int, int, int, int]
"""A file whose contents must be compared: its path; its st_dev, st_ino, st_size, st_mtime_ns
and st_ctime_ns in tree a (a `_Stamp`: the stat cache may know its digest); its st_ino in tree
b (reads go in inode order). Plain tuples: they cross to the helper and back, and 2,500
pickle ten times faster than NamedTuples."""


@dataclass
class _Share:
    """What one process found in its share of the paths."""

    diffs: list[Difference] = field(default_factory=list)
    linked: tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]] = field(
        default_factory=lambda: ([], [])
    )
    """For tree a, then b: (path, st_dev, st_ino) of each non-directory with several links."""
    common_linked: list[str] = field(default_factory=list)
    """Paths of one type in both trees with several links in either: their links compare."""
    to_read: list[_ToRead] = field(default_factory=list)
    """The files of the share whose contents must be compared (by `compare_trees`)."""


def _compare_share(job: _Job, share: int) -> _Share:
    """Compare the paths of share `share`: those whose `hash() % _SHARES` is `share` (the
    helper is a fork, so it hashes strings as this process does), the roots ('.') in share 0.
    Every process lists every directory (cheap: names and types come from readdir); each
    lstats and compares only its own paths, so any tree shape splits evenly."""
    found = _Share()
    if share == 0:
        _compare_pair(".", _root_entry(job.a), _root_entry(job.b), job.mtimes, found)
    stack = [("", True, True)]  # directories to list: path, a directory in a, in b
    while stack:
        rel, in_a, in_b = stack.pop()
        list_a = _listing(job.a, rel) if in_a else {}
        list_b = _listing(job.b, rel) if in_b else {}
        for name in list_a.keys() | list_b.keys():
            child = f"{rel}/{name}" if rel else name
            ea, eb = list_a.get(name), list_b.get(name)
            dir_a = ea is not None and ea.is_dir(follow_symlinks=False)
            dir_b = eb is not None and eb.is_dir(follow_symlinks=False)
            if dir_a or dir_b:
                stack.append((child, dir_a, dir_b))
            if hash(child) % _SHARES != share:
                continue
            x = None if ea is None else _entry(ea)
            y = None if eb is None else _entry(eb)
            _compare_pair(child, x, y, job.mtimes, found)
    return found


def _listing(root: str, rel: str) -> dict[str, os.DirEntry[str]]:
    path = f"{root}/{rel}" if rel else root
    try:
        with os.scandir(path) as it:
            return {e.name: e for e in it}
    except OSError as err:
        raise CompareError(f"Can't read {err.filename or path}: {err.strerror}") from None


def _root_entry(root: str) -> Entry:
    try:
        return _make_entry(root, os.lstat(root))
    except OSError as err:
        raise CompareError(f"Can't read {root}: {err.strerror}") from None


def _entry(e: os.DirEntry[str]) -> Entry:
    try:
        return _make_entry(e.path, e.stat(follow_symlinks=False))
    except OSError as err:
        raise CompareError(f"Can't read {e.path}: {err.strerror}") from None


def _make_entry(path: str, st: os.stat_result) -> Entry:
    return Entry(st, _xattrs(path), os.readlink(path) if stat.S_ISLNK(st.st_mode) else "")


def _compare_pair(
    rel: str,
    x: Entry | None,
    y: Entry | None,
    mtimes: _MtimeRule,
    found: _Share,
) -> None:
    """Record what differs at `rel` without reading contents (x in tree a, y in b, None where
    absent), and add it to `found.to_read` if its contents must be read: same size, but not
    the same inode untouched since a clone (ctime cannot be set from user space)."""
    for side, e in enumerate((x, y)):
        if e is not None and e.st.st_nlink > 1 and not stat.S_ISDIR(e.st.st_mode):
            found.linked[side].append((rel, e.st.st_dev, e.st.st_ino))
    if x is None or y is None:
        found.diffs.append(Difference("only in B" if x is None else "only in A", rel))
        return
    diffs, sx, sy = found.diffs, x.st, y.st
    # The tests go cheapest first: most paths of two builds of one step differ in nothing.
    if stat.S_IFMT(sx.st_mode) != stat.S_IFMT(sy.st_mode):
        diffs.append(Difference("type", rel, _type(x), _type(y)))
        return
    if mtimes.check or not _same_meta(x, y):
        diffs += _meta(rel, x, y, mtimes)
    if sx.st_rdev != sy.st_rdev and (stat.S_ISCHR(sx.st_mode) or stat.S_ISBLK(sx.st_mode)):
        diffs.append(Difference("device", rel, _device(x), _device(y)))
    if sx.st_nlink > 1 or sy.st_nlink > 1:
        found.common_linked.append(rel)
    if stat.S_ISREG(sx.st_mode):
        if sx.st_size != sy.st_size:
            diffs.append(Difference("content", rel, f"{sx.st_size} bytes", f"{sy.st_size} bytes"))
        elif not _untouched(sx, sy):
            stamp = (sx.st_dev, sx.st_ino, sx.st_size, sx.st_mtime_ns, sx.st_ctime_ns)
            found.to_read.append((rel, *stamp, sy.st_ino))


def _known(cache: StatCache | None, files: list[_ToRead]) -> dict[tuple[int, int], str]:
    """The digests of tree a's `files` that `cache` holds, by (st_dev, st_ino)."""
    if cache is None:
        return {}
    return cache.get_many([_Stamp._make(f[1:6]) for f in files], DEFAULT_ALGORITHM)


def _by_b_inode(files: list[_ToRead]) -> list[_ToRead]:
    """In tree b's inode order: files in random inode order read ~25% slower."""
    return sorted(files, key=lambda f: f[6])


def _digests(root: str, files: list[_ToRead]) -> list[tuple[str, str]]:
    """(path, digest) of each of `files` below `root`, read in the order given."""
    return [(f[0], _read(f"{root}/{f[0]}", f[3])) for f in files]


def _hard_link_diffs(shares: list[_Share]) -> list[Difference]:
    """The paths whose other names (hard links) differ between the trees: `ln` and `cp`
    give equal contents but not the same tree. Links may join paths of different shares."""
    others_a, others_b = (
        _other_names([row for share in shares for row in share.linked[side]]) for side in (0, 1)
    )
    diffs = []
    for rel in (rel for share in shares for rel in share.common_linked):
        xs, ys = others_a.get(rel, ()), others_b.get(rel, ())
        if xs != ys:
            diffs.append(Difference("hard links", rel, _names(xs), _names(ys)))
    return diffs


def _other_names(linked: list[tuple[str, int, int]]) -> dict[str, tuple[str, ...]]:
    """For each (path, dev, inode): the other paths of the same inode, sorted."""
    by_inode: dict[tuple[int, int], list[str]] = {}
    for rel, dev, ino in linked:
        by_inode.setdefault((dev, ino), []).append(rel)
    return {
        rel: tuple(sorted(p for p in paths if p != rel))
        for paths in by_inode.values()
        for rel in paths
    }


def _names(paths: tuple[str, ...]) -> str:
    return ", ".join(f"/{p}" for p in paths) or "(none)"


def _device(e: Entry) -> str:
    return f"{os.major(e.st.st_rdev)}:{os.minor(e.st.st_rdev)}"


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
        if not self.check or stat.S_ISLNK(x.st.st_mode):
            return False
        if self.clamp_ns is None:
            return x.st.st_mtime_ns != y.st.st_mtime_ns
        return min(x.st.st_mtime_ns, self.clamp_ns) != min(y.st.st_mtime_ns, self.clamp_ns)


def _meta(rel: str, x: Entry, y: Entry, mtimes: _MtimeRule) -> list[Difference]:
    out, sx, sy = [], x.st, y.st
    if stat.S_IMODE(sx.st_mode) != stat.S_IMODE(sy.st_mode):
        out.append(Difference("mode", rel, f"{stat.S_IMODE(sx.st_mode):04o}",
                              f"{stat.S_IMODE(sy.st_mode):04o}"))  # fmt: skip
    if (sx.st_uid, sx.st_gid) != (sy.st_uid, sy.st_gid):
        out.append(Difference("owner", rel, f"{sx.st_uid}:{sx.st_gid}", f"{sy.st_uid}:{sy.st_gid}"))
    if x.target != y.target:
        out.append(Difference("link target", rel, x.target, y.target))
    if x.xattrs != y.xattrs:
        xa, xb = dict(x.xattrs), dict(y.xattrs)
        names = sorted(n for n in xa.keys() | xb.keys() if xa.get(n) != xb.get(n))
        out.append(Difference("xattrs", rel, ", ".join(n for n in names if n in xa),
                              ", ".join(n for n in names if n in xb)))  # fmt: skip
    if mtimes.differ(x, y):
        out.append(Difference("mtime", rel, iso_time(x.st.st_mtime_ns), iso_time(y.st.st_mtime_ns)))
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
