"""Cross-process single-flight of a step: one process runs it, the others follow its log.

Several processes (pytest-xdist workers, CLIs) share one store. When they ask for the same
missing step at once, one of them (the owner) executes it and the others follow its output,
then take its outcome. Files in the steps directory (`state/steps/`):

- `<id>.lock`: its flock is held by the step's owner.
- `<id>.log`: the owner's output so far: one header line `obuilder-run <token>` naming the run,
  then the raw output.
- `<id>.failed`: `<token>` then the message on the next line: how run `<token>` failed.
- `.sweep`: held shared while taking a step lock, exclusively by `sweep`.

The whole log of a failed run is moved to `failed-logs/<id>.log` beside the steps directory,
where the user can read it after the build (the newest `KEEP_FAILED_LOGS` are kept).

Invariants:

1. Whoever holds the flock on `<id>.lock` is the step's owner. Only the owner writes
   `<id>.log` or `<id>.failed`, executes the step or commits it. (The kernel drops the flock
   when its holder dies.)
2. Lock files are removed only by `sweep`, which holds `.sweep` exclusively and removes a lock
   file only while it holds that lock itself; a process taking a lock holds `.sweep` shared
   from opening the file to locking it. So no one ever holds the lock of a removed file.
3. An owner first replaces `<id>.log` by a fresh file with a new run token, then executes.
   It ends its run with exactly one of: the step committed to the store (success),
   `<id>.failed` written with its token (failure), nothing (cancelled, or died); then the
   lock is released.
4. So a process that gets the lock after following run T knows how T ended: the step is
   committed (saved), `<id>.failed` names T (failed with that message), else T was cancelled
   or its owner died, and the process now runs the step itself. A process that gets the lock
   without having followed a run never takes a failure from the file (failed steps are never
   cached): it runs the step.

Following needs polling (another process writes the files): every `POLL` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from obuilder_core.errors import ObuilderError
from obuilder_core.locks import file_lock, open_lock, try_lock
from obuilder_core.log import Emit, SharedLog

logger = logging.getLogger(__name__)

POLL = 0.05
"""Seconds between looks at files another process writes (its lock, its log)."""
KEEP_FAILED_LOGS = 100

_HEADER = b"obuilder-run "
_HEADER_LEN = len(_HEADER) + 16 + 1  # "obuilder-run <16 hex digits>\n"

Execute = Callable[[Emit, threading.Event], None]
"""Runs a step: writes its output with the Emit, stops when the Event is set, raises on error."""


@dataclass(frozen=True)
class Outcome:
    """How a step ended for its clients: found in the store, built (by this process or one
    it followed), pulled from a remote cache (the message names it), failed (with the message
    and the path of its whole log) or cancelled."""

    kind: Literal["cached", "saved", "pulled", "failed", "cancelled"]
    message: str = ""
    log_path: Path | None = None


CANCELLED = Outcome("cancelled", "Cancelled at user's request")


class StepLocks:
    """The cross-process side of the single-flight, in one steps directory."""

    def __init__(self, dir: Path) -> None:
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.failed_logs = self.dir.with_name("failed-logs")
        self.failed_logs.mkdir(exist_ok=True)

    def _path(self, id: str, suffix: str) -> Path:
        return self.dir / f"{id}{suffix}"

    def run(
        self,
        id: str,
        execute: Execute,
        log: SharedLog,
        stop: threading.Event,
        committed: Callable[[], bool],
    ) -> Outcome:
        """Get step `id` done once across processes, adding its output to `log`.

        Follows another process's run while it holds the lock, then either takes its outcome
        or runs `execute` itself as the owner. `committed()` says whether the step is in the
        store now. Returns CANCELLED when `stop` is set first.
        """
        follower = _Follower(self._path(id, ".log"), self._path(id, ".failed"), log)
        while (lock_fd := self._take(id)) is None:
            if stop.is_set():
                return CANCELLED
            follower.look()
            time.sleep(POLL)
        try:
            if follower.token is not None:
                follower.look()  # what the owner we followed wrote before it let go
            if committed():
                return Outcome("saved" if follower.token else "cached")
            failure = self._failure(id, follower.token)
            if failure is not None:
                return failure
            if stop.is_set():
                return CANCELLED
            return self._own(id, execute, log, stop)
        finally:
            os.close(lock_fd)  # releases the lock

    def _take(self, id: str) -> int | None:
        """The fd of `<id>.lock`, locked, or None if another process holds it (invariant 2)."""
        with file_lock(self.dir / ".sweep", shared=True):
            fd = open_lock(self._path(id, ".lock"))
            if try_lock(fd):
                return fd
            os.close(fd)
            return None

    def _failure(self, id: str, token: str | None) -> Outcome | None:
        """The failure of run `token`, if `<id>.failed` records it (invariant 4)."""
        if token is None:
            return None
        try:
            head, _, message = self._path(id, ".failed").read_text().partition("\n")
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        if head != token:
            return None
        return Outcome("failed", message, self.failed_logs / f"{id}.log")

    def _own(self, id: str, execute: Execute, log: SharedLog, stop: threading.Event) -> Outcome:
        """Execute the step as its owner (invariant 3)."""
        token = secrets.token_hex(8)
        failed, path = self._path(id, ".failed"), self._path(id, ".log")
        failed.unlink(missing_ok=True)
        fd = _fresh_log(path, token)
        log.add_segment(os.dup(fd), _HEADER_LEN)
        offset = _HEADER_LEN

        def write(data: bytes) -> None:
            nonlocal offset
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
                offset += n
            log.grew(offset)

        try:
            execute(write, stop)
        except Exception as e:
            if stop.is_set():
                path.unlink(missing_ok=True)
                return CANCELLED
            if not isinstance(e, ObuilderError):
                logger.exception("step %s crashed", id)
            message = str(e) if isinstance(e, ObuilderError) else f"{type(e).__name__}: {e}"
            kept = self._keep_failed_log(id, path)
            _write_atomically(failed, f"{token}\n{message}")
            return Outcome("failed", message, kept)
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)  # the saved log is in the store now
        return Outcome("saved")

    def _keep_failed_log(self, id: str, path: Path) -> Path:
        """Move the log of a failed run where the user can read it; drop the oldest ones."""
        kept = self.failed_logs / f"{id}.log"
        os.replace(path, kept)
        logs = sorted(self.failed_logs.iterdir(), key=_mtime, reverse=True)
        for old in logs[KEEP_FAILED_LOGS:]:
            old.unlink(missing_ok=True)
        return kept

    def sweep(self) -> list[Path]:
        """Remove what dead processes left (invariant 2): lock files no one holds, the logs
        and failure records of runs no one runs any more, temporaries. Returns them."""
        removed: list[Path] = []
        with file_lock(self.dir / ".sweep"):
            live = set()
            for lock in self.dir.glob("*.lock"):
                fd = open_lock(lock)
                try:
                    if not try_lock(fd):
                        live.add(lock.name.removesuffix(".lock"))
                        continue
                    lock.unlink()
                    removed.append(lock)
                finally:
                    os.close(fd)
            for entry in self.dir.iterdir():
                id = entry.name.split(".", 1)[0] if not entry.name.startswith(".") else None
                if entry.name == ".sweep" or (id is not None and id in live):
                    continue
                if entry.name.startswith(".") and _owner_alive(entry.name):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(entry)
        return removed


class _Follower:
    """Follows the runs of other processes in `<id>.log`, adding each to `log` once.

    A run that has already failed when first seen is left out: it is over, and its owner's
    successor (who holds the lock now) is about to replace its log.
    """

    def __init__(self, path: Path, failed: Path, log: SharedLog) -> None:
        self.path = path
        self.failed = failed
        self.log = log
        self.token: str | None = None  # the run followed last
        self._fd = -1  # its file (owned by `log`)

    def look(self) -> None:
        """Take in what is new: a new run's file, or more output of the current one."""
        token, fd = _open_run(self.path)
        if token is not None and token != self.token and not self._over(token):
            assert fd is not None
            self.log.add_segment(fd, _HEADER_LEN)
            self.token, self._fd = token, fd
        elif fd is not None:
            os.close(fd)
        if self._fd >= 0:
            self.log.grew(os.fstat(self._fd).st_size)

    def _over(self, token: str) -> bool:
        try:
            return self.failed.read_text().partition("\n")[0] == token
        except (FileNotFoundError, UnicodeDecodeError):
            return False


def _open_run(path: Path) -> tuple[str | None, int | None]:
    """The token and an open fd of the run log at `path`, or (None, None) if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    header = os.pread(fd, _HEADER_LEN, 0)
    if len(header) != _HEADER_LEN or not header.startswith(_HEADER):
        os.close(fd)
        return None, None
    return header[len(_HEADER) : -1].decode("ascii", errors="replace"), fd


def _fresh_log(path: Path, token: str) -> int:
    """A new run log at `path` (replacing the old one by rename), open to write and read."""
    tmp = path.with_name(f".{os.getpid()}-{token}.log")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.write(fd, _HEADER + token.encode() + b"\n")
    os.rename(tmp, path)
    return fd


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{os.getpid()}-{secrets.token_hex(8)}.tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _owner_alive(name: str) -> bool:
    """Whether the process that made temporary `.PID-...` still exists."""
    pid = name[1:].split("-", 1)[0]
    return pid.isdigit() and Path(f"/proc/{pid}").exists()
