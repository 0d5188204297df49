"""What a copy step writes: the tar stream for `tar -xf -` running inside the sandbox, or the
same members written by the host (`CopySink`; copy_host.py).

Layout follows OBuilder's `Tar_transfer` (reference §2.7), GNU format (long names and link
targets through GNU LongLink records, large ids in base-256), with these differences:

- directories are real directory entries (typeflag '5'), which busybox tar requires;
- no headers for ancestors of the destination that exist (reference §7.19): existing parent
  directories keep their owner, mode and mtime. The caller passes the missing ones
  (`missing_dirs`) and they are created owned by the copying user, mode 0755, mtime 0;
- the source tree is re-read through directory file descriptors without following symlinks,
  and each file's content is re-hashed while it is sent: a source that changed since its
  manifest was taken fails the copy (ManifestError) instead of sending unkeyed content.

An edit (`previous`: the listing a copy of the same sources wrote, on whose result the copy is
made) skips the files and symlinks whose listing record is unchanged; directory entries are
always sent, so that their modes and owners are what a full copy gives.

Every entry is owned by the context user (uid/gid; a NamedUser is sent as uname/gname with ids 0
and the extracting tar maps the name). Files carry the manifest's mode (0755 if any exec bit,
else 0644), directories 0755, symlinks 0777; mtimes are the source's (whole seconds).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from obuilder_core.errors import ObuilderError
from obuilder_core.manifest import (
    ALGORITHMS,
    Dir,
    Entry,
    File,
    Manifest,
    ManifestError,
    Symlink,
    quote,
    whole_seconds,
)
from obuilder_core.paths import CopyShape
from obuilder_core.spec.model import NamedUser, UnixUser, User

DIR_MODE = 0o755
LINK_MODE = 0o777
_BLOCK = 512
_RECORD = 20 * _BLOCK
_CHUNK = 1 << 20
_FLUSH_AT = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


Record = tuple[str, str, int, int, int]
"""What a copy wrote at one tar member: (kind "f"/"l"/"d", digest or link target, size, mode,
mtime in whole seconds)."""
Listing = dict[str, Record]
"""What a copy wrote, by tar member (a path below the container's `/`, without a leading /)."""


class CopyStreamError(ObuilderError):
    """The receiving side of a copy's tar stream went away before the stream ended."""


def missing_dirs(rootfs: Path, dst: str, shape: CopyShape) -> list[str]:
    """The directories a copy to `dst` needs that do not exist yet in `rootfs`, outermost first.

    For MULTI that is `dst` and its missing ancestors; for SINGLE the missing ancestors of
    `dst`. The walk stops (returning []) at a component that is not a real directory, e.g. a
    symlink: it is then left to the tar inside the sandbox, which resolves it within the
    container, never on the host.
    """
    parts = [p for p in dst.split("/") if p]
    if shape is CopyShape.SINGLE:
        parts = parts[:-1]
    path = Path(rootfs)
    for i, part in enumerate(parts):
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return ["/" + "/".join(parts[: j + 1]) for j in range(i, len(parts))]
        if not stat.S_ISDIR(st.st_mode):
            return []
    return []


class CopySink(Protocol):
    """Where the members of a copy go, in stream order: a tar stream (`_Writer`), or the
    rootfs itself (`copy_host.HostSink`). Directories have mode DIR_MODE, symlinks LINK_MODE;
    every member is owned by the copy's user."""

    def directory(self, member: str, mtime: int) -> None: ...

    def symlink(self, member: str, target: str, mtime: int) -> None: ...

    def begin_file(self, member: str, mode: int, mtime: int, size: int) -> None:
        """A regular file of `size` bytes, whose data follows (`data`, then `end_file`)."""

    def data(self, chunk: bytes) -> None: ...

    def end_file(self) -> None:
        """The file's data is complete, and checked against its manifest digest."""

    def finish(self) -> None:
        """Every member was sent."""


def write_copy_tar(
    out: BinaryIO,
    src_dir: Path,
    items: Sequence[Manifest],
    dst: str,
    shape: CopyShape,
    user: User,
    *,
    create_dirs: Sequence[str] = (),
    previous: Listing | None = None,
) -> Listing:
    """Write the tar stream of a copy of `items` (manifests of `src_dir`) to `dst` into `out`;
    return its listing (`send_copy`). Raises ManifestError if the source changed since the
    manifests were taken and CopyStreamError if `out` is closed by the reader. After an
    exception the stream is cut short: the caller must fail the step even if the extracting
    tar exits 0.
    """
    try:
        return send_copy(
            _Writer(out, _owner(user)),
            src_dir,
            items,
            dst,
            shape,
            create_dirs=create_dirs,
            previous=previous,
        )
    except BrokenPipeError:
        raise CopyStreamError("The copy's tar stream was closed by the receiving tar") from None


def send_copy(
    sink: CopySink,
    src_dir: Path,
    items: Sequence[Manifest],
    dst: str,
    shape: CopyShape,
    *,
    create_dirs: Sequence[str] = (),
    previous: Listing | None = None,
) -> Listing:
    """Send the members of a copy of `items` (manifests of `src_dir`) to `dst` into `sink`;
    return its listing (what the result holds at each member the copy wrote).

    `dst` is the normalised absolute destination (keys.copy_destination). SINGLE writes the one
    item as `dst` (a directory renamed to dst, with its contents); MULTI writes each item into
    `dst/` under its basename, except the whole source dir (`(src .)`) whose contents go
    straight into `dst/`. `create_dirs` (from `missing_dirs`) are sent first, mtime 0.
    With `previous`, files and symlinks whose record is the same there are not sent.
    Raises ManifestError if the source changed since the manifests were taken.
    """
    if shape is CopyShape.SINGLE and (len(items) != 1 or not dst.strip("/")):
        raise ValueError("a SINGLE copy has exactly one item and a destination below /")
    listing: Listing = {}
    for d in create_dirs:
        sink.directory(d.strip("/"), 0)
        listing[d.strip("/")] = ("d", "", 0, DIR_MODE, 0)
    base = dst.strip("/")
    with _open_dir(src_dir, "") as root_fd:
        for m in items:
            sender = _Sender(sink, m.algorithm, listing, previous or {})
            _send_item(sender, root_fd, m, base, shape)
    sink.finish()
    return listing


def member_kinds(items: Sequence[Manifest], dst: str, shape: CopyShape) -> dict[str, str]:
    """The tar members a copy of `items` to `dst` writes (not counting `create_dirs`), with
    their kinds as in a Listing: the names `write_copy_tar` gives, from the manifests alone."""
    kinds: dict[str, str] = {}

    def add(entry: Entry, member: str, own: bool) -> None:
        if own and member:
            kinds[member] = (
                "f" if isinstance(entry, File) else "l" if isinstance(entry, Symlink) else "d"
            )
        if isinstance(entry, Dir):
            for child in entry.entries:
                add(child, _join(member, child.path.rpartition("/")[2]), True)

    base = dst.strip("/")
    for m in items:
        add(m.root, *_placement(m, base, shape))
    return kinds


def _placement(m: Manifest, base: str, shape: CopyShape) -> tuple[str, bool]:
    """Where item `m` of a copy to `base` goes: its tar member, and whether the item's own
    entry is written there. Not for `(src .)` into a directory: its contents go into dst
    itself, whose entry (if any) is in create_dirs."""
    if shape is CopyShape.SINGLE:
        return base, True
    if m.root.path == "" and isinstance(m.root, Dir):
        return base, False
    return _join(base, m.root.path.rpartition("/")[2]), True


def _send_item(sender: _Sender, root_fd: int, m: Manifest, base: str, shape: CopyShape) -> None:
    entry = m.root
    parent_rel, _, name = entry.path.rpartition("/")
    member, own = _placement(m, base, shape)
    with _open_parents(root_fd, parent_rel) as parent_fd:
        if own:
            sender.send(parent_fd, name, entry, member)
        else:
            assert isinstance(entry, Dir)
            sender.children(parent_fd, entry, member)


@dataclass(frozen=True)
class _Owner:
    uid: int
    gid: int
    uname: str
    gname: str


def _owner(user: User) -> _Owner:
    if isinstance(user, UnixUser):
        return _Owner(user.uid, user.gid, "", "")
    if isinstance(user, NamedUser):
        return _Owner(0, 0, user.name, user.name)
    raise TypeError(f"not a user: {user!r}")


class _Writer:
    """Buffers headers and data into large writes; pads members and ends the archive."""

    def __init__(self, out: BinaryIO, owner: _Owner) -> None:
        self.out = out
        self.owner = owner
        self.buf = bytearray()
        self.total = 0

    def header(
        self, name: str, kind: bytes, mode: int, mtime: int, size: int = 0, linkname: str = ""
    ) -> None:
        o = self.owner
        fast = gnu_header(name, kind, mode, mtime, size, linkname, o.uid, o.gid, o.uname, o.gname)
        if fast is not None:
            self.write(fast)
            return
        # Long names or link targets, huge ids: tarfile knows the GNU extensions.
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime, info.size, info.linkname = (
            kind,
            mode,
            mtime,
            size,
            linkname,
        )
        info.uid, info.gid, info.uname, info.gname = o.uid, o.gid, o.uname, o.gname
        self.write(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))

    def directory(self, member: str, mtime: int) -> None:
        self.header(member, tarfile.DIRTYPE, DIR_MODE, mtime)

    def symlink(self, member: str, target: str, mtime: int) -> None:
        self.header(member, tarfile.SYMTYPE, LINK_MODE, mtime, linkname=target)

    def begin_file(self, member: str, mode: int, mtime: int, size: int) -> None:
        self.header(member, tarfile.REGTYPE, mode, mtime, size)

    def data(self, chunk: bytes) -> None:
        self.write(chunk)

    def end_file(self) -> None:
        self.write(bytes(-self.total % _BLOCK))

    def write(self, data: bytes) -> None:
        self.buf += data
        self.total += len(data)
        if len(self.buf) >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.out.write(self.buf)
            self.buf = bytearray()

    def finish(self) -> None:
        self.write(bytes(2 * _BLOCK))
        self.write(bytes(-self.total % _RECORD))
        self.flush()
        self.out.flush()


@dataclass(frozen=True)
class _Sender:
    """Sends manifest entries, re-reading the source relative to directory fds, and lists what
    it sent in `listing`; a file or symlink whose record is the same in `previous` is listed
    but not sent."""

    sink: CopySink
    algorithm: str
    listing: Listing
    previous: Listing

    def send(self, parent_fd: int, name: str, entry: Entry, member: str) -> None:
        if isinstance(entry, File):
            self._file(parent_fd, name, entry, member)
        elif isinstance(entry, Symlink):
            self._symlink(parent_fd, name, entry, member)
        else:
            with _open_dir(parent_fd, name or ".", entry.path) as fd:
                if member:
                    mtime = whole_seconds(os.fstat(fd))
                    self.sink.directory(member, mtime)
                    self.listing[member] = ("d", "", 0, DIR_MODE, mtime)
                self.children(fd, entry, member)

    def children(self, dir_fd: int, entry: Dir, member: str) -> None:
        for child in entry.entries:
            name = child.path.rpartition("/")[2]
            self.send(dir_fd, name, child, _join(member, name))

    def _symlink(self, parent_fd: int, name: str, entry: Symlink, member: str) -> None:
        try:
            target = os.readlink(name, dir_fd=parent_fd)
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError:
            raise _changed(entry.path) from None
        if target != entry.target:
            raise _changed(entry.path)
        record = ("l", target, 0, LINK_MODE, whole_seconds(st))
        self.listing[member] = record
        if self.previous.get(member) != record:
            self.sink.symlink(member, target, record[4])

    def _file(self, parent_fd: int, name: str, entry: File, member: str) -> None:
        if member in self.previous and self._unchanged(entry, member):
            return
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=parent_fd)
        except OSError:
            raise _changed(entry.path) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
                raise _changed(entry.path)
            mtime = whole_seconds(st)
            self.listing[member] = ("f", entry.digest, entry.size, entry.mode, mtime)
            self.sink.begin_file(member, entry.mode, mtime, entry.size)
            h = ALGORITHMS[self.algorithm]()
            left = entry.size
            while left > 0:
                chunk = _read(fd, min(left, _CHUNK), entry.path)
                if not chunk:
                    raise _changed(entry.path)
                h.update(chunk)
                self.sink.data(chunk)
                left -= len(chunk)
            if h.hexdigest() != entry.digest:
                raise _changed(entry.path)
            self.sink.end_file()
        finally:
            os.close(fd)

    def _unchanged(self, entry: File, member: str) -> bool:
        """Whether the result already holds this file as the source has it (same digest,
        size, mode and mtime as the previous copy wrote): then it is listed, not sent. All
        four are the manifest's, taken moments ago: should the file change since, the result
        still holds the content its key names."""
        record = ("f", entry.digest, entry.size, entry.mode, entry.mtime)
        if self.previous[member] != record:
            return False
        self.listing[member] = record
        return True


def _read(fd: int, n: int, path: str) -> bytes:
    try:
        return os.read(fd, n)
    except OSError as e:
        raise ManifestError(f"Can't read {quote(path)}: {e.strerror}") from None


def gnu_header(
    name: str,
    kind: bytes,
    mode: int,
    mtime: int,
    size: int,
    linkname: str,
    uid: int,
    gid: int,
    uname: str,
    gname: str,
) -> bytes | None:
    """The 512-byte GNU header tarfile would write, or None if it needs an extension record.

    Equal byte for byte to `TarInfo.tobuf(GNU_FORMAT, "utf-8", "surrogateescape")` (tested),
    at a fraction of its cost: per-file headers dominate the stream of a tree of small files.
    """
    if kind == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"  # as tarfile does
    name_b, link_b = os.fsencode(name), os.fsencode(linkname)
    uname_b, gname_b = uname.encode(), gname.encode()
    if (
        len(name_b) > 100
        or len(link_b) > 100
        or len(uname_b) > 32
        or len(gname_b) > 32
        or max(uid, gid, mode) >= 8**7
        or max(size, mtime) >= 8**11
        or min(uid, gid, mode, size, mtime) < 0
    ):
        return None
    head = b"%s%07o\0%07o\0%07o\0%011o\0%011o\0" % (
        name_b.ljust(100, b"\0"),
        mode,
        uid,
        gid,
        size,
        mtime,
    )
    tail = b"%s%sustar  \0%s%s" % (
        kind,
        link_b.ljust(100, b"\0"),
        uname_b.ljust(32, b"\0"),
        gname_b.ljust(32, b"\0"),
    )
    tail += bytes(183)  # devmajor, devminor, prefix, padding
    chksum = sum(head) + sum(tail) + 8 * 32
    return head + b"%06o\0 " % chksum + tail


def _changed(path: str) -> ManifestError:
    return ManifestError(f"Source file {quote(path)} changed during the copy; try again")


def _join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


@contextlib.contextmanager
def _open_dir(parent: Path | int, name: str, rel: str = "") -> Iterator[int]:
    """Open a directory without following a symlink in its last component."""
    try:
        if isinstance(parent, int):
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        else:
            fd = os.open(parent, _DIR_FLAGS & ~os.O_NOFOLLOW)
    except OSError:
        raise _changed(rel or name or ".") from None
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _open_parents(root_fd: int, rel: str) -> Iterator[int]:
    """A fd of directory `rel` below root_fd, opened one component at a time, no symlinks."""
    fds: list[int] = []
    try:
        fd = root_fd
        done = ""
        for part in (p for p in rel.split("/") if p):
            done = _join(done, part)
            try:
                fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                raise _changed(done) from None
            fds.append(fd)
        yield fd
    finally:
        for fd in fds:
            os.close(fd)
