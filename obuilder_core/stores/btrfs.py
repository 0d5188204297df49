"""`btrfs:/path`: steps as btrfs subvolumes; a child step is a snapshot of its parent.

Layout: see `DirStore`. Builds run in a writable snapshot `result-tmp/<pid>-<rand>-<id>`; on
success a read-only snapshot of it is taken as `result/<id>` (snapshots cost the same for 1k
or 100k files). Caches are writable subvolumes `cache/c-<escaped>`, cloned by snapshot.
Subvolumes are created, snapshotted and deleted by ioctls (`btrfs_ioctl`), not by the `btrfs`
command: a step starts no process. The command remains for df() and on a full disk.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from obuilder_core.process import run_cmd
from obuilder_core.stores import btrfs_ioctl
from obuilder_core.stores.base import StoreError
from obuilder_core.stores.dirstore import DirStore
from obuilder_core.stores.disk import fs_type, is_full, remove_tree, seal_root

log = logging.getLogger(__name__)

# The root directory of every btrfs subvolume has this inode number.
_SUBVOLUME_INO = 256


def is_subvolume(path: Path) -> bool:
    """True if `path` is the top of a btrfs subvolume (or snapshot)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    return st.st_ino == _SUBVOLUME_INO and os.path.isdir(path)


class BtrfsStore(DirStore):
    """A store of btrfs subvolumes with read-only committed results."""

    kind = "btrfs"
    _rename_results = False  # read-only snapshots cannot be renamed (EROFS on their "..")

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        # sqlite maps its WAL index into memory; on a full btrfs a copy-on-write page fault
        # there is a SIGBUS. Files made in a no-CoW directory are overwritten in place.
        set_nocow(root / "state")

    def _create_empty(self, path: Path) -> None:
        with _failing(f"btrfs subvolume create of {path}"):
            btrfs_ioctl.create_subvolume(path)

    def _clone(self, src: Path, dst: Path) -> None:
        with _failing(f"btrfs snapshot of {src} to {dst}"):
            btrfs_ioctl.snapshot(src, dst, read_only=False)

    def _commit(self, tmp: Path, dst: Path, id: str) -> None:
        # One ioctl makes the read-only snapshot: `dst` appears complete and read-only, or not
        # at all. An existing `dst` is refused by the kernel (EEXIST), with no race.
        try:
            btrfs_ioctl.snapshot(tmp, dst, read_only=True)
        except FileExistsError:
            raise StoreError(f"step {id} already exists in the store") from None
        except OSError as e:
            raise _error(f"btrfs read-only snapshot of {tmp} to {dst}", e) from None

    def _remove(self, path: Path) -> None:
        if not is_subvolume(path):
            remove_tree(path)
            return
        # btrfs frees a deleted subvolume's space in the background, after later commits. On a
        # full disk, commit, wait for the cleaner and commit again, so that the very next
        # build (or clean) has the space back at once (about 25 ms instead of 30 s or more).
        full = is_full(self.root)
        try:
            btrfs_ioctl.delete_subvolume(path)
        except OSError as e:
            if e.errno != errno.ENOTEMPTY:
                raise _error(f"btrfs subvolume delete of {path}", e) from None
            # A subvolume that contains others (a build may create them; snapshots never
            # include them) cannot be deleted until they are; this is rare, so walk only now.
            self._remove_nested(path)
            with _failing(f"btrfs subvolume delete of {path}"):
                btrfs_ioctl.delete_subvolume(path)
        if full:
            self._settle(timeout=300)

    def _remove_nested(self, path: Path) -> None:
        for dirpath, dirnames, _ in os.walk(path):
            for d in list(dirnames):
                if is_subvolume(Path(dirpath, d)):
                    dirnames.remove(d)
                    self._remove(Path(dirpath, d))

    def _settle(self, timeout: float) -> None:
        """Commit, wait until the cleaner has freed every deleted subvolume, commit again."""
        # The commits are ioctls. The wait is the `btrfs subvolume sync` command, run only on a
        # full disk and by df(): no ioctl waits for the cleaner, the command polls the tree of
        # tree roots until the deleted subvolumes are gone from it.
        _sync(self.root)
        run_cmd(["btrfs", "subvolume", "sync", str(self.root)], check=False, timeout=timeout)
        _sync(self.root)

    def df(self) -> float:
        """Free space in percent, from `btrfs filesystem usage` after pending deletes finish."""
        # Deleted subvolumes are cleaned in the background after a commit: commit (which also
        # wakes the cleaner), wait for the cleaning, and commit the freed space.
        self._settle(timeout=120)
        out = run_cmd(["btrfs", "filesystem", "usage", "-b", str(self.root)]).stdout.decode()
        size = _field(out, "Device size")
        used = _field(out, "Used")
        return 100.0 if size == 0 else 100.0 - 100.0 * used / size


@contextlib.contextmanager
def _failing(what: str) -> Iterator[None]:
    """Turn an OSError of the block into the one-line StoreError `_error` makes."""
    try:
        yield
    except OSError as e:
        raise _error(what, e) from None


def _error(what: str, e: OSError) -> StoreError:
    """One line: `btrfs snapshot of X to Y failed: [Errno 28] No space left on device`."""
    return StoreError(f"{what} failed: [Errno {e.errno}] {e.strerror}")


def _sync(root: Path) -> None:
    """Commit `root`'s filesystem, as a best effort (as `btrfs filesystem sync` was run)."""
    try:
        btrfs_ioctl.sync(root)
    except OSError as e:
        log.debug("btrfs sync of %s failed: %s", root, e)


FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_NOCOW_FL = 0x00800000


def set_nocow(directory: Path) -> None:
    """Mark `directory` no-copy-on-write: files created in it from now on inherit it."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & FS_NOCOW_FL:
            flags[0] |= FS_NOCOW_FL
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags, True)
    except OSError as e:
        log.debug("cannot mark %s no-CoW: %s", directory, e)
    finally:
        os.close(fd)


def _field(usage: str, name: str) -> int:
    m = re.search(rf"^\s*{re.escape(name)}:\s+(\d+)", usage, re.MULTILINE)
    if not m:
        raise StoreError(f"btrfs filesystem usage: no {name!r} in its output")
    return int(m.group(1))


def open_backend(arg: str) -> BtrfsStore:
    """Open (creating if needed) the btrfs store at directory `arg`, which must be on btrfs."""
    root = Path(arg).absolute()
    kind = fs_type(root)  # first: a store that cannot be opened creates and changes nothing
    if kind != "btrfs":
        raise StoreError(f"btrfs:{arg}: {root} is not on a btrfs filesystem (it is {kind})")
    try:
        seal_root(root)
    except OSError as e:
        raise StoreError(f"btrfs:{arg}: cannot create store directory: {e.strerror}") from None
    try:
        return BtrfsStore(root)
    except OSError as e:
        raise StoreError(f"btrfs:{arg}: cannot open store: {e.strerror or e}") from None
