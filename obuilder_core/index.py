"""The sqlite index of a store's steps: parent, created/last-used times, size; delete and prune.

The index lives at `store.state_dir()/index.sqlite` in WAL mode, so several processes can open
it at once (each with its own connection; every change is one transaction). It is reconciled
with the store when opened, so it cannot drift after a crash: rows whose result is gone are
dropped and results without a row are added (parent unknown).

Unlike OBuilder's `builds` table (reference §3.2, §7 items 28-29) the number of children is
computed from `parent` rather than kept in a counter that can drift, times are float seconds,
and prune keeps going past protected steps.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from obuilder_core.errors import ObuilderError
from obuilder_core.locks import file_lock
from obuilder_core.stores.base import Store, StoreError
from obuilder_core.stores.disk import du_bytes
from obuilder_core.stores.temps import TempArea

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
  id      TEXT PRIMARY KEY,
  parent  TEXT,             -- NULL for base images and for steps found by reconcile
  created REAL NOT NULL,    -- seconds since the epoch
  used    REAL NOT NULL,    -- last time the step was built or used from the cache
  size    INTEGER           -- apparent size in bytes, NULL if unknown
);
CREATE INDEX IF NOT EXISTS steps_parent ON steps (parent);
CREATE INDEX IF NOT EXISTS steps_used ON steps (used);
CREATE TABLE IF NOT EXISTS caches (
  name    TEXT PRIMARY KEY, -- as written in the spec's (cache (NAME ...))
  used    REAL NOT NULL     -- last time a step mounted it
);
CREATE TABLE IF NOT EXISTS spec_keys (
  spec     TEXT NOT NULL,    -- the spec file, as the build named it
  position INTEGER NOT NULL, -- the step's number in that build (0: the first)
  id       TEXT NOT NULL,    -- the step id the key gave
  material TEXT NOT NULL,    -- the key's value tree, JSON (keys.material; no secret values)
  PRIMARY KEY (spec, position)
);
CREATE TABLE IF NOT EXISTS copy_results (
  family TEXT PRIMARY KEY,   -- a copy's inputs but its files' contents (builder/incremental.py)
  id     TEXT NOT NULL       -- the step most recently built from them
);
"""

_LEAVES = """
SELECT id FROM steps AS s
WHERE used < ? AND NOT EXISTS (SELECT 1 FROM steps AS c WHERE c.parent = s.id)
ORDER BY used, id
"""


@dataclass(frozen=True)
class IndexRow:
    """One step's row of the index."""

    id: str
    parent: str | None
    created: float
    used: float
    size: int | None


class Index:
    """The index of one store. Thread-safe; open one per process (or share it in-process)."""

    def __init__(self, store: Store, *, reconcile: bool = True) -> None:
        self.store = store
        self.path: Path = store.state_dir() / "index.sqlite"
        self._lock = threading.Lock()
        # Switching to WAL and creating the schema take locks that sqlite's busy handler does
        # not always wait for, so processes opening a fresh index at once take turns.
        with file_lock(store.state_dir() / "index.open.lock"):
            try:
                self._db = sqlite3.connect(
                    self.path, timeout=60.0, isolation_level=None, check_same_thread=False
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
            except sqlite3.Error as e:
                raise StoreError(f"cannot open the store index {self.path}: {e}") from None
        self._leases = TempArea(store.state_dir() / "index-leases")
        self._leases.sweep(lambda p: p.unlink(missing_ok=True))
        if reconcile:
            self.reconcile()

    @contextmanager
    def _db_locked(self) -> Iterator[None]:
        """Hold this index's lock; an sqlite error (e.g. a full disk) becomes a one-line
        StoreError naming the index."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as e:
                raise StoreError(f"store index {self.path}: {e}") from None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries ----------------------------------------------------------------------------

    def get(self, id: str) -> IndexRow | None:
        """The record of step `id`, or None."""
        with self._db_locked():
            row = self._db.execute(
                "SELECT id, parent, created, used, size FROM steps WHERE id = ?", (id,)
            ).fetchone()
        return IndexRow(*row) if row else None

    def ids(self) -> list[str]:
        """All indexed step ids, sorted."""
        with self._db_locked():
            return [r[0] for r in self._db.execute("SELECT id FROM steps ORDER BY id")]

    def children(self, id: str) -> list[str]:
        """The steps whose parent is `id`, sorted."""
        with self._db_locked():
            rows = self._db.execute("SELECT id FROM steps WHERE parent = ? ORDER BY id", (id,))
            return [r[0] for r in rows]

    def count(self) -> int:
        """The number of indexed steps."""
        with self._db_locked():
            return int(self._db.execute("SELECT COUNT(*) FROM steps").fetchone()[0])

    @contextmanager
    def protect(self, ids: Iterable[str]) -> Iterator[None]:
        """Keep `ids` from being pruned, by any process, while the block runs.

        For the bases and results of builds in progress. The protection is a file held under
        flock, so it ends when the block exits or the process dies. Enter it *before* checking
        that a step still exists: a prune that started earlier may remove it in between.
        """
        lease = self._leases.claim()
        try:
            lease.path.write_text("".join(f"{id}\n" for id in ids))
            yield
        finally:
            lease.path.unlink(missing_ok=True)
            lease.release()

    def protected(self) -> set[str]:
        """The ids protected right now by live `protect` blocks of any process."""
        ids: set[str] = set()
        for path in self._leases.live():
            try:
                ids.update(path.read_text().split())
            except FileNotFoundError:
                continue  # released while we looked
        return ids

    # -- changes ----------------------------------------------------------------------------

    def add(self, id: str, parent: str | None, size: int | None = None) -> None:
        """Record committed step `id` (built on `parent`), used now.

        `size` is the step dir's size in bytes, if the caller knows it; otherwise it is left
        unknown until `measure_missing` (for `obuilder df`): measuring is a full walk of the
        rootfs, 30-80 ms for 5,000 files, too much for every step's path. Adding an id again
        (e.g. one that `reconcile` found first) keeps its creation time and fills in a missing
        parent.
        """
        now = time.time()
        with self._db_locked():
            self._db.execute(
                "INSERT INTO steps (id, parent, created, used, size) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET parent = coalesce(excluded.parent, parent), "
                "used = excluded.used, size = coalesce(excluded.size, size)",
                (id, parent, now, now, size),
            )

    def measure_missing(self) -> None:
        """Measure and record the size of every step whose size is unknown (added without
        one, or found by `reconcile`); each is measured once."""
        with self._db_locked():
            ids = [r[0] for r in self._db.execute("SELECT id FROM steps WHERE size IS NULL")]
        for id in ids:
            self._measure(id)

    def _measure(self, id: str) -> None:
        path = self.store.result(id)
        if path is None:
            return  # deleted meanwhile
        try:
            size = du_bytes(path)
            with self._db_locked():
                self._db.execute("UPDATE steps SET size = ? WHERE id = ?", (size, id))
        except (OSError, ObuilderError) as e:  # e.g. deleted while measured: size unknown
            log.debug("cannot measure the size of step %s: %s", id, e)

    def touch(self, id: str, when: float | None = None) -> None:
        """Mark step `id` as used at `when` (default now): prune removes least recently used."""
        with self._db_locked():
            self._db.execute(
                "UPDATE steps SET used = ? WHERE id = ?",
                (time.time() if when is None else when, id),
            )

    def delete(self, id: str) -> list[str]:
        """Remove step `id` and all its descendants, children first; return the removed ids.

        Each step leaves the index and then the store, so a crash in between leaves a result
        without a row, which the next `reconcile` picks up again.
        """
        with self._db_locked():
            rows = self._db.execute(
                "WITH RECURSIVE d(id, depth) AS (SELECT ?, 0 UNION "
                "SELECT s.id, d.depth + 1 FROM steps s JOIN d ON s.parent = d.id) "
                "SELECT id, max(depth) FROM d GROUP BY id ORDER BY max(depth) DESC, id",
                (id,),
            ).fetchall()
        removed = []
        for step, _ in rows:
            with self._db_locked():
                self._db.execute("DELETE FROM steps WHERE id = ?", (step,))
            self.store.delete(step)
            removed.append(step)
        return removed

    def prune(self, before: float, limit: int, protected: Iterable[str] = ()) -> list[str]:
        """Remove up to `limit` least recently used leaves used before `before`; return them.

        A step with children is never removed (its children may be, first, within the same
        call), nor one in `protected` or under a live `protect` block of any process (the
        bases and results of builds in progress): those are skipped and pruning carries on
        with the next candidates.
        """
        keep = set(protected)
        removed: list[str] = []
        while len(removed) < limit:
            victim = self._claim_leaf(before, keep)
            if victim is None:
                break
            self.store.delete(victim)
            removed.append(victim)
        return removed

    def _claim_leaf(self, before: float, keep: set[str]) -> str | None:
        """Delete from the index, in one transaction, the oldest unprotected leaf; return it."""
        with self._db_locked():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # Read inside the write transaction: a lease taken after this is followed by its
                # owner's existence check, which then sees the step gone.
                leased = self.protected()
                for (id,) in self._db.execute(_LEAVES, (before,)):
                    if id not in keep and id not in leased:
                        self._db.execute("DELETE FROM steps WHERE id = ?", (id,))
                        self._db.execute("COMMIT")
                        return str(id)
                self._db.execute("COMMIT")
                return None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def gc(self, keep_free_pct: float, protected: Iterable[str] = ()) -> list[str]:
        """Prune least recently used leaves until at least `keep_free_pct`% of the store is free.

        Stops early when nothing more may be removed; returns the removed ids.
        """
        keep = set(protected)
        removed: list[str] = []
        while self.store.df() < keep_free_pct:
            step = self.prune(float("inf"), 1, keep)
            if not step:
                break
            removed += step
        return removed

    # -- caches ------------------------------------------------------------------------------

    def touch_cache(self, name: str) -> None:
        """Record that cache `name` is being used now."""
        with self._db_locked():
            self._db.execute(
                "INSERT INTO caches (name, used) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET used = excluded.used",
                (name, time.time()),
            )

    def caches(self) -> list[tuple[str, float]]:
        """The caches used so far and when last, least recently used first."""
        with self._db_locked():
            return list(self._db.execute("SELECT name, used FROM caches ORDER BY used, name"))

    def forget_cache(self, name: str) -> None:
        """Drop cache `name`'s row (after the store deleted the cache)."""
        with self._db_locked():
            self._db.execute("DELETE FROM caches WHERE name = ?", (name,))

    def last_key(self, spec: str, position: int) -> tuple[str, str] | None:
        """(id, material JSON) of step `position` the last time `spec` was built, or None."""
        with self._db_locked():
            row = self._db.execute(
                "SELECT id, material FROM spec_keys WHERE spec = ? AND position = ?",
                (spec, position),
            ).fetchone()
        return (row[0], row[1]) if row else None

    def last_key_id(self, spec: str, position: int) -> str | None:
        """Just the id of `last_key` (cheap: no material is read)."""
        with self._db_locked():
            row = self._db.execute(
                "SELECT id FROM spec_keys WHERE spec = ? AND position = ?", (spec, position)
            ).fetchone()
        return row[0] if row else None

    def record_key(self, spec: str, position: int, id: str, material: str) -> None:
        """Remember the key of step `position` of this build of `spec` (for `last_key`)."""
        with self._db_locked():
            self._db.execute(
                "INSERT INTO spec_keys (spec, position, id, material) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (spec, position) DO UPDATE SET id = excluded.id,"
                " material = excluded.material",
                (spec, position, id, material),
            )

    def last_copy(self, family: str) -> str | None:
        """The step most recently built by a copy of `family` (`record_copy`), or None."""
        with self._db_locked():
            row = self._db.execute(
                "SELECT id FROM copy_results WHERE family = ?", (family,)
            ).fetchone()
        return row[0] if row else None

    def record_copy(self, family: str, id: str) -> None:
        """Remember that step `id` was just built by a copy of `family`."""
        with self._db_locked():
            self._db.execute(
                "INSERT INTO copy_results (family, id) VALUES (?, ?) "
                "ON CONFLICT (family) DO UPDATE SET id = excluded.id",
                (family, id),
            )

    def reconcile(self) -> tuple[list[str], list[str]]:
        """Make the index match the store; return (rows dropped, results added).

        Results found without a row get parent NULL and their step dir's mtime as times, so
        they are pruned as old steps.
        """
        on_disk = set(self.store.ids())
        with self._db_locked():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = {r[0] for r in self._db.execute("SELECT id FROM steps")}
                # Re-check: another process may have committed a step since we listed the store.
                dropped = [i for i in sorted(rows - on_disk) if self.store.result(i) is None]
                added = sorted(on_disk - rows)
                for id in dropped:
                    self._db.execute("DELETE FROM steps WHERE id = ?", (id,))
                for id in added:
                    mtime = _mtime(self.store.result(id))
                    self._db.execute(
                        "INSERT OR IGNORE INTO steps (id, parent, created, used, size) "
                        "VALUES (?, NULL, ?, ?, NULL)",
                        (id, mtime, mtime),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return dropped, added


def _mtime(path: Path | None) -> float:
    try:
        return path.stat().st_mtime if path is not None else time.time()
    except OSError:
        return time.time()
