"""`DirStore`: the Store skeleton shared by the rsync and btrfs backends.

A backend subclasses it and supplies `_create_empty`, `_clone`, `_remove` and `df` (and may
override `_commit`); layout, atomic commit, crash cleanup and caches live here once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from obuilder_core.errors import ObuilderError
from obuilder_core.stores.base import CacheLease, StoreError, step_dir_view
from obuilder_core.stores.names import check_step_id, escape_cache_name, is_step_id
from obuilder_core.stores.temps import TempArea, TempClaim, locked_counter, once

log = logging.getLogger(__name__)


class DirStore:
    """The shared skeleton of the directory-based backends (rsync, btrfs).

    Layout under `root`: `result/<id>` (committed steps), `result-tmp/` (a TempArea of builds in
    progress and of results being deleted), `cache/c-<escaped>` (latest version of each cache),
    `cache-tmp/` (a TempArea of cache clones), `cache-meta/c-<escaped>.gen` (each cache's
    generation counter and lock), `state/`. A subclass supplies the filesystem operations:
    `_create_empty`, `_clone`, `_remove`, `df` and, optionally, `_commit`.
    """

    kind = "dir"
    independent_clones = True  # a clone is a copy or a snapshot, never a layer on its source
    # False where a committed step cannot be renamed (read-only btrfs snapshots).
    _rename_results = True

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("result", "cache", "cache-meta", "state"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._result_tmp = TempArea(root / "result-tmp")
        self._cache_tmp = TempArea(root / "cache-tmp")

    def sweep(self) -> None:
        """See `Store.sweep`: live builds of other processes hold their temporaries' locks."""
        self._result_tmp.sweep(self._remove)
        self._cache_tmp.sweep(self._remove)

    # -- operations a backend provides ------------------------------------------------------

    def _create_empty(self, path: Path) -> None:
        """Create an empty writable directory (or subvolume) at `path`."""
        raise NotImplementedError

    def _clone(self, src: Path, dst: Path) -> None:
        """Create `dst` as a writable copy of `src` (`dst` does not exist yet)."""
        raise NotImplementedError

    def _commit(self, tmp: Path, dst: Path, id: str) -> None:
        """Atomically make the finished build `tmp` appear as step dir `dst` (`tmp` may be
        consumed). The default is one rename, which refuses to replace an existing step."""
        commit_rename(tmp, dst, id)

    def _remove(self, path: Path) -> None:
        """Remove whatever is at `path` (any state, including half-built); no-op if absent."""
        raise NotImplementedError

    def df(self) -> float:
        """Free space in percent."""
        raise NotImplementedError

    # -- the Store protocol -----------------------------------------------------------------

    def build(self, id: str, parent: str | None, fn: Callable[[Path], None]) -> Path:
        """See `Store.build`: fn works on a temp clone; committed by one atomic rename."""
        dst = self.root / "result" / check_step_id(id)
        base = None
        if parent is not None:
            base = self.result(parent)
            if base is None:
                raise StoreError(f"parent step {parent} not found in store {self.root}")
        work = self._result_tmp.claim(id)
        try:
            if base is None:
                self._create_empty(work.path)
            else:
                self._clone(base, work.path)
            fn(work.path)
            self._commit(work.path, dst, id)
        finally:
            self._discard(work)
        return dst

    def _discard(self, claim: TempClaim) -> None:
        """Remove a temporary and give up its claim, never masking the exception in flight.

        If removing fails, the claim is released anyway, so the next open sweeps it.
        """
        try:
            self._remove(claim.path)
        except (OSError, ObuilderError) as e:
            log.warning("cannot remove temporary %s (swept at next open): %s", claim.path, e)
        finally:
            claim.release()

    def result(self, id: str) -> Path | None:
        """See `Store.result`."""
        path = self.root / "result" / check_step_id(id)
        return path if path.is_dir() else None

    def ids(self) -> list[str]:
        """See `Store.ids`."""
        entries = (self.root / "result").iterdir()
        return sorted(e.name for e in entries if is_step_id(e.name))

    def delete(self, id: str) -> None:
        """See `Store.delete`: the step disappears at once (renamed away), then is removed."""
        src = self.root / "result" / check_step_id(id)
        if not self._rename_results:
            self._remove(src)
            return
        trash = self._result_tmp.claim(id)
        try:
            os.rename(src, trash.path)
        except FileNotFoundError:
            pass  # not there: deleting a missing step is a no-op
        finally:
            self._discard(trash)

    def state_dir(self) -> Path:
        """See `Store.state_dir`."""
        return self.root / "state"

    def cache(self, name: str, user: tuple[int, int]) -> CacheLease:
        """See `Store.cache`: a clone of `cache/<escaped>`; the generation counter is on disk."""
        esc = escape_cache_name(name)
        main = self.root / "cache" / esc
        clone = self._cache_tmp.claim(esc)
        try:
            with locked_counter(self.root / "cache-meta" / f"{esc}.gen") as gen:
                if not main.exists():
                    self._create_cache(main, user)
                gen0 = gen.get()
                self._clone(main, clone.path)
        except BaseException:
            self._discard(clone)
            raise
        return CacheLease(clone.path, once(lambda: self._release_cache(esc, gen0, clone)))

    def _create_cache(self, main: Path, user: tuple[int, int]) -> None:
        """Create `main` empty and owned by `user`, atomically (built aside, then renamed)."""
        new = self._cache_tmp.claim()
        try:
            self._create_empty(new.path)
            try:
                os.chown(new.path, *user)
            except PermissionError:
                if os.geteuid() == 0:
                    raise
                # Without root we cannot give files away; the cache stays ours (rootless use).
            os.rename(new.path, main)
        finally:
            self._discard(new)

    def _release_cache(self, esc: str, gen0: int, clone: TempClaim) -> None:
        """Commit `clone` as the new version unless someone committed or deleted since gen0."""
        main = self.root / "cache" / esc
        try:
            with locked_counter(self.root / "cache-meta" / f"{esc}.gen") as gen:
                if gen.get() != gen0:
                    return  # a concurrent user released first: it wins, this clone is dropped
                gen.set(gen0 + 1)
                self._replace(main, clone.path)
        finally:
            self._discard(clone)

    def _replace(self, main: Path, new: Path) -> None:
        """Make `new` the directory at `main`: old one renamed away, new renamed in, old removed."""
        old = self._cache_tmp.claim()
        try:
            with contextlib.suppress(FileNotFoundError):
                os.rename(main, old.path)
            os.rename(new, main)
        finally:
            self._discard(old)

    def view(self, id: str) -> AbstractContextManager[Path]:
        """See `Store.view`: the step dir itself (nothing to mount)."""
        return step_dir_view(self.result(id), id)

    def watch(self) -> None:
        """See `Store.watch`: nothing here can hang."""

    def close(self) -> None:
        """See `Store.close`: nothing is held for result paths here."""

    def delete_cache(self, name: str) -> None:
        """See `Store.delete_cache`: never busy; users holding clones will be discarded."""
        esc = escape_cache_name(name)
        old = self._cache_tmp.claim()
        try:
            with locked_counter(self.root / "cache-meta" / f"{esc}.gen") as gen:
                gen.set(gen.get() + 1)
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self.root / "cache" / esc, old.path)
        finally:
            self._discard(old)


def commit_rename(src: Path, dst: Path, id: str) -> None:
    """Rename `src` to `dst` atomically; it refuses to replace an existing (non-empty) step."""
    try:
        os.rename(src, dst)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise StoreError(f"step {id} already exists in the store") from None
        raise
