"""The stat cache: file digests kept in sqlite and keyed by the file's identity and times, so
that an unchanged file is never read twice (by a copy's manifest, or by the determinism
checker's tree comparison)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from obuilder_core.errors import ObuilderError

#: A file changed this recently is hashed but not cached: its timestamps may not yet differ
#: from those of a later write in the same clock tick (git's "racily clean" problem).
RACY_WINDOW_NS = 2_000_000_000


class FileStat(Protocol):
    """What the cache keys a digest by: an `os.stat_result` has it, so does a tree comparison's
    record of a path."""

    @property
    def st_dev(self) -> int: ...
    @property
    def st_ino(self) -> int: ...
    @property
    def st_size(self) -> int: ...
    @property
    def st_mtime_ns(self) -> int: ...
    @property
    def st_ctime_ns(self) -> int: ...


_BATCH = 500  # inodes per query, well under sqlite's parameter limit
_MEMO_LIMIT = 250_000  # rows kept in memory (~50 MB); past it the memo starts again


_SCHEMA = """
CREATE TABLE IF NOT EXISTS digests (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, algorithm TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (dev, ino, algorithm)
) WITHOUT ROWID
"""


class StatCache:
    """File digests keyed by (dev, inode, size, mtime_ns, ctime_ns), persisted in sqlite.

    A hit means the file was not re-read. Any write to a file changes its ctime, so a changed
    file always misses; files changed within `racy_window_ns` of being hashed are not recorded.
    One row per (dev, inode, algorithm) keeps the table as small as the trees it has seen.
    Safe for concurrent processes (sqlite WAL, busy timeout) and threads (one lock).

    Rows read or recorded are also kept in memory, checked the same way, so that a process
    building many specs (a pytest session) looks up a tree's 5,000 files in a dict, not in
    sqlite (about 3 µs a row). An entry another process has since replaced only misses: the
    times it was recorded with no longer match, and sqlite is asked.
    """

    def __init__(self, path: Path, *, racy_window_ns: int = RACY_WINDOW_NS) -> None:
        self.path = Path(path)
        self.racy_window_ns = racy_window_ns
        self._lock = threading.Lock()
        self._pending: list[tuple[int, int, str, int, int, int, str]] = []
        # By algorithm, then (dev, ino): (size, mtime_ns, ctime_ns, digest).
        self._memo: dict[str, dict[tuple[int, int], tuple[int, int, int, str]]] = {}
        self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        # Switching to WAL and creating the table take locks that sqlite's busy handler does
        # not always wait for when several processes open a new database at once: retry.
        deadline = time.monotonic() + 30
        while True:
            try:
                db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            except sqlite3.Error as e:
                raise ObuilderError(f"Can't open stat cache {self.path}: {e}") from None
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(_SCHEMA)
                db.commit()
                return db
            except sqlite3.OperationalError as e:
                db.close()
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise ObuilderError(f"Can't open stat cache {self.path}: {e}") from None
                time.sleep(0.01)
            except sqlite3.Error as e:
                db.close()
                raise ObuilderError(f"Can't open stat cache {self.path}: {e}") from None

    def get_many(self, stats: Sequence[FileStat], algorithm: str) -> dict[tuple[int, int], str]:
        """Recorded digests of the files with these lstat results, by (dev, inode).

        Files whose size, mtime or ctime differ from the record are left out (misses).
        """
        want = {(st.st_dev, st.st_ino): (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                for st in stats}  # fmt: skip
        found: dict[tuple[int, int], str] = {}
        by_dev: dict[int, list[int]] = {}
        with self._lock:
            memo = self._memo.get(algorithm, {})
            for key, stamp in want.items():
                known = memo.get(key)
                if known is not None and known[:3] == stamp:
                    found[key] = known[3]
                else:
                    by_dev.setdefault(key[0], []).append(key[1])
        rows = [
            row
            for dev, inos in by_dev.items()
            for i in range(0, len(inos), _BATCH)
            for row in self._select(dev, inos[i : i + _BATCH], algorithm)
        ]
        for dev, ino, size, mtime_ns, ctime_ns, digest in rows:
            if want[(dev, ino)] == (size, mtime_ns, ctime_ns):
                found[(dev, ino)] = digest
        self._remember(algorithm, rows)
        return found

    def _remember(self, algorithm: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Keep rows (dev, ino, size, mtime_ns, ctime_ns, digest) of `algorithm` in memory."""
        with self._lock:
            if sum(map(len, self._memo.values())) > _MEMO_LIMIT:
                self._memo.clear()
            self._memo.setdefault(algorithm, {}).update(
                ((dev, ino), (size, mtime_ns, ctime_ns, digest))
                for dev, ino, size, mtime_ns, ctime_ns, digest in rows
            )

    def _select(self, dev: int, inos: list[int], algorithm: str) -> list[tuple[Any, ...]]:
        marks = ",".join("?" * len(inos))
        with self._lock:
            try:
                return self._db.execute(
                    "SELECT dev, ino, size, mtime_ns, ctime_ns, digest FROM digests"
                    f" WHERE dev = ? AND algorithm = ? AND ino IN ({marks})",
                    (dev, algorithm, *inos),
                ).fetchall()
            except sqlite3.Error as e:
                raise ObuilderError(f"Can't read stat cache {self.path}: {e}") from None

    def put(self, st: FileStat, algorithm: str, digest: str) -> None:
        """Record `digest` for the file with this stat result (written by `flush`)."""
        self.put_many([(st, digest)], algorithm)

    def put_many(self, items: Iterable[tuple[FileStat, str]], algorithm: str) -> None:
        """`put` for each (stat result, digest), with one clock reading and one lock (a tree
        comparison records thousands)."""
        oldest = time.time_ns() - self.racy_window_ns
        rows = [
            (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)
            for st, digest in items
            if max(st.st_mtime_ns, st.st_ctime_ns) <= oldest
        ]
        with self._lock:
            self._pending += [(dev, ino, algorithm, size, mtime_ns, ctime_ns, digest)
                              for dev, ino, size, mtime_ns, ctime_ns, digest in rows]  # fmt: skip
        self._remember(algorithm, rows)

    def flush(self) -> None:
        """Write recorded digests in one transaction."""
        with self._lock:
            rows, self._pending = self._pending, []
            if not rows:
                return
            try:
                with self._db:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)", rows
                    )
            except sqlite3.Error as e:
                raise ObuilderError(f"Can't write stat cache {self.path}: {e}") from None

    def close(self) -> None:
        """Flush and close the database."""
        self.flush()
        with self._lock:
            self._db.close()

    def __enter__(self) -> StatCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
