"""Mount points runc creates inside the rootfs, found before a run and removed after it.

runc creates a missing mount destination (and its missing parents) inside the writable rootfs:
an empty file for a file bind (/etc/hosts, a secret), a directory otherwise. Left there, they
would end up in the step's snapshot. Before the run we resolve each destination the way runc
does (symlinks followed but confined to the rootfs) and record what does not exist yet; after
the run we remove those paths again, deepest first, but only if they are still exactly what
runc made (an empty directory or an empty regular file) and no path component has become a
symlink: nothing outside the rootfs, and nothing the command wrote, is ever touched.

Runs over the same rootfs at the same time share its mount points: removing /etc/hosts
while another run's runc is mounting onto it makes that run fail ("open o_path procfd: ...
no such file or directory"). `InUse` therefore removes a rootfs's mount points only when the
last run over it ends, and plans and removes under one lock so that no run plans while another
removes.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obuilder_core.sandbox.errors import SandboxError

MAX_SYMLINKS = 40


@dataclass(frozen=True)
class MountPoint:
    """A path (components relative to the rootfs) that runc will create for a mount."""

    parts: tuple[str, ...]
    is_dir: bool


@dataclass(frozen=True)
class Parent:
    """An existing directory runc will create a mount point in, as it was before the run."""

    parts: tuple[str, ...]
    atime_ns: int
    mtime_ns: int
    names: frozenset[str]


@dataclass(frozen=True)
class Plan:
    """What `remove` undoes after the run: the created paths and their parents' timestamps."""

    points: tuple[MountPoint, ...]
    parents: tuple[Parent, ...]


def normalise_destination(dst: str) -> str:
    """`dst` made lexically clean (`/a/./b/../c` -> `/a/c`), as written to config.json."""
    return "/" + posixpath.normpath("/" + dst).lstrip("/")


def resolve_in_root(rootfs: Path, dst: str) -> list[str]:
    """The components of `dst` inside `rootfs` with symlinks followed, never leaving `rootfs`.

    Like runc's securejoin: an absolute link target restarts at the rootfs, `..` stops at it,
    and components that do not exist are taken literally.
    """
    pending = [c for c in dst.split("/") if c]
    current: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if current:
                current.pop()
            continue
        try:
            st = os.lstat(rootfs.joinpath(*current, part))
        except (FileNotFoundError, NotADirectoryError):
            current.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            current.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise SandboxError(f"too many levels of symbolic links in {dst} (in {rootfs})")
        target = os.readlink(rootfs.joinpath(*current, part))
        if target.startswith("/"):
            current = []
        pending = [c for c in target.split("/") if c] + pending
    return current


def _missing_prefixes(rootfs: Path, parts: list[str]) -> list[tuple[str, ...]]:
    """The prefixes of `parts` that do not exist yet, shortest first."""
    for i in range(1, len(parts) + 1):
        if not os.path.lexists(rootfs.joinpath(*parts[:i])):
            return [tuple(parts[:j]) for j in range(i, len(parts) + 1)]
    return []


def plan(rootfs: Path, mounts: Iterable[dict[str, Any]]) -> Plan:
    """The paths runc will create in `rootfs` for these config.json mounts.

    A mount nested inside an earlier one (/dev/pts in /dev's tmpfs) is created in that
    filesystem, not in the rootfs, and is skipped.
    """
    created: dict[tuple[str, ...], bool] = {}
    earlier: list[tuple[str, ...]] = []
    for mount in mounts:
        parts = tuple(resolve_in_root(rootfs, mount["destination"]))
        if any(parts[: len(e)] == e for e in earlier):
            continue
        earlier.append(parts)
        file_bind = mount["type"] == "bind" and not os.path.isdir(mount["source"])
        missing = _missing_prefixes(rootfs, list(parts))
        for prefix in missing:
            created.setdefault(prefix, not (file_bind and prefix == parts))
    points = tuple(MountPoint(p, d) for p, d in created.items())
    parents = {p.parts[:-1] for p in points if p.parts[:-1] not in created}
    return Plan(points, tuple(_parent(rootfs, parts) for parts in sorted(parents)))


def _parent(rootfs: Path, parts: tuple[str, ...]) -> Parent:
    path = rootfs.joinpath(*parts)
    st = os.lstat(path)
    return Parent(parts, st.st_atime_ns, st.st_mtime_ns, frozenset(os.listdir(path)))


def _safe_parents(rootfs: Path, parts: tuple[str, ...]) -> bool:
    """True if every parent of `parts` is still a real directory (no symlink) in `rootfs`."""
    for i in range(1, len(parts)):
        try:
            st = os.lstat(rootfs.joinpath(*parts[:i]))
        except OSError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            return False
    return True


def remove(rootfs: Path, plan: Plan) -> None:
    """Remove the mount points of `plan` that are still empty, deepest first.

    Anything that is no longer an empty file or directory (the command wrote to it, or replaced
    it with a symlink) is left alone. A parent directory whose entries are the same as before
    gets its timestamps back, so the snapshot does not even show an mtime change.
    """
    for point in sorted(plan.points, key=lambda p: len(p.parts), reverse=True):
        if not point.parts or not _safe_parents(rootfs, point.parts):
            continue
        path = rootfs.joinpath(*point.parts)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        # ENOTEMPTY/EBUSY mean the command (or a still-mounted filesystem) owns it: keep it.
        with contextlib.suppress(OSError):
            if point.is_dir and stat.S_ISDIR(st.st_mode):
                os.rmdir(path)
            elif not point.is_dir and stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(path)
    for parent in plan.parents:
        _restore_times(rootfs, parent)


def _restore_times(rootfs: Path, parent: Parent) -> None:
    if not _safe_parents(rootfs, (*parent.parts, "")):
        return
    path = rootfs.joinpath(*parent.parts)
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.lstat(path).st_mode) and frozenset(os.listdir(path)) == parent.names:
            os.utime(path, ns=(parent.atime_ns, parent.mtime_ns), follow_symlinks=False)


@dataclass
class _Shared:
    """What the runs in progress over one rootfs will have runc create, merged."""

    runs: int = 0
    points: dict[tuple[str, ...], MountPoint] = field(default_factory=dict)
    parents: dict[tuple[str, ...], Parent] = field(default_factory=dict)

    def add(self, plan: Plan) -> None:
        # The first record of a path wins: it is the state from before any of these runs.
        for point in plan.points:
            self.points.setdefault(point.parts, point)
        for parent in plan.parents:
            self.parents.setdefault(parent.parts, parent)

    def plan(self) -> Plan:
        return Plan(tuple(self.points.values()), tuple(self.parents.values()))


class InUse:
    """The mount points of the runs in progress, per rootfs (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shared: dict[str, _Shared] = {}

    @contextlib.contextmanager
    def run(self, rootfs: Path, mounts: Iterable[dict[str, Any]]) -> Iterator[None]:
        """Hold `rootfs`'s mount points for these config.json mounts during the block."""
        key = os.path.realpath(rootfs)
        with self._lock:
            planned = plan(rootfs, mounts)  # may raise: then nothing is recorded
            shared = self._shared.setdefault(key, _Shared())
            shared.add(planned)
            shared.runs += 1
        try:
            yield
        finally:
            with self._lock:
                shared.runs -= 1
                if shared.runs == 0:
                    del self._shared[key]
                    remove(rootfs, shared.plan())
