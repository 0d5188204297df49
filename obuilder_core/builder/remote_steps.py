"""Steps from and to remote caches (`--cache-from`, `--cache-to`), for the step runner.

On a local miss the runner asks `pull`, inside the step's single-flight (so every client and
process asking for the step shares one pull): each `--cache-from` cache in turn, until one has
a verified entry, which is applied on a clone of the parent inside `Store.build` (nothing is
committed if applying fails). Every step a build gets (built, pulled or found) is pushed to the
`--cache-to` cache in the background as it finishes; `Builder.build` waits for its own pushes
before returning, so a build is slowed by no more than its uploads. A remote cache that fails is
a warning; the step is then built locally, or stays unpushed.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from obuilder_core.errors import ObuilderError
from obuilder_core.index import Index
from obuilder_core.log import Emit, replay
from obuilder_core.remote.base import Pulled, RemoteCache, RemoteError, RemoteUnreachable
from obuilder_core.stores import Store

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

logger = logging.getLogger(__name__)

PUSH_THREADS = 2
PULLED_FROM = "pulled-from"
"""A file in a pulled step's own dir naming the cache it came from (read by every process)."""


@dataclass(frozen=True)
class PushSummary:
    """How a build's pushes went: steps sent, already there, failed."""

    target: str
    sent: int
    present: int
    failed: int

    def line(self) -> str:
        parts = [f"pushed {self.sent} step{'s' if self.sent != 1 else ''} to {self.target}"]
        if self.present:
            parts.append(f"{self.present} already there")
        if self.failed:
            parts.append(f"{self.failed} failed (see the warnings)")
        return ", ".join(parts)


class RemoteSteps:
    """Pulls and pushes step results for one store (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        index: Index,
        cache_from: Sequence[RemoteCache] = (),
        cache_to: RemoteCache | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.cache_from = tuple(cache_from)
        self.cache_to = cache_to
        self._lock = threading.Lock()
        self._pushes: dict[str, Future[bool]] = {}
        self._down: set[str] = set()  # caches that did not answer: not asked again
        self._pool: ThreadPoolExecutor | None = None

    def pull(self, id: str, parent: str | None, write: Emit) -> bool:
        """Commit step `id` from the first `--cache-from` cache that has a good entry, sending
        its log to `write`; False if none has (or every one failed: warned)."""
        for cache in self.cache_from:
            if self._is_down(cache):
                continue
            with self._scratch() as scratch:
                try:
                    pulled = cache.pull(id, parent, scratch)
                    if pulled is None:
                        continue
                    self.store.build(id, parent, _recorded(pulled))
                except RemoteUnreachable as e:
                    self._went_down(cache, e)
                    continue
                except (ObuilderError, OSError) as e:
                    why = _unlabelled(str(e), cache.label)
                    logger.warning("%s: step %s not used: %s; building it", cache.label, id, why)
                    continue
            replay(self.store.result(id) / "log", write)  # type: ignore[operator]
            return True
        return False

    def _is_down(self, cache: RemoteCache) -> bool:
        with self._lock:
            return cache.label in self._down

    def _went_down(self, cache: RemoteCache, e: Exception) -> None:
        """Stop asking `cache` (one warning): a registry that does not answer would cost
        every later step its timeout."""
        with self._lock:
            if cache.label in self._down:
                return
            self._down.add(cache.label)
        why = _unlabelled(str(e), cache.label)
        logger.warning("%s: %s; not used again by this builder", cache.label, why)

    def pulled_from(self, id: str) -> str | None:
        """The cache step `id` was pulled from, if it was (by any process)."""
        step_dir = self.store.result(id)
        marker = step_dir / PULLED_FROM if step_dir is not None else None
        # Not a regular file: overlayfs records the child's removal of it as a whiteout.
        return marker.read_text() if marker is not None and marker.is_file() else None

    @staticmethod
    def built_here(step_dir: Path) -> None:
        """Mark a step's temporary dir as built locally: a clone of a pulled parent carries
        the parent's provenance file, which is not the child's."""
        (step_dir / PULLED_FROM).unlink(missing_ok=True)

    def push(self, id: str, parent: str | None) -> Future[bool] | None:
        """Push committed step `id` in the background (once per process); None without a
        `--cache-to` cache. The future's result: True if sent, False if already there."""
        if self.cache_to is None:
            return None
        from concurrent.futures import Future, ThreadPoolExecutor  # only with --cache-to

        with self._lock:
            future = self._pushes.get(id)
            if future is not None and future.done() and future.exception() is None:
                already: Future[bool] = Future()  # pushed (or found) earlier by this process
                already.set_result(False)
                return already
            if future is None or future.done():  # never asked, or failed: try again
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        PUSH_THREADS, thread_name_prefix="obuilder-push"
                    )
                future = self._pool.submit(self._push_one, self.cache_to, id, parent)
                self._pushes[id] = future
            return future

    def summary(self, pushes: Sequence[Future[bool]]) -> PushSummary | None:
        """Wait for `pushes` (a build's) and say how they went."""
        if self.cache_to is None or not pushes:
            return None
        sent = present = failed = 0
        for future in pushes:
            try:
                if future.result():
                    sent += 1
                else:
                    present += 1
            except RemoteUnreachable as e:
                failed += 1
                self._went_down(self.cache_to, e)
            except (ObuilderError, OSError) as e:
                failed += 1
                why = _unlabelled(str(e), self.cache_to.label)
                logger.warning("%s: %s", self.cache_to.label, why)
        return PushSummary(self.cache_to.label, sent, present, failed)

    def close(self) -> None:
        """Wait for the pushes still running."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _push_one(self, cache: RemoteCache, id: str, parent: str | None) -> bool:
        if self._is_down(cache):
            raise RemoteUnreachable(f"step {id} not pushed: the cache did not answer before")
        with contextlib.ExitStack() as held:
            held.enter_context(self.index.protect([id] if parent is None else [id, parent]))
            files = self.store.result(id)
            if files is None:
                raise RemoteError(f"step {id} is not in the store any more")
            rootfs = held.enter_context(self.store.view(id)) / "rootfs"
            lower = None
            if parent is not None:
                lower = held.enter_context(self.store.view(parent)) / "rootfs"
            scratch = held.enter_context(self._scratch())
            return cache.push(id, parent, files, rootfs, lower, scratch)

    @contextlib.contextmanager
    def _scratch(self) -> Iterator[Path]:
        """A temporary dir on the store's filesystem (downloads are applied from there)."""
        root = self.store.state_dir() / "remote"
        root.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tmp-", dir=root) as tmp:
            yield Path(tmp)


def _unlabelled(message: str, label: str) -> str:
    """`message` without a leading `LABEL: ` (errors of a cache name it; so does the warning)."""
    return message.removeprefix(f"{label}: ").replace(f": {label}: ", ": ")


def _recorded(pulled: Pulled) -> Callable[[Path], None]:
    """`pulled.apply`, then the step's provenance beside its log."""

    def apply(step_dir: Path) -> None:
        pulled.apply(step_dir)
        (step_dir / PULLED_FROM).write_text(pulled.source)

    return apply
