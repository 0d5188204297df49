"""A copy's members written into the rootfs by the host, resolved as inside the container.

What `tar -xf -` running as root in the container does with the copy's stream (copy_tar), without
starting a container or pushing the bytes through two pipes. As GNU tar does it:

- a member's parent directory is resolved inside the rootfs (openat2 RESOLVE_IN_ROOT, in_root.py):
  a symlink an earlier step planted (`/app -> /etc`) leads where it leads in the container, never
  to the host; an ancestor missing there (below such a symlink) is created, root's, mode 0755;
- a member replaces whatever non-directory is at its path, a symlink included (removed, never
  followed); a directory member keeps a directory that is there; a file or symlink member
  replaces an empty directory and fails on one that is not;
- owner, mode and mtime (atime the same) are the stream's; a directory's are set after
  everything in it was written, so its mtime is the source's too (busybox tar sets them before
  writing into it, leaving the time of the copy).

Only root can give files away, and only numeric users are known without the container's
`/etc/passwd`: `writes_on_host` says when this applies; otherwise the sandbox unpacks the stream.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeGuard

from obuilder_core.copy_tar import DIR_MODE
from obuilder_core.errors import ObuilderError
from obuilder_core.in_root import lstat_at, open_dir_in_root
from obuilder_core.log import ByteCounter
from obuilder_core.spec.model import UnixUser, User

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class CopyWriteError(ObuilderError):
    """A member of a copy could not be written into the rootfs (named in the message)."""


def writes_on_host(user: User) -> TypeGuard[UnixUser]:
    """Whether a copy owned by `user` is written by the host (`HostSink`): this process is root
    and the user numeric. (A kernel without openat2 makes `HostSink` raise OSError ENOSYS.)"""
    return isinstance(user, UnixUser) and os.geteuid() == 0


class HostSink:
    """A `copy_tar.CopySink` writing each member into `rootfs` (see the module docstring).
    `check` is called before each member and each chunk of a file's data (it raises to stop
    the copy: cancelled, timed out); `counter` counts the file data written. Use as a context
    manager: it closes its fds."""

    def __init__(
        self, rootfs: Path, user: UnixUser, check: Callable[[], None], counter: ByteCounter
    ) -> None:
        self._uid, self._gid = user.uid, user.gid
        self._check = check
        self._counter = counter
        root = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirs: dict[str, int] = {"": root}
        """Open directories by member path: the root, parents resolved in it, members made."""
        try:
            os.close(open_dir_in_root(root, ""))  # ENOSYS before Linux 5.6
        except OSError:
            os.close(root)
            raise
        self._made: list[tuple[int, str, int]] = []  # (fd, member, mtime): directories, set last
        self._file: tuple[int, str, int, int] | None = None  # fd, member, mode, mtime

    def __enter__(self) -> HostSink:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            os.close(self._file[0])
            self._file = None
        for fd in set(self._dirs.values()):
            os.close(fd)
        self._dirs.clear()

    def directory(self, member: str, mtime: int) -> None:
        self._check()
        parent, name = self._parent(member)
        try:
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                st = lstat_at(name, parent)
                if st is not None and not stat.S_ISDIR(st.st_mode):
                    os.unlink(name, dir_fd=parent)
                    os.mkdir(name, 0o700, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            raise self._error(member, e) from None
        self._dirs[member] = fd
        self._made.append((fd, member, mtime))

    def symlink(self, member: str, target: str, mtime: int) -> None:
        self._check()
        parent, name = self._parent(member)
        try:
            try:
                os.symlink(target, name, dir_fd=parent)
            except FileExistsError:
                _remove(name, parent)
                os.symlink(target, name, dir_fd=parent)
            os.chown(name, self._uid, self._gid, dir_fd=parent, follow_symlinks=False)
            ns = mtime * 1_000_000_000
            os.utime(name, ns=(ns, ns), dir_fd=parent, follow_symlinks=False)
        except OSError as e:
            raise self._error(member, e) from None

    def begin_file(self, member: str, mode: int, mtime: int, size: int) -> None:
        self._check()
        parent, name = self._parent(member)
        try:
            try:
                fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)
            except FileExistsError:
                _remove(name, parent)
                fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)
        except OSError as e:
            raise self._error(member, e) from None
        self._file = (fd, member, mode, mtime)

    def data(self, chunk: bytes) -> None:
        self._check()  # a large file is checked every chunk (1 MiB), not only before it
        assert self._file is not None
        fd, member = self._file[:2]
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as e:
            raise self._error(member, e) from None
        self._counter.add(len(chunk))

    def end_file(self) -> None:
        assert self._file is not None
        fd, member, mode, mtime = self._file
        self._file = None
        try:
            self._set_meta(fd, member, mode, mtime)
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Give each directory member its owner, mode and mtime, now that it is filled."""
        for fd, member, mtime in self._made:
            self._set_meta(fd, member, DIR_MODE, mtime)

    def _set_meta(self, fd: int, member: str, mode: int, mtime: int) -> None:
        """The stream's owner, `mode` and `mtime` (atime the same) for open member `fd`."""
        try:
            os.fchown(fd, self._uid, self._gid)
            os.fchmod(fd, mode)  # after chown, which clears setuid bits
            ns = mtime * 1_000_000_000
            os.utime(fd, ns=(ns, ns))
        except OSError as e:
            raise self._error(member, e) from None

    def _parent(self, member: str) -> tuple[int, str]:
        """(fd of the directory holding `member`, its last component)."""
        rel, _, name = member.rpartition("/")
        fd = self._dirs.get(rel)
        if fd is None:
            try:
                fd = self._open_ancestor(rel)
            except OSError as e:
                raise self._error(rel, e) from None
        return fd, name

    def _open_ancestor(self, rel: str) -> int:
        """Directory `rel` resolved inside the rootfs, made (with its missing ancestors) if
        missing: root's, mode 0755, as tar makes the directories a member needs."""
        try:
            fd = open_dir_in_root(self._dirs[""], rel)
        except FileNotFoundError:
            parent, name = self._parent(rel)
            try:
                os.mkdir(name, 0o755, dir_fd=parent)
                made = True
            except FileExistsError:
                made = False  # e.g. a dangling symlink: the open below says so
            fd = open_dir_in_root(self._dirs[""], rel)
            if made:
                os.fchmod(fd, 0o755)  # whatever this process's umask
        self._dirs[rel] = fd
        return fd

    @staticmethod
    def _error(member: str, e: OSError) -> OSError | CopyWriteError:
        """`e` itself for a full disk (the builder reports it as such), else a CopyWriteError."""
        if e.errno in _DISK_FULL:
            return e
        return CopyWriteError(f"Can't write /{member} in the rootfs: {e.strerror}")


def _remove(name: str, dir_fd: int) -> None:
    """Remove what stands where a file or symlink goes: a non-directory, or an empty directory
    (OSError ENOTEMPTY for one that is not, as tar)."""
    st = lstat_at(name, dir_fd)
    if st is not None and stat.S_ISDIR(st.st_mode):
        os.rmdir(name, dir_fd=dir_fd)
    elif st is not None:
        os.unlink(name, dir_fd=dir_fd)
