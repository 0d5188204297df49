"""Helpers shared by the store backends: names, locks, temporaries, on-disk counters, sizes.

Everything here keeps its state on disk (file names, flock locks, counter files), never in
memory, so that several processes can share one store:

- `escape_cache_name(name)`: injective cache name -> file name (`c-` + `%02x` escapes).
- `check_step_id(id)`: reject ids that are not a single safe path component.
- `locked_counter(path)`: a generation counter stored in a lock file, read/written under flock.
- `TempArea(dir)`: uniquely named temporaries whose owner holds a flock while it is alive;
  `sweep()` removes those whose owner died (kill -9), never a live one.
- `statvfs_free_pct(path)`, `du_bytes(path)`: free space in percent, apparent size in bytes.
- `seal_root(root)`: create a store root private to its owner (0700), tightening a wider one.
- `DirStore`, the skeleton of the rsync and btrfs backends, is in `dirstore.py`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from obuilder_core.errors import ObuilderError
from obuilder_core.locks import file_lock, is_held
from obuilder_core.process import run_cmd
from obuilder_core.stores.base import StoreError

log = logging.getLogger(__name__)

_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_MAX_ESCAPED = 200
_STEP_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")


def escape_cache_name(name: str) -> str:
    """Map a cache name to a file name, injectively: `c-` + `[A-Za-z0-9._-]` kept + `%02x`.

    Unlike OBuilder's `Escape.cache` (reference §7 item 14) every escape has two hex digits, so
    distinct names never collide; `/`, `%`, spaces and NUL are escaped, so the result is always
    one path component, and the `c-` prefix means it is never `.` or `..`. A name whose escape
    would exceed 200 characters becomes `h-` + its SHA-256 (hex) instead.
    """
    raw = name.encode("utf-8", errors="surrogateescape")
    out = "c-" + "".join(chr(b) if b in _SAFE_BYTES else f"%{b:02x}" for b in raw)
    if len(out) > _MAX_ESCAPED:
        # Too long for one file name: a digest of the name instead. The `h-` prefix keeps these
        # apart from short names (always `c-`), and they are valid zfs dataset names too.
        out = "h-" + hashlib.sha256(raw).hexdigest()
    return out


def is_step_id(name: str) -> bool:
    """Whether `name` could be a step id (a single safe path component)."""
    return _STEP_ID.fullmatch(name) is not None


def check_step_id(id: str) -> str:
    """Return `id` if it is usable as one file name (`[A-Za-z0-9._-]`, no leading dot).

    Raises StoreError otherwise, so that an id can never name a path outside the store.
    """
    if not _STEP_ID.fullmatch(id):
        raise StoreError(f"invalid step id {id!r}: expected letters, digits, '.', '_' or '-'")
    return id


def unique_name(suffix: str = "") -> str:
    """A name unique across processes and threads without any in-memory counter.

    `<pid>-<64 random bits>[-suffix]`; the suffix (for humans reading the directory) is cut to
    100 characters so the name always fits in one path component.
    """
    name = f"{os.getpid()}-{secrets.token_hex(8)}"
    return f"{name}-{suffix[:100]}" if suffix else name


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


def remove_tree(path: Path) -> None:
    """Remove a file or directory tree if present, even with read-only subdirectories."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
        return
    if not path.exists():
        return
    try:
        shutil.rmtree(path)
    except PermissionError:
        # A directory without write permission (e.g. made 0555 by a build) blocks unlinking
        # its entries when we are not root; grant it and retry once.
        run_cmd(["chmod", "-R", "u+rwx", "--", str(path)], check=False)
        shutil.rmtree(path)


PRIVATE_MODE = 0o700
"""The mode of every store root: step results may hold setuid-root programs made by a build,
logs may hold anything a step printed; no other local user may reach either."""


def seal_root(root: Path) -> None:
    """Create directory `root` (and its parents) with mode 0700, or make an existing one 0700.

    A root that other users could enter (OBuilder's README asks users to `chmod go-rwx` it) is
    tightened with a warning rather than refused, so upgrading keeps a store usable.
    Raises OSError if `root` cannot be created or changed.
    """
    root.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(os.stat(root).st_mode)
    if mode & 0o077:
        os.chmod(root, PRIVATE_MODE)
        log.warning(
            "store %s was mode %04o, open to other users; it is now %04o", root, mode, PRIVATE_MODE
        )


FULL_BELOW = 16 << 20
"""Bytes left under which a store's filesystem counts as full (btrfs keeps some aside)."""


def is_full(path: Path) -> bool:
    """Whether the filesystem of `path` has (almost) no space left for unprivileged writes."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < FULL_BELOW


def statvfs_free_pct(path: Path) -> float:
    """Free space (available to unprivileged users) of `path`'s filesystem, in percent."""
    st = os.statvfs(path)
    used = st.f_blocks - st.f_bfree
    total = used + st.f_bavail
    return 100.0 if total == 0 else 100.0 - 100.0 * used / total


def du_bytes(path: Path) -> int:
    """Apparent size in bytes of the tree at `path` (hard links counted once), via `du -sb`."""
    proc = run_cmd(["du", "-sb", "--", str(path)])
    try:
        return int(proc.stdout.split()[0])
    except (IndexError, ValueError):
        raise StoreError(f"du -sb {path}: unexpected output {proc.stdout!r}") from None


def fs_type(path: Path) -> str:
    """The filesystem type of `path` as `stat -f` names it ("btrfs", "ext2/ext3", "tmpfs", ...)."""
    return run_cmd(["stat", "-f", "-c", "%T", "--", str(path)]).stdout.decode().strip()
