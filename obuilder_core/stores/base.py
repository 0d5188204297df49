"""The Store contract: every backend (btrfs, zfs, overlayfs, rsync) implements this protocol.

A store keeps one directory ("step dir") per completed step, named by the step id. A step dir
holds `rootfs/` (the container's root), `log` (the step's raw output) and, for base images,
the image config. Stores are safe to use from several threads and several processes at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from obuilder_core.errors import ObuilderError


class StoreError(ObuilderError):
    """A store operation failed (bad store spec, missing tool, full disk, ...)."""


class CacheBusy(StoreError):
    """`delete_cache` was asked to delete a cache that is in use."""


@dataclass(frozen=True)
class CacheLease:
    """A writable clone of a cache's latest version, handed out by `Store.cache`.

    `release()` must be called exactly once, whether the command using the cache succeeded or
    not: the first of several overlapping users to release becomes the new latest version; the
    clones of the others are discarded.
    """

    path: Path
    release: Callable[[], None]


class Store(Protocol):
    """A content store of step snapshots."""

    kind: str
    """The backend's name: "btrfs", "zfs", "overlayfs" or "rsync"."""

    independent_clones: bool
    """True if a step built from another does not depend on it once committed (btrfs,
    rsync): `build` may then clone any committed step, not only the step's parent (an
    incremental copy clones the previous result of the same copy). A backend that does not
    say is taken to be False."""

    def build(self, id: str, parent: str | None, fn: Callable[[Path], None]) -> Path:
        """Run `fn(tmpdir)` and commit `tmpdir` atomically as step `id`; return its result path.

        `tmpdir` starts as a writable clone of step `parent` (or empty when `parent` is None).
        Only if `fn` returns normally is the step committed; if it raises (error, cancellation)
        nothing is left behind and the exception propagates. The caller guarantees that `id`
        does not exist yet and that no other build of `id` runs at the same time.
        """
        ...

    def result(self, id: str) -> Path | None:
        """Where committed step `id`'s own files are (its `log`, a base image's config), or
        None if it is not committed. A pure query: it mounts nothing, holds nothing. Its
        `rootfs/` may be only the step's own changes (overlayfs): read files through `view`.
        """
        ...

    def view(self, id: str) -> AbstractContextManager[Path]:
        """`with store.view(id) as step_dir:` the step dir with the step's whole `rootfs/`,
        for as long as the block runs (overlayfs mounts it for the block). StoreError if
        the step is not committed."""
        ...

    def ids(self) -> list[str]:
        """The ids of all committed steps (used to reconcile the index after a crash)."""
        ...

    def delete(self, id: str) -> None:
        """Remove step `id` if it exists (a no-op otherwise)."""
        ...

    def df(self) -> float:
        """Free space of the store's filesystem, in percent (0-100)."""
        ...

    def state_dir(self) -> Path:
        """A directory for mutable state that lives with the store (index, sandbox, images)."""
        ...

    def cache(self, name: str, user: tuple[int, int]) -> CacheLease:
        """A writable clone of cache `name`, created empty and owned by `user` if missing."""
        ...

    def delete_cache(self, name: str) -> None:
        """Delete cache `name`; raises CacheBusy if a backend cannot while it is in use."""
        ...

    def sweep(self) -> None:
        """Remove what dead processes left (temporaries of builds and caches, their mounts),
        never what a live process uses. `open_store` calls it unless told not to: a builder
        first removes the dead processes' containers, which may still use those temporaries.
        """
        ...

    def watch(self) -> None:
        """Watch, until `close()`, for a backend that stops answering (zfs-fuse): rather than
        hang for ever, the process then ends with a one-line error. For long-lived users (the
        CLI, the pytest plugin); a no-op where nothing can hang."""
        ...

    def close(self) -> None:
        """Stop what `watch` started; the store is not used afterwards."""
        ...


@contextlib.contextmanager
def step_dir_view(step_dir: Path | None, id: str) -> Iterator[Path]:
    """`Store.view` for a store whose step dir already holds the whole rootfs (nothing to
    mount): `step_dir` is `store.result(id)`, None when the step is not committed."""
    if step_dir is None:
        raise StoreError(f"step {id!r} not found in the store")
    yield step_dir
