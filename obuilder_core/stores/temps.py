"""State that lives on disk so that processes can share a store: temporaries whose owner holds
a flock while alive (`TempArea`, swept when their owner died), generation counters read and
written under flock (`locked_counter`), and `once` for leases released exactly once."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from obuilder_core.errors import ObuilderError
from obuilder_core.locks import file_lock, is_held
from obuilder_core.stores.names import unique_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Counter:
    """A counter stored in an open, flock-held file (see `locked_counter`)."""

    fd: int

    def get(self) -> int:
        """The stored value (0 for a new or unreadable file)."""
        os.lseek(self.fd, 0, os.SEEK_SET)
        text = os.read(self.fd, 64).decode(errors="replace").strip()
        return int(text) if text.isdigit() else 0

    def set(self, value: int) -> None:
        """Store `value` (durably: written and fsynced before the lock is released)."""
        data = f"{value}\n".encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)


@contextlib.contextmanager
def locked_counter(path: Path) -> Iterator[Counter]:
    """Lock the counter file `path` exclusively and yield it; e.g. a cache's generation.

    Typical use (first release of overlapping cache users wins):
    `with locked_counter(p) as gen: if gen.get() == gen0: gen.set(gen0 + 1); commit()`.
    """
    with file_lock(path) as fd:
        yield Counter(fd)


@dataclass(frozen=True)
class TempClaim:
    """A claimed temporary path inside a `TempArea`; its owner holds `lock_fd` until released.

    The backend creates whatever it likes at `path` (directory, subvolume, mount point).
    """

    path: Path
    lock_path: Path
    lock_fd: int

    def release(self) -> None:
        """Give up the claim. Remove the temporary at `path` first, if it still exists."""
        with contextlib.suppress(FileNotFoundError):
            self.lock_path.unlink()
        os.close(self.lock_fd)


class TempArea:
    """A directory of uniquely named temporaries that crashed owners leave to be swept.

    Each temporary `DIR/NAME` has a lock file `DIR/.locks/NAME` that its owner holds (flock)
    while it uses the temporary. `sweep` (run when a store is opened) removes the temporaries
    whose lock is not held, i.e. whose owner died, and leaves live ones alone. A lock on
    `DIR/.locks/.sweep` (shared while claiming, exclusive while sweeping) keeps a sweep from
    seeing a claim between creating its lock file and locking it.
    """

    def __init__(self, dir: Path) -> None:
        self.dir = dir
        self.locks = dir / ".locks"
        self.locks.mkdir(parents=True, exist_ok=True)

    def claim(self, suffix: str = "") -> TempClaim:
        """Reserve a fresh name `DIR/<pid>-<random>[-suffix]` (nothing is created at it)."""
        with file_lock(self.locks / ".sweep", shared=True):
            name = unique_name(suffix)
            lock_path = self.locks / name
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
        return TempClaim(self.dir / name, lock_path, fd)

    def sweep(self, remove: Callable[[Path], None]) -> list[Path]:
        """Remove (with `remove(path)`) every temporary whose owner is gone; return them.

        `remove` must accept a path that does not exist or is only partly built.
        """
        removed: list[Path] = []
        with file_lock(self.locks / ".sweep"):
            for entry in sorted(self.dir.iterdir()):
                if entry.name == ".locks":
                    continue
                if is_held(self.locks / entry.name):
                    continue
                try:
                    remove(entry)
                except (OSError, ObuilderError) as e:
                    # e.g. an orphaned child of the dead owner still writing into it: a
                    # later sweep retries; opening the store must not fail for it.
                    log.warning("cannot remove leftover temporary %s: %s", entry, e)
                    continue
                removed.append(entry)
            for lock in self.locks.iterdir():
                orphan = lock.name != ".sweep" and not (self.dir / lock.name).exists()
                if orphan and not is_held(lock):
                    lock.unlink(missing_ok=True)
        return removed

    def live(self) -> list[Path]:
        """The temporaries whose owner is alive (holds its lock)."""
        return [
            e
            for e in sorted(self.dir.iterdir())
            if e.name != ".locks" and is_held(self.locks / e.name)
        ]

    def names(self) -> list[str]:
        """The temporaries present (live or dead), for tests and diagnostics."""
        return sorted(e.name for e in self.dir.iterdir() if e.name != ".locks")


def once(fn: Callable[[], None]) -> Callable[[], None]:
    """`fn`, run by the first call only, however many threads call at once: every lease's
    `release` (a lease released twice is released once)."""
    lock = threading.Lock()
    done: list[bool] = []

    def call() -> None:
        with lock:
            if done:
                return
            done.append(True)
        fn()

    return call
