"""File locks (flock) shared by processes using one store: the index, step locks, stores.

An flock belongs to an open file, so it excludes other threads of this process as well as
other processes, and the kernel drops it when its holder dies: a lock can never be left held
by a crashed process. State lives in files only, never in memory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC


def open_lock(path: Path) -> int:
    """Open (creating, mode 0600) the lock file `path`; the caller closes the fd."""
    return os.open(path, _FLAGS, 0o600)


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[int]:
    """Hold an flock on `path` (created if missing, with its directory) while in the block;
    yields the open fd. Closing the fd releases the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def try_lock(fd: int, *, shared: bool = False) -> bool:
    """Take an flock on the open file `fd` if no one else holds one that conflicts."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def is_held(path: Path) -> bool:
    """True if some open file holds an flock on `path` (False if it does not exist)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return not try_lock(fd)
    finally:
        os.close(fd)  # releases the probe's own lock, if it got one
