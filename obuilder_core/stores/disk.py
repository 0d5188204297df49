"""The store's filesystem: private roots (0700), free space, sizes, the filesystem's type, and
removing trees (even read-only ones)."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import stat
from pathlib import Path

from obuilder_core.process import run_cmd
from obuilder_core.stores.base import StoreError

log = logging.getLogger(__name__)


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


STORE_MARKERS = frozenset({"state", "kind"})
"""Entries that make a directory a store: every backend's `state/`, an `auto:` root's `kind`."""


def seal_root(root: Path) -> None:
    """Create directory `root` (and its parents) with mode 0700, or make an existing one 0700.

    An existing root that other users could enter is tightened with a warning if it is empty
    (a fresh filesystem's `lost+found` aside) or already a store (OBuilder's README asks
    users to `chmod go-rwx` it: upgrading keeps a store usable). One that holds anything else
    is refused and left as it is: a directory named by mistake (`/tmp`, a home directory)
    must not lose its mode. Raises OSError if `root` cannot be created or changed, or is
    refused (its `strerror` then says why).
    """
    root.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(os.stat(root).st_mode)
    if mode & 0o077:
        entries = set(os.listdir(root)) - {"lost+found"}  # a fresh ext4 filesystem's root
        if entries and not entries & STORE_MARKERS:
            raise PermissionError(
                errno.EPERM,
                f"{root} holds other files and is open to other users (mode {mode:04o}); a "
                "store needs a directory of its own: name a new or empty one, or make this "
                "one private (chmod 700)",
            )
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


MOUNTINFO = Path("/proc/self/mountinfo")


def fs_type(path: Path) -> str:
    """The type of the filesystem `path` is on, as the kernel names it ("btrfs", "ext4",
    "tmpfs", ...; `stat -f` would say "ext2/ext3" for ext4): that of the deepest mount point
    above it in /proc/self/mountinfo, the last one mounted where several share a point."""
    real = os.path.realpath(path)
    deepest, kind = "", "unknown"
    for line in MOUNTINFO.read_text().splitlines():
        fields = line.split()
        point, fstype = _unescape(fields[4]), fields[fields.index("-") + 1]
        below = real == point or real.startswith(point.rstrip("/") + "/")
        if below and len(point) >= len(deepest):
            deepest, kind = point, fstype
    return kind


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes (\040 ...)
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)
