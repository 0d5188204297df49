"""Single-flight for steps: each missing step runs once, however many clients ask for it.

Within a process, clients of the same step id share one `_Flight`: a worker thread runs the
step and every client follows its `LogBuffer` from the first byte (reference §2.3). A client
that cancels returns at once; the step is cancelled only when all its clients have (§2.4).

Across processes sharing a store, a step is owned by whoever holds the flock on
`<steps dir>/<id>.lock`. The owner writes its output to `<id>.log` (a `LogFile`); the worker of
another process follows that file instead of running the step. When the lock comes free the
follower looks at the store: a result means the step was saved; a finished log with a
`<id>.status` naming its inode means it failed (with that message); anything else (the owner
was cancelled or died) means the follower now holds the lock and runs the step itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from obuilder_core.errors import ObuilderError
from obuilder_core.log import POLL, Emit, LogBuffer, LogCancelled, LogFile, replay, tail_file

log = logging.getLogger(__name__)

Execute = Callable[[Emit, threading.Event], None]
"""Runs a step: writes its output with the Emit, stops when the Event is set, raises on error."""


@dataclass(frozen=True)
class Outcome:
    """How a step ended for one client: from the cache, built (by anyone), failed or cancelled."""

    kind: Literal["cached", "saved", "failed", "cancelled"]
    message: str = ""


CANCELLED = Outcome("cancelled", "Cancelled at user's request")


class _Flight:
    """One step in progress in this process."""

    def __init__(self, id: str) -> None:
        self.id = id
        self.buffer = LogBuffer()
        self.users = 1
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.outcome: Outcome = CANCELLED


class SingleFlight:
    """The steps in progress of one builder, deduplicated within and across processes."""

    def __init__(self, steps_dir: Path, result_log: Callable[[str], Path | None]) -> None:
        """`result_log(id)` is the saved log of committed step `id`, or None if not committed."""
        self.dir = Path(steps_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._result_log = result_log
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def in_progress(self) -> list[str]:
        """The ids this process is building or following right now."""
        with self._lock:
            return list(self._flights)

    def run(
        self,
        id: str,
        execute: Execute,
        emit: Emit,
        *,
        cancel: threading.Event | None = None,
        note: Callable[[str], None] = lambda _: None,
    ) -> Outcome:
        """Get step `id` built (or attach to its build), sending its whole output to `emit`.

        Returns when the step is saved or failed, or at once with CANCELLED when `cancel` is
        set; the step itself is cancelled only when every client of this process has left.
        """
        cancel = cancel or threading.Event()
        while True:
            with self._lock:
                flight = self._flights.get(id)
                if flight is None:
                    flight = self._start(id, execute)
                    break
                if flight.users > 0:
                    flight.users += 1
                    break
            note("Waiting for previous build to finish cancelling")
            while not flight.done.wait(0.1):
                if cancel.is_set():
                    return CANCELLED
        try:
            flight.buffer.follow(emit, cancel)
        except LogCancelled:
            self._leave(flight)
            return CANCELLED
        except BaseException:
            self._leave(flight)  # the client's emit raised (or Ctrl-C): it is gone
            raise
        flight.done.wait()
        return flight.outcome

    def _start(self, id: str, execute: Execute) -> _Flight:
        flight = _Flight(id)
        self._flights[id] = flight
        threading.Thread(
            target=self._work, args=(flight, execute), name=f"step-{id[:12]}", daemon=True
        ).start()
        return flight

    def _leave(self, flight: _Flight) -> None:
        with self._lock:
            flight.users -= 1
            if flight.users == 0 and not flight.done.is_set():
                flight.cancel.set()

    def _work(self, flight: _Flight, execute: Execute) -> None:
        outcome = Outcome("failed", "internal error")
        try:
            outcome = self._own(flight, execute)
        except ObuilderError as e:
            outcome = Outcome("failed", str(e))
        except Exception as e:
            log.exception("step %s crashed", flight.id)
            outcome = Outcome("failed", f"{type(e).__name__}: {e}")
        finally:
            with self._lock:
                del self._flights[flight.id]
                flight.outcome = outcome
            flight.buffer.finish()
            flight.done.set()

    # -- one process's turn -----------------------------------------------------------------

    def _own(self, flight: _Flight, execute: Execute) -> Outcome:
        lock_path = self.dir / f"{flight.id}.lock"
        followed: int | None = None
        while True:
            lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
            try:
                other, followed = self._acquire(flight, lock_fd, followed)
                if other is not None:
                    return other
                if not _is_current(lock_fd, lock_path):
                    continue  # its owner removed this lock file when done: lock the new one
                try:
                    return self._locked_turn(flight, execute, followed is not None)
                finally:
                    # Removed while held, so lock files do not pile up: a process waiting on
                    # this inode sees it is no longer current and locks a fresh file instead.
                    lock_path.unlink(missing_ok=True)
            finally:
                os.close(lock_fd)  # releases the flock

    def _locked_turn(self, flight: _Flight, execute: Execute, followed: bool) -> Outcome:
        saved = self._result_log(flight.id)
        if saved is not None:
            if followed:  # we already sent the owner's output as it ran
                return Outcome("saved")
            replay(saved, flight.buffer.write)
            return Outcome("cached")
        if flight.cancel.is_set():
            return CANCELLED
        return self._execute(flight, execute)

    def _acquire(
        self, flight: _Flight, lock_fd: int, followed: int | None
    ) -> tuple[Outcome | None, int | None]:
        """Take the lock `lock_fd` (returning None and the inode of the last log followed) or
        the outcome of another process's run of the step."""
        path = self.dir / f"{flight.id}.log"
        while not _try_lock(lock_fd):
            if flight.cancel.is_set():
                return CANCELLED, followed
            try:
                log_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                time.sleep(POLL)
                continue
            try:
                inode = os.fstat(log_fd).st_ino
                if inode == followed:
                    time.sleep(POLL)
                    continue
                finished = tail_file(
                    log_fd,
                    flight.buffer.write,
                    stop=lambda: _try_lock(lock_fd),
                    cancel=flight.cancel,
                )
                followed = inode
                message = self._status(flight.id, inode) if finished else None
                if message is not None:
                    return Outcome("failed", message), followed
            except LogCancelled:
                return CANCELLED, followed
            finally:
                os.close(log_fd)
        return None, followed

    def _execute(self, flight: _Flight, execute: Execute) -> Outcome:
        status = self.dir / f"{flight.id}.status"
        status.unlink(missing_ok=True)
        logfile = LogFile(self.dir / f"{flight.id}.log")

        def write(data: bytes) -> None:
            logfile.write(data)
            flight.buffer.write(data)

        outcome = Outcome("saved")
        try:
            execute(write, flight.cancel)
        except Exception as e:
            if flight.cancel.is_set():
                outcome = CANCELLED
            else:
                if not isinstance(e, ObuilderError):
                    log.exception("step %s crashed", flight.id)
                text = str(e) if isinstance(e, ObuilderError) else f"{type(e).__name__}: {e}"
                outcome = Outcome("failed", text)
                # Written before the log is marked finished: followers read it after that.
                status.write_text(f"{logfile.inode}\n{text}")
        finally:
            logfile.finish()
            with contextlib.suppress(OSError):
                os.unlink(logfile.path)
        return outcome

    def _status(self, id: str, inode: int) -> str | None:
        try:
            head, _, message = (self.dir / f"{id}.status").read_text().partition("\n")
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return message if head == str(inode) else None


def _is_current(fd: int, path: Path) -> bool:
    """Whether `fd` is still the file at `path` (not unlinked by a previous owner)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
