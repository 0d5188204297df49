"""Step logs: written once, followed live by any number of clients, replayed from the store.

A step's output can be hundreds of megabytes, so it is never held in memory: it lives in files
and is read back in chunks.

- `SharedLog`: what the clients of one step in this process follow. It is a list of segments,
  each a byte range of an open file: the step's in-progress log when this process runs the
  step, or another process's in-progress log when it follows that run. A client sends every
  segment from its first byte, then waits for more until the log is finished.
- `Tail`: the last bytes of a step's output, kept for the failure report.
- `replay` sends a saved log (a committed step's `log`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Emit = Callable[[bytes], None]

Progress = Callable[[int], None]
"""Receives how many bytes a long transfer (a copy, an image pull) has moved so far."""

PROGRESS_BYTES = 1 << 20
"""How often a transfer reports its progress: after each MiB."""


class ByteCounter:
    """Counts the bytes of a transfer and reports the total to `progress` (if any) each time
    it passes a multiple of PROGRESS_BYTES."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self.total = 0

    def add(self, n: int) -> None:
        before, self.total = self.total, self.total + n
        if self._progress is not None and before // PROGRESS_BYTES != self.total // PROGRESS_BYTES:
            self._progress(self.total)


CHUNK = 65536
TAIL_BYTES = 256 * 1024
"""Output kept in memory for a failed step's report; the whole log stays on disk."""
_CANCEL_CHECK = 0.1  # seconds between looks at a follower's cancel event


class LogCancelled(Exception):
    """Following a log stopped because the follower's cancel event was set."""


@dataclass
class _Segment:
    fd: int  # owned by the SharedLog: closed when it is closed
    start: int
    end: int  # bytes known to be there (absolute offset in the file)


class SharedLog:
    """The output of one step as seen by this process: followed from the first byte by any
    number of threads, while one thread (the step's) adds to it. Thread-safe."""

    def __init__(self) -> None:
        self._segments: list[_Segment] = []
        self._finished = False
        self._cond = threading.Condition()

    def add_segment(self, fd: int, start: int = 0) -> None:
        """Go on with the file open as `fd` (owned from now on), from byte `start`: the
        previous segment ends where it was last known to end."""
        with self._cond:
            self._segments.append(_Segment(fd, start, start))
            self._cond.notify_all()

    def grew(self, end: int) -> None:
        """The current segment's file now holds (at least) `end` bytes: wake the followers."""
        with self._cond:
            if self._segments and end > self._segments[-1].end:
                self._segments[-1].end = end
                self._cond.notify_all()

    def finish(self) -> None:
        """Nothing more will be added: followers return once they have sent everything."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def follow(self, emit: Emit, cancel: threading.Event | None = None) -> None:
        """Send every byte to `emit` (from the first), then new ones, until finished.

        Raises LogCancelled as soon as `cancel` is set. `emit` runs without the lock held, so
        a slow client delays only itself; it gets chunks of at most CHUNK bytes.
        """
        index, offset = 0, None
        while True:
            with self._cond:
                while True:
                    if cancel is not None and cancel.is_set():
                        raise LogCancelled
                    if index < len(self._segments):
                        segment = self._segments[index]
                        offset = segment.start if offset is None else offset
                        last = index == len(self._segments) - 1
                        if offset < segment.end or not last or self._finished:
                            break
                    elif self._finished:
                        return
                    self._cond.wait(_CANCEL_CHECK)
                fd, end, finished = segment.fd, segment.end, self._finished
            data = os.pread(fd, min(CHUNK, end - offset), offset) if offset < end else b""
            if data:
                offset += len(data)
                emit(data)
            elif not last:  # this segment is done: on to the next one
                index, offset = index + 1, None
            elif finished:
                return
            else:  # a writer that announced more than the file holds yet: look again soon
                with self._cond:
                    self._cond.wait(_CANCEL_CHECK)

    def close(self) -> None:
        """Close the segments' files (call once no thread follows any more)."""
        with self._cond:
            for segment in self._segments:
                with contextlib.suppress(OSError):
                    os.close(segment.fd)
            self._segments.clear()
            self._finished = True
            self._cond.notify_all()


class Tail:
    """The last `limit` bytes written to it: a failed step's output, for its report."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self._buf = bytearray()
        self.total = 0

    def write(self, data: bytes) -> None:
        """Keep `data`, dropping the oldest bytes beyond the limit."""
        self.total += len(data)
        self._buf += data[-self.limit :]
        if len(self._buf) > self.limit:
            del self._buf[: len(self._buf) - self.limit]

    def clear(self) -> None:
        """Forget everything (a new step starts)."""
        self._buf.clear()
        self.total = 0

    def bytes(self) -> bytes:
        """The kept bytes; `total > len(...)` means the beginning was dropped."""
        return bytes(self._buf)


def replay(path: Path, emit: Emit) -> None:
    """Send a saved log (a committed step's `log`) to `emit`; a missing file sends nothing."""
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            emit(chunk)
