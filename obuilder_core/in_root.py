"""Looking at and removing paths of a container's rootfs from the host, resolved as inside it.

A rootfs holds whatever its steps wrote, symlinks to `/etc` included. `openat2` with
RESOLVE_IN_ROOT resolves a path as if the rootfs were `/` (`..` and absolute symlinks stay
inside it), as `tar` running in the container does; the last component is never followed. An
incremental copy uses it to remove what the previous copy wrote and this one does not.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

_SYS_OPENAT2 = 437  # the same number on every Linux architecture (the unified syscall table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def open_dir_in_root(root_fd: int, rel: str) -> int:
    """A fd of directory `rel` (relative, '' for the root), resolved inside root_fd."""
    how = _OpenHow(_DIR_FLAGS, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    path = os.fsencode(rel or ".")
    fd = _libc.syscall(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(root_fd),
        ctypes.c_char_p(path),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), rel)
    return int(fd)


@contextlib.contextmanager
def _parent(root: Path, member: str) -> Iterator[tuple[int, str]]:
    """(fd of the directory holding `member`, its last component), resolved inside `root`."""
    rel, _, name = member.strip("/").rpartition("/")
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        fd = open_dir_in_root(root_fd, rel)
    finally:
        os.close(root_fd)
    try:
        yield fd, name
    finally:
        os.close(fd)


def exists_in_root(root: Path, member: str) -> bool:
    """Whether `member` (a path below `root`'s `/`) exists, its last component not followed.
    OSError if it cannot be told (e.g. the kernel has no openat2: Linux < 5.6)."""
    try:
        with _parent(root, member) as (fd, name):
            os.stat(name, dir_fd=fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def remove_in_root(root: Path, member: str) -> None:
    """Remove `member` (a path below `root`'s `/`) and, for a directory, all it holds; a
    no-op if it is missing. Symlinks are removed, never followed."""
    try:
        with _parent(root, member) as (fd, name):
            remove_at(name, fd, lstat_at(name, fd))
    except (FileNotFoundError, NotADirectoryError):
        return


def lstat_at(name: str, dir_fd: int) -> os.stat_result | None:
    """The lstat of `name` in directory `dir_fd`, or None if there is none."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def remove_at(name: str, dir_fd: int, st: os.stat_result | None) -> None:
    """Remove `name` in directory `dir_fd` (whose lstat is `st`; None: nothing to remove),
    a directory with all it holds. fd-based: no symlink inside is followed."""
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)
