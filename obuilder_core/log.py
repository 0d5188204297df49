"""Step logs: the raw output of one step, written once, followed live, replayed from the store.

Three pieces, one per audience:

- `LogBuffer`: the in-process fan-out. The thread running a step appends chunks; any number of
  client threads `follow` it from the first byte, then live, until it is finished.
- `LogFile`: the on-disk log of a step in progress, so that *other processes* can follow it.
  Every run creates a fresh file (a new inode, renamed into place), and finishing it marks that
  inode read-only (mode 0444): a follower holding the file open can tell "finished" from "still
  being written" without any race against a newer run of the same step.
- `tail_file` follows such a file from another process; `replay` sends a saved log.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

Emit = Callable[[bytes], None]

CHUNK = 65536
POLL = 0.05  # seconds between looks at a file another process writes
_OPEN_MODE = 0o644
_FINISHED_MODE = 0o444


class LogCancelled(Exception):
    """Following a log stopped because the follower's cancel event was set."""


class LogBuffer:
    """An in-memory, append-only log shared by the threads of one process.

    Chunks are kept until the buffer is dropped, so a client attaching late still sees
    everything from the first byte.
    """

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._finished = False
        self._cond = threading.Condition()

    def write(self, data: bytes) -> None:
        """Append `data` and wake the followers."""
        if not data:
            return
        with self._cond:
            self._chunks.append(bytes(data))
            self._cond.notify_all()

    def finish(self) -> None:
        """Mark the log complete: followers return once they have sent everything."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake followers so they re-check their cancel event."""
        with self._cond:
            self._cond.notify_all()

    def contents(self) -> bytes:
        """Everything written so far."""
        with self._cond:
            return b"".join(self._chunks)

    def follow(self, emit: Emit, cancel: threading.Event | None = None) -> None:
        """Send every chunk to `emit` (from the first), then live ones, until finished.

        Raises LogCancelled as soon as `cancel` is set (checked at least every 0.1 s).
        `emit` runs without the buffer's lock held, so a slow client delays only itself.
        """
        sent = 0
        while True:
            with self._cond:
                while sent == len(self._chunks) and not self._finished:
                    if cancel is not None and cancel.is_set():
                        raise LogCancelled
                    self._cond.wait(0.1)
                new = self._chunks[sent:]
                done = self._finished
            for chunk in new:
                if cancel is not None and cancel.is_set():
                    raise LogCancelled
                emit(chunk)
            sent += len(new)
            if done and sent == len(self._chunks):
                return


class LogFile:
    """The on-disk log of a step being built, readable by other processes while it grows."""

    def __init__(self, path: Path) -> None:
        """Create a fresh, empty log at `path` (replacing any older one by rename)."""
        self.path = Path(path)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        self._fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _OPEN_MODE)
        os.fchmod(self._fd, _OPEN_MODE)  # umask must not make it look finished
        os.rename(tmp, self.path)
        self.inode = os.fstat(self._fd).st_ino

    def write(self, data: bytes) -> None:
        """Append `data` (all of it)."""
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def finish(self) -> None:
        """Mark this inode finished (followers stop once they have read it all) and close it."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            os.fchmod(self._fd, _FINISHED_MODE)
        os.close(self._fd)
        self._fd = -1


def is_finished(fd: int) -> bool:
    """Whether the log open as `fd` was finished by its writer."""
    return stat.S_IMODE(os.fstat(fd).st_mode) == _FINISHED_MODE


def tail_file(
    fd: int,
    emit: Emit,
    *,
    stop: Callable[[], bool],
    cancel: threading.Event | None = None,
) -> bool:
    """Send the log open as `fd` from its first byte, then what its writer adds.

    Returns True when the writer finished the log and everything was sent, False when `stop()`
    (e.g. "the writer's lock is free: it died") says to give up first; whatever was written
    before is sent in both cases. Raises LogCancelled when `cancel` is set.
    """
    offset = 0
    while True:
        finished = is_finished(fd)  # look first: data written before finishing is read below
        data = os.pread(fd, CHUNK, offset)
        if data:
            offset += len(data)
            emit(data)
            continue
        if finished:
            return True
        if cancel is not None and cancel.is_set():
            raise LogCancelled
        if stop():
            while data := os.pread(fd, CHUNK, offset):
                offset += len(data)
                emit(data)
            return is_finished(fd)
        time.sleep(POLL)


def replay(path: Path, emit: Emit) -> None:
    """Send a saved log (a committed step's `log`) to `emit`; a missing file sends nothing."""
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            emit(chunk)
