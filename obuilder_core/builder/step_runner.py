"""Getting one step done: replay it from the store, or build it once for every client of
every process that asks for it at the same time, then commit and index it.

The single-flight has two parts: `Flights` shares one execution between the threads of this
process, `StepLocks` between processes (see their invariants). A step's `Plan` says what
executing it writes into its temporary dir (`fill`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obuilder_core.builder.client import Client
from obuilder_core.builder.explain import why_missed
from obuilder_core.builder.flights import FlightCancelled, Flights
from obuilder_core.builder.incremental import Edit, plan_edit
from obuilder_core.builder.plans import CopyPlan, Plan, RunPlan
from obuilder_core.builder.remote_steps import RemoteSteps
from obuilder_core.builder.result import StepRecord
from obuilder_core.builder.step_lock import CANCELLED, Execute, Outcome, StepLocks
from obuilder_core.builder.steps import copy_files, run_command
from obuilder_core.errors import ObuilderError
from obuilder_core.index import Index
from obuilder_core.log import Emit, LogCancelled, Progress, SharedLog, replay
from obuilder_core.sandbox import Sandbox, StepFailed
from obuilder_core.spec.reader import ocaml_string
from obuilder_core.stores import Store, StoreError
from obuilder_core.stores.disk import is_full

if TYPE_CHECKING:
    import pluggy

logger = logging.getLogger(__name__)

Fill = Callable[[Path, Emit, threading.Event], None]
"""Writes a step's files into its temporary dir (`tmp/rootfs`), its output with the Emit."""


class StepRunner:
    """Gets steps done on one store with one sandbox, shared between concurrent builds."""

    def __init__(
        self,
        store: Store,
        sandbox: Sandbox,
        index: Index,
        events: pluggy.HookRelay,
        remote: RemoteSteps | None = None,
    ) -> None:
        self.remote = remote or RemoteSteps(store, index)
        self.store = store
        self.sandbox = sandbox
        self.index = index
        self._events = events
        self._locks = StepLocks(store.state_dir() / "steps")
        self._locks.sweep()  # what dead processes left
        self._flights: Flights[SharedLog, Outcome] = Flights("step", SharedLog.close)
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def store(self) -> Store:
        return self._store

    @store.setter
    def store(self, store: Store) -> None:
        self._store = self.remote.store = store

    def stop(self, grace: float) -> None:
        """Stop the steps still running for clients that left (cancelled) and wait until
        they are gone, at most `grace` seconds."""
        self._flights.stop_all()
        if not self._flights.wait_idle(grace):
            logger.warning("steps still stopping after %ss: %s", grace, self.in_progress())

    def stats(self) -> tuple[int, int]:
        """(cache hits, misses) of the steps requested so far."""
        with self._lock:
            return self._hits, self._misses

    def in_progress(self) -> list[str]:
        """The step ids being built or waited for right now."""
        return self._flights.keys()

    def get(
        self,
        id: str,
        parent: str | None,
        client: Client,
        held: contextlib.ExitStack,
        *,
        fresh: bool,
        plan: Plan | None = None,
        fill: Fill | None = None,
        material: dict[str, Any] | None = None,
    ) -> None:
        """Get step `id` from the cache or build it (with `plan`, or `fill` for a base
        image); raise StepFailure if it fails. `material`: the step's key (`keys.material`),
        to say why it missed; a dry-run client (`Builder.explain`) stops there."""
        started = time.monotonic()
        if client.cancel.is_set():
            raise client.fail("Cancelled at user's request")
        # Protect first, then look: a prune running now cannot remove what we then find.
        held.enter_context(self.index.protect([id] if parent is None else [id, parent]))
        saved = None if fresh else self.saved_log(id)
        why = None
        if material is not None and client.spec_name is not None and not fresh:
            why = self._remember(id, material, client, explain=saved is None)
        if client.dry_run:
            client.steps.append(self._looked_at(id, parent, saved, plan, client, why))
            return
        if why is not None:
            client.event("note", f"---> miss: {why}")
        if saved is not None:
            self._touch(id)
            if parent is None:  # a base image: its log says how it was unpacked, long ago
                client.event("note", "using the base image from the cache")
            else:
                replay(saved, client.write)
            outcome = Outcome("cached")
        else:
            assert fill is not None or plan is not None
            edit = None
            if isinstance(plan, CopyPlan) and parent is not None and not fresh:
                edit = self._edit(plan, parent, held)
            fill = fill or self.fill(plan, progress=client.progress, edit=edit)  # type: ignore[arg-type]
            family = plan.family if isinstance(plan, CopyPlan) and not fresh else None
            onto: list[str] = []
            execute = self._executor(
                id, parent, fill, remote=not fresh, edit=edit, family=family, built_onto=onto
            )
            outcome = self._once(id, execute, client)
            if onto:  # said after the fact: the step may have come from another client or cache
                base = ocaml_string(onto[0])
                client.event("note", f"---> copied onto {base}, the last result of this copy")
            if outcome.kind == "saved" and self.remote.pulled_from(id):
                outcome = Outcome("pulled", self.remote.pulled_from(id) or "")
        with self._lock:
            if outcome.kind in ("cached", "pulled"):
                self._hits += 1
            else:
                self._misses += 1
        if outcome.kind in ("failed", "cancelled"):
            raise client.fail(outcome.message, outcome.log_path)
        if outcome.kind == "cached":
            client.event("note", f"---> using {ocaml_string(id)} from cache")
        elif outcome.kind == "pulled":
            client.event("note", f"---> using {ocaml_string(id)} from {outcome.message}")
        else:
            client.event("note", f"---> saved as {ocaml_string(id)}")
        record = StepRecord(
            id=id,
            heading=client.heading,
            cached=outcome.kind in ("cached", "pulled"),
            duration=time.monotonic() - started,
            log_path=self.result(id) / "log",
            parent=parent,
            plan=plan,
            pos=client.pos,
            stage=client.stage,
            pulled_from=outcome.message if outcome.kind == "pulled" else None,
            miss_reason=why,
        )
        client.steps.append(record)
        if not fresh and (pushing := self.remote.push(id, parent)) is not None:
            client.pushes.append(pushing)
        self._events.obuilder_step_finished(step=record)

    @staticmethod
    def _looked_at(
        id: str,
        parent: str | None,
        saved: Path | None,
        plan: Plan | None,
        client: Client,
        why: str | None,
    ) -> StepRecord:
        """A dry run's record of a step: cached (`saved`: its log) or not, and why not."""
        cached = saved is not None
        return StepRecord(
            id, client.heading, cached, 0.0, saved, parent, plan, client.pos, client.stage,
            miss_reason=why,
        )  # fmt: skip

    def _remember(
        self, id: str, material: dict[str, Any], client: Client, *, explain: bool
    ) -> str | None:
        """Why step `id` missed (if `explain`), from the key this spec step had last time;
        then, unless a dry run, remember this key for the next build's explanation."""
        assert client.spec_name is not None
        position = len(client.steps)
        why = None
        try:
            if explain:
                last = self.index.last_key(client.spec_name, position)
                last_id = last[0] if last else None
                why = why_missed(
                    json.loads(last[1]) if last else None,
                    material,
                    same_id=last_id == id,
                    step_of=client.step_number,
                )
            else:
                last_id = self.index.last_key_id(client.spec_name, position)
            if not client.dry_run and last_id != id:
                self.index.record_key(client.spec_name, position, id, json.dumps(material))
        except StoreError as e:  # a full disk must not fail the build for an explanation
            logger.warning("cannot record the key of step %s: %s", id, e)
        return why

    def _once(self, id: str, execute: Execute, client: Client) -> Outcome:
        """Build step `id` once for every client of every process that asks for it now,
        sending the whole output to this client (the single-flight: flights.py, step_lock.py)."""

        def flight(log: SharedLog, stop: threading.Event) -> Outcome:
            try:
                return self._locks.run(id, execute, log, stop, lambda: self.has(id))
            except (OSError, ObuilderError) as e:
                return Outcome("failed", f"step {id}: {e}")
            finally:
                log.finish()

        def waiting() -> None:
            client.event("note", "Waiting for previous build to finish cancelling")

        try:
            with self._flights.join(
                id, SharedLog, flight, on_wait=waiting, cancel=client.cancel
            ) as joined:
                joined.state.follow(client.write, client.cancel)
                outcome = joined.wait(client.cancel)
        except (FlightCancelled, LogCancelled):
            return CANCELLED
        if outcome.kind == "cached":  # committed by another process just before we asked
            saved = self.saved_log(id)
            if saved is not None:
                replay(saved, client.write)
        return outcome

    def _touch(self, id: str) -> None:
        """Mark step `id` used (for LRU pruning); a full disk must not fail a cache hit."""
        try:
            self.index.touch(id)
        except StoreError as e:
            logger.warning("cannot record the use of step %s: %s", id, e)

    def _touch_caches(self, names: list[str]) -> None:
        """Record the use of caches `names` (for LRU pruning by `prune` and `gc`)."""
        for name in names:
            try:
                self.index.touch_cache(name)
            except StoreError as e:
                logger.warning("cannot record the use of cache %r: %s", name, e)

    def has(self, id: str) -> bool:
        return self.store.result(id) is not None

    def _edit(self, plan: CopyPlan, parent: str, held: contextlib.ExitStack) -> Edit | None:
        """How to build copy `plan` from the previous result of its family, or None (a full
        copy: see builder/incremental.py for when)."""
        # getattr: a third-party backend may not say; it is then taken to be False.
        if plan.family is None or not getattr(self.store, "independent_clones", False):
            return None
        try:
            base = self.index.last_copy(plan.family)
            if base is None:
                return None
            held.enter_context(self.index.protect([base]))  # pruning must not take it now
            base_dir = self.store.result(base)
            if base_dir is None:
                return None
            with self.store.view(parent) as parent_dir:
                rootfs = parent_dir / "rootfs"
                return plan_edit(base, base_dir, rootfs, plan.items, plan.dst, plan.shape)
        except (OSError, ObuilderError) as e:  # never fail a build for a shortcut
            logger.warning("copying in full (cannot start from the previous copy): %s", e)
            return None

    def _executor(
        self,
        id: str,
        parent: str | None,
        fill: Fill,
        *,
        remote: bool,
        edit: Edit | None = None,
        family: str | None = None,
        built_onto: list[str] | None = None,
    ) -> Execute:
        """Execute the step (or pull it from a `--cache-from` cache, if `remote`) and index it.
        The build starts from a clone of `edit.base`, if given, else of `parent` (and then
        appends `edit.base` to `built_onto`); a copy of `family` built here is remembered as
        the family's latest."""

        def execute(write: Emit, cancel: threading.Event) -> None:
            built = False
            if not (remote and self.remote.pull(id, parent, write)):
                self._build(id, edit.base if edit else parent, fill, write, cancel)
                built = True
                if edit is not None and built_onto is not None:
                    built_onto.append(edit.base)
            try:
                self.index.add(id, parent)
                if built and family is not None:
                    self.index.record_copy(family, id)
            except StoreError as e:  # the step is committed; reconcile indexes it at next open
                logger.warning("step %s saved, but not indexed yet: %s", id, e)

        return execute

    def _build(
        self, id: str, clone: str | None, fill: Fill, write: Emit, cancel: threading.Event
    ) -> None:
        """Execute the step's `fill` in a temporary clone of step `clone` and commit it."""

        def in_tmp(tmp: Path) -> None:
            self.remote.built_here(tmp)
            with open(tmp / "log", "wb") as saved:

                def tee(data: bytes) -> None:
                    saved.write(data)
                    saved.flush()
                    write(data)

                fill(tmp, tee, cancel)

        try:
            self.store.build(id, clone, in_tmp)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            raise StoreError(f"no space left on device: {self._full()}") from None
        except StepFailed as e:
            if e.reason is None and is_full(self.store.state_dir()):
                # e.g. `dd` inside the step filled the disk and exited 1
                reason = f"no space left on device ({self._full()})"
                raise StepFailed(e.argv, status=e.status, signum=e.signum, reason=reason) from None
            raise

    def fill(
        self,
        plan: Plan,
        sandbox: Sandbox | None = None,
        progress: Progress | None = None,
        edit: Edit | None = None,
    ) -> Fill:
        """What executing `plan` writes into a step's temporary dir (with `sandbox`, default
        the runner's, for its commands); `progress` gets the bytes a copy has sent so far;
        `edit`: the copy starts from the previous result of its family."""
        runner = sandbox or self.sandbox
        if isinstance(plan, RunPlan):

            def fill(tmp: Path, write: Emit, cancel: threading.Event) -> None:
                self._touch_caches([c.id for c in plan.caches])
                run_command(
                    tmp,
                    plan.config,
                    plan.caches,
                    plan.secrets,
                    store=self.store,
                    sandbox=runner,
                    write=write,
                    cancel=cancel,
                )

            return fill

        def copy(tmp: Path, write: Emit, cancel: threading.Event) -> None:
            with self._copy_source(plan) as src_dir:
                copy_files(
                    tmp,
                    src_dir,
                    plan.items,
                    plan.dst,
                    plan.shape,
                    plan.user,
                    sandbox=runner,
                    write=write,
                    cancel=cancel,
                    limits=plan.limits,
                    progress=progress,
                    edit=edit,
                )

        return copy

    @contextlib.contextmanager
    def _copy_source(self, plan: CopyPlan) -> Iterator[Path]:
        """The directory a copy reads: the build context, or a stage's rootfs (a view)."""
        if plan.stage is None:
            assert plan.context is not None
            yield plan.context
            return
        with self.store.view(plan.stage) as step_dir:
            yield step_dir / "rootfs"

    def _full(self) -> str:
        return f"the store's filesystem ({self.store.state_dir().parent}) is full"

    def saved_log(self, id: str) -> Path | None:
        path = self.store.result(id)
        return None if path is None else path / "log"

    def result(self, id: str) -> Path:
        path = self.store.result(id)
        if path is None:
            raise ObuilderError(f"Build result {ocaml_string(id)} not found")
        return path
