"""The builder, the one door: the build loop and the store's maintenance.

The build loop (reference §2.2): child builds, base image, then each op in turn. Every step
(base, run, copy) has an id from its key (`obuilder_core.keys`) and a plan of what it does;
`StepRunner` (step_runner.py) replays it from the store, or builds it once however many clients
(threads or processes) ask for it at the same time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from obuilder_core import keys
from obuilder_core.builder import incremental
from obuilder_core.builder.client import Client, StepFailure
from obuilder_core.builder.context import Context
from obuilder_core.builder.plans import CopyPlan, RunPlan
from obuilder_core.builder.remote_steps import RemoteSteps
from obuilder_core.builder.result import BuildResult, FinalSettings, LogEvent, StepRecord
from obuilder_core.builder.step_runner import StepRunner
from obuilder_core.builder.steps import fetch_base, read_image_config
from obuilder_core.builder.usage import Usage, store_line
from obuilder_core.errors import ObuilderError
from obuilder_core.images import ImageSource, default_sources
from obuilder_core.index import Index
from obuilder_core.keys import BaseKey, CopyKey, run_key, scratch_id
from obuilder_core.log import Emit
from obuilder_core.manifest import DEFAULT_ALGORITHM, generate
from obuilder_core.paths import copy_destination
from obuilder_core.plugins import default_plugins
from obuilder_core.remote.base import RemoteCache
from obuilder_core.sandbox import DEFAULT_LIMITS, Limits, RunConfig, Sandbox, StepFailed
from obuilder_core.secret_key import load_or_create_key, secret_digest
from obuilder_core.spec.model import Copy, FromBuild, Run, Spec, UnixUser
from obuilder_core.spec.printer import heading as op_heading
from obuilder_core.spec.reader import format_atom, ocaml_string
from obuilder_core.stat_cache import StatCache
from obuilder_core.stores import CacheBusy, Store, open_store

if TYPE_CHECKING:
    import pluggy

    from obuilder_core.builder.export import Exported
    from obuilder_core.images import ImageInfo, LocalImages

logger = logging.getLogger(__name__)

CLOSE_GRACE = 30.0
"""Seconds `Builder.close` waits for cancelled steps to stop (their containers to go)."""
HEALTHCHECK_SPEC = '((from busybox) (shell /bin/sh -c) (run (shell "echo healthcheck")))'
HEALTHCHECK_TIMEOUT = 300.0


@dataclass(frozen=True)
class Pruned:
    """What `prune` or `gc` removed: step ids and cache names."""

    steps: tuple[str, ...]
    caches: tuple[str, ...]


class Builder:
    """Builds specs on one store, with one sandbox and one list of image sources.

    Safe to call `build` from many threads at once; steps are shared between concurrent
    builds, also with other processes using the same store.
    """

    def __init__(
        self,
        store: Store,
        sandbox: Sandbox,
        sources: Sequence[ImageSource] | Callable[[], Sequence[ImageSource]],
        *,
        limits: Limits = DEFAULT_LIMITS,
        plugins: pluggy.PluginManager | None = None,
        location: str | None = None,
        cache_from: Sequence[RemoteCache] = (),
        cache_to: RemoteCache | None = None,
    ) -> None:
        """`limits`: what each run and copy step may use unless a build says otherwise;
        `plugins`: whose build events to call (default: `default_plugins()`); `location`:
        the store as the user named it, `KIND:ARG` (default: its kind and root);
        `cache_from`: remote caches to ask on a local miss, in order; `cache_to`: the remote
        cache every step a build gets is pushed to (builder/remote_steps.py); `sources`: where
        base images come from, or how to make that list when a base image is first missing (a
        build whose base is cached needs none of them, nor their modules)."""
        self.location = location or f"{store.kind}:{store.state_dir().parent}"
        self._sources = sources
        self._sources_lock = threading.Lock()
        self.limits = limits
        state = store.state_dir()
        self.index = Index(store)
        self._secret_key = load_or_create_key(state / "secret-key")
        self._stat_cache = StatCache(state / "stat-cache.sqlite")
        remote = RemoteSteps(store, self.index, cache_from, cache_to)
        hook = (plugins or default_plugins()).hook
        self._steps = StepRunner(store, sandbox, self.index, hook, remote)

    # One owner of the store and sandbox: the step runner. Wrapping either (to count or gate
    # executions, as tests do) goes through these setters so that both layers see the wrapper.
    @property
    def store(self) -> Store:
        return self._steps.store

    @store.setter
    def store(self, store: Store) -> None:
        self._steps.store = store

    @property
    def sources(self) -> Sequence[ImageSource]:
        """The image sources, in the order they are asked for a base image."""
        with self._sources_lock:
            if callable(self._sources):
                self._sources = self._sources()
            return self._sources

    @sources.setter
    def sources(self, sources: Sequence[ImageSource]) -> None:
        with self._sources_lock:
            self._sources = sources

    @property
    def sandbox(self) -> Sandbox:
        return self._steps.sandbox

    @sandbox.setter
    def sandbox(self, sandbox: Sandbox) -> None:
        self._steps.sandbox = sandbox

    @classmethod
    def open(
        cls,
        store: str | None = None,
        *,
        fast_sync: bool = False,
        registry_mirror: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
        watch: bool = False,
        cache_from: Sequence[str] = (),
        cache_to: str | None = None,
        insecure_registry: bool = False,
    ) -> Builder:
        """A builder on store `store` (`KIND:ARG`; None: the default store) with runc.

        Without runc the store can still be maintained (delete, clean, df); a run or copy step
        then fails saying runc is missing. `watch`: see `Store.watch` (for the CLI and pytest).
        `cache_from`, `cache_to`: registry caches, `HOST[:PORT]/REPO` (ObuilderError if
        malformed); `insecure_registry`: plain http to them and to image registries.
        """
        pulls, push = _registry_caches(cache_from, cache_to, insecure_registry)
        from obuilder_core.sandbox import SandboxError, UnavailableSandbox, state_dir_for
        from obuilder_core.stores.auto import default_store_spec

        plugins = default_plugins()
        # Containers of dead processes go first, then the temporaries they may still use.
        location = store or default_store_spec()
        opened = open_store(location, sweep=False, plugins=plugins)
        if watch:
            opened.watch()
        state = opened.state_dir()
        sandbox: Sandbox
        try:
            found = plugins.hook.obuilder_sandbox(
                state_dir=state_dir_for(state), fast_sync=fast_sync
            )
            sandbox = found if found is not None else UnavailableSandbox("no sandbox plugin")
        except SandboxError as e:
            sandbox = UnavailableSandbox(str(e))
        opened.sweep()
        return cls(
            opened,
            sandbox,
            functools.partial(
                default_sources,
                state / "images",
                mirror=registry_mirror,
                allow_http=insecure_registry,
                plugins=plugins,
            ),
            limits=limits,
            plugins=plugins,
            location=location,
            cache_from=pulls,
            cache_to=push,
        )

    def close(self) -> None:
        """Stop the steps still running for clients that left (cancelled), wait until they
        are gone (at most CLOSE_GRACE seconds), then release the index, the stat cache and
        what the store holds for result paths."""
        self._steps.stop(CLOSE_GRACE)
        self._steps.remote.close()
        self._stat_cache.close()
        self.index.close()
        self.store.close()

    def __enter__(self) -> Builder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- maintenance ----------------------------------------------------------------------------

    def resolve(self, prefix: str) -> str:
        """The id of the one step in the store whose id starts with `prefix` (as git and
        docker take abbreviated ids); ObuilderError if none does, or several."""
        found = [id for id in self.index.ids() if id.startswith(prefix)]
        if len(found) == 1:
            return found[0]
        if not found:
            raise ObuilderError(f"no step {prefix} in the store")
        raise ObuilderError(f"{prefix} is ambiguous: {len(found)} steps start with it")

    def delete(self, id: str) -> list[str]:
        """Delete step `id` and every step built on it; return the ids removed, deepest first."""
        return self.index.delete(id)

    def prune(self, before: float) -> Pruned:
        """Remove the steps and caches last used before `before` (seconds since the epoch),
        least recently used first; never a step a running build uses, nor a parent."""
        steps = self.index.prune(before, sys.maxsize)
        caches = [n for n, used in self.index.caches() if used < before and self._drop_cache(n)]
        return Pruned(tuple(steps), tuple(caches))

    def gc(self, keep_free_pct: float) -> Pruned:
        """Remove least recently used steps, then caches, until `keep_free_pct`% is free."""
        steps = self.index.gc(keep_free_pct)
        caches = []
        for name, _ in self.index.caches():
            if self.store.df() >= keep_free_pct:
                break
            if self._drop_cache(name):
                caches.append(name)
        return Pruned(tuple(steps), tuple(caches))

    def has(self, id: str) -> bool:
        """Whether step `id` is in the store (or still in its index)."""
        return self.index.get(id) is not None or self._steps.has(id)

    def usage(self) -> Usage:
        """What the store holds: steps, their size, caches, and the free space."""
        self.index.measure_missing()
        rows = [r for r in (self.index.get(i) for i in self.index.ids()) if r is not None]
        return Usage(
            store=self.location,
            kind=self.store.kind,
            steps=len(rows),
            size=sum(r.size or 0 for r in rows),
            caches=len(self.index.caches()),
            free_pct=self.store.df(),
        )

    def describe(self) -> str:
        """One line for a header: `store KIND:ARG (N steps), runc VERSION`. Cheap: neither
        the free space nor the size of the steps (`usage`) is measured."""
        line = store_line(self.location, self.store.kind, self.index.count())
        return f"store {line}, {self.sandbox.describe()}"

    def delete_cache(self, name: str) -> None:
        """Delete cache `name` (a no-op if it does not exist). Raises CacheBusy where a store
        cannot delete a cache in use (zfs)."""
        self.store.delete_cache(name)
        self.index.forget_cache(name)

    def _drop_cache(self, name: str) -> bool:
        try:
            self.delete_cache(name)
        except CacheBusy as e:
            logger.warning("%s: kept", e)
            return False
        return True

    def import_image(self, name: str, source: Path, log: Emit | None = None) -> ImageInfo:
        """Import `source` (an OCI layout or archive, a `docker save` archive, a rootfs
        tarball) as the local image `name` of this store; see `LocalImages.import_`."""
        return self._local_images().import_(name, source, log=log)

    def images(self) -> list[ImageInfo]:
        """The local images of this store, by name."""
        return self._local_images().ls()

    def _local_images(self) -> LocalImages:
        from obuilder_core.images import LocalImages

        return LocalImages(self.store.state_dir() / "images")

    def caches(self) -> list[tuple[str, float]]:
        """The caches steps have used, with when last, least recently used first."""
        return self.index.caches()

    def stats(self) -> tuple[int, int]:
        """(cache hits, misses) of the steps requested since the builder was opened."""
        return self._steps.stats()

    def healthcheck(
        self, timeout: float = HEALTHCHECK_TIMEOUT, cancel: threading.Event | None = None
    ) -> str | None:
        """Run `echo healthcheck` in busybox (OBuilder's `healthcheck`), then delete that step
        so the next check runs the command again. Returns None when it passed, else why not,
        followed by the captured output. Gives up after `timeout` seconds or when `cancel` is
        set."""
        from obuilder_core.spec import parse_spec

        cancel = cancel or threading.Event()
        timed_out = threading.Event()

        def time_out() -> None:
            timed_out.set()
            cancel.set()

        output: list[bytes] = []
        timer = threading.Timer(timeout, time_out)
        timer.start()
        try:
            with tempfile.TemporaryDirectory() as context:
                result = self.build(
                    parse_spec(HEALTHCHECK_SPEC, "<healthcheck>"),
                    Path(context),
                    log=lambda e: output.append(e.data),
                    cancel=cancel,
                )
        finally:
            timer.cancel()
        if result.failure is None:
            if result.id is not None:
                self.delete(result.id)
            return None
        message = "Timeout running healthcheck" if timed_out.is_set() else result.failure.message
        captured = b"\n".join(output).decode(errors="replace").strip()
        return message + (f"\n{captured}" if captured else "")

    def in_progress(self) -> list[str]:
        """The step ids this builder is building or waiting for right now."""
        return self._steps.in_progress()

    # -- the build loop -----------------------------------------------------------------------

    def build(
        self,
        spec: Spec,
        context: Path,
        *,
        secrets: Mapping[str, bytes] = {},
        log: Callable[[LogEvent], None] | None = None,
        cancel: threading.Event | None = None,
        use_cache: bool = True,
        limits: Limits | None = None,
    ) -> BuildResult:
        """Build `spec` with `context` as the source of `(copy ...)`; never raises for a
        failing step (see BuildResult.failure). Raises ObuilderError for a bad context dir.

        `cancel`: set it to stop; this call then returns at once with a failure, and each
        step in progress is killed once no other build still wants it. `use_cache=False`
        re-runs every run and copy step (their results get fresh ids). `limits` replaces the
        builder's limits for this build's steps (they are not part of any step's id). Each
        step of the result carries what `rerun` needs to execute it again.
        """
        client = Client(
            log, cancel or threading.Event(), limits or self.limits, spec_name=_spec_name(spec)
        )
        result = self._walk(spec, Path(context), secrets, client, use_cache)
        if result.ok:  # the store keeps no final env/workdir/user: `export` needs them
            from obuilder_core.builder.result_records import remember

            remember(self.store.state_dir(), result)
        return result

    def explain(
        self, spec: Spec, context: Path, *, secrets: Mapping[str, bytes] = {}
    ) -> BuildResult:
        """Build nothing: each step of `spec` as the build would get it, cached or not, and
        for a step that is not, why (`StepRecord.miss_reason`: what changed in its key since
        the last build of this spec here). The result has no id; its failure says where the
        walk had to stop (a base image or stage not in the store: later keys depend on it)."""
        name = _spec_name(spec)
        client = Client(None, threading.Event(), self.limits, spec_name=name, dry_run=True)
        result = self._walk(spec, Path(context), secrets, client, use_cache=True)
        return dataclasses.replace(result, id=None, settings=None)

    def _walk(
        self,
        spec: Spec,
        context: Path,
        secrets: Mapping[str, bytes],
        client: Client,
        use_cache: bool,
    ) -> BuildResult:
        """The build loop for `client`; its failures become the result's."""
        if not context.is_dir():
            raise ObuilderError(f"build context {context}: not a directory")
        ctx = Context(src_dir=context, shell=self.sandbox.default_shell, secrets=dict(secrets))
        with contextlib.ExitStack() as held:
            held.callback(self._report_pushes, client)
            try:
                id, end = self._build(spec, ctx, client, held, use_cache)
            except StepFailure as e:
                return BuildResult(None, tuple(client.steps), e.failure)
            except ObuilderError as e:
                return BuildResult(None, tuple(client.steps), client.fail(str(e)).failure)
        settings = FinalSettings(env=end.env, workdir=end.workdir, user=end.user, shell=end.shell)
        return BuildResult(id, tuple(client.steps), None, settings)

    def _report_pushes(self, client: Client) -> None:
        """Wait for the build's pushes to a `--cache-to` cache; say how they went."""
        summary = self._steps.remote.summary(client.pushes)
        if summary is not None:
            client.event("note", summary.line())

    def _build(
        self,
        spec: Spec,
        ctx: Context,
        client: Client,
        held: contextlib.ExitStack,
        use_cache: bool,
    ) -> tuple[str, Context]:
        """The id of `spec`'s result and the context its ops end with."""
        start = ctx
        for child in spec.child_builds:
            client.step(f"(build {_quote(child.name)} \u2026)", child.pos)
            child_ctx = Context(
                src_dir=start.src_dir,
                env=start.env,
                shell=self.sandbox.default_shell,
                secrets=start.secrets,
                scope=ctx.scope,
            )
            outer, client.stage = client.stage, child.name
            try:
                child_id, _ = self._build(child.spec, child_ctx, client, held, use_cache)
            finally:
                client.stage = outer
            client.event("note", f"--> finished {_quote(child.name)}")
            ctx = ctx.with_build(child.name, child_id)
        client.step(f"(from {format_atom(spec.from_)})", spec.from_pos)
        base = self._base(spec.from_, client, held)
        image = read_image_config(self._steps.result(base))
        ctx = Context(
            src_dir=ctx.src_dir,
            env=ctx.env + image.env,
            shell=self.sandbox.default_shell,
            scope=ctx.scope,
            secrets=ctx.secrets,
        )
        id = base
        for op in spec.ops:
            client.step(op_heading(ctx.workdir, op), op.pos)
            if isinstance(op, Run):
                id = self._run(id, op, ctx, client, held, use_cache)
            elif isinstance(op, Copy):
                id = self._copy(id, op, ctx, client, held, use_cache)
            else:
                ctx = ctx.apply(op)
        return id, ctx

    def _base(self, image: str, client: Client, held: contextlib.ExitStack) -> str:
        material = keys.material(BaseKey(image))
        id = keys.material_id(material)
        store = self.location
        self._steps.get(
            id,
            None,
            client,
            held,
            fresh=False,
            fill=lambda tmp, w, _c: fetch_base(tmp, image, w, self.sources, store, client.progress),
            material=material,
        )
        if client.dry_run and not self._steps.has(id):
            raise client.fail(
                f"base image {image} is not in the store: the steps after it cannot be"
                " explained without fetching it (build the spec once)"
            )
        return id

    def _run(
        self,
        parent: str,
        op: Run,
        ctx: Context,
        client: Client,
        held: contextlib.ExitStack,
        use_cache: bool,
    ) -> str:
        values = []
        for s in op.secrets:
            if s.id not in ctx.secrets:
                raise client.fail(f"Couldn't find value for requested secret '{s.id}'")
            values.append(ctx.secrets[s.id])
        try:
            self.sandbox.check_user(ctx.user)
        except ObuilderError as e:
            raise client.fail(str(e)) from None
        assert isinstance(ctx.user, UnixUser)  # check_user refuses the others
        digests = [secret_digest(self._secret_key, v) for v in values]
        key = run_key(
            parent,
            workdir=ctx.workdir,
            user=ctx.user,
            env=ctx.env,
            shell=ctx.shell,
            op=op,
            secret_digests=digests,
        )
        fresh = op.uncached or not use_cache
        material = keys.material(key)
        id = keys.material_id(material)
        id = scratch_id(id, "fresh") if fresh else id
        config = RunConfig(
            argv=(*ctx.shell, op.shell),
            cwd=ctx.workdir,
            env=ctx.env,
            user=(ctx.user.uid, ctx.user.gid),
            network=tuple(op.network),
            limits=client.limits,
        )
        mounted = {s.target: v for s, v in zip(op.secrets, values, strict=True)}
        plan = RunPlan(config, tuple(op.cache), mounted)
        self._steps.get(id, parent, client, held, fresh=fresh, plan=plan, material=material)
        return id

    def _copy(
        self,
        parent: str,
        op: Copy,
        ctx: Context,
        client: Client,
        held: contextlib.ExitStack,
        use_cache: bool,
    ) -> str:
        stage = None
        if isinstance(op.from_, FromBuild):
            stage = ctx.build_id(op.from_.name)
            if stage is None:
                raise client.fail(f"Unknown build {_quote(op.from_.name)}")
            held.enter_context(self._kept(stage))
            src_dir = held.enter_context(self.store.view(stage)) / "rootfs"
            cache = None
        else:
            src_dir, cache = ctx.src_dir, self._stat_cache
        items = tuple(
            generate(src_dir, src, op.exclude, algorithm=DEFAULT_ALGORITHM, stat_cache=cache)
            for src in op.src
        )
        dst, shape = copy_destination(ctx.workdir, op.dst, len(items))
        key = CopyKey(
            parent=parent,
            user=ctx.user,
            dst=dst,
            shape=shape,
            manifests=items,
            algorithm=DEFAULT_ALGORITHM,
        )
        material = keys.material(key)
        id = keys.material_id(material)
        id = scratch_id(id, "fresh") if not use_cache else id
        plan = CopyPlan(
            items,
            dst,
            shape,
            ctx.user,
            client.limits,
            context=None if stage else ctx.src_dir,
            stage=stage,
            family=incremental.family(material),
        )
        self._steps.get(id, parent, client, held, fresh=not use_cache, plan=plan, material=material)
        return id

    @contextlib.contextmanager
    def view(self, id: str) -> Iterator[Path]:
        """`with builder.view(id) as rootfs:` the filesystem of result `id`, to read (btrfs
        and zfs results are read-only snapshots; other stores do not enforce it), kept from
        pruning until the block ends. Raises ObuilderError if there is no such result."""
        with self._kept(id), self.store.view(id) as step_dir:
            yield step_dir / "rootfs"

    def export(
        self,
        id: str,
        to: str,
        *,
        settings: FinalSettings | None = None,
        insecure_registry: bool = False,
    ) -> Exported:
        """Write result `id` as an OCI image to `to`: `oci:DIR[:TAG]`, `docker-archive:FILE`
        or `HOST[:PORT]/REPO[:TAG]` (builder/export.py): one layer per step, the config with
        the spec's final env, workdir and user (`settings`, default: what the last build
        ending at `id` recorded). `insecure_registry`: plain http to a non-loopback registry.
        ObuilderError if there is no such result, the target is malformed or the write fails."""
        from obuilder_core.builder.export import export_result

        with self._kept(id):
            return export_result(
                self.store, self.index, id, to, settings=settings, allow_http=insecure_registry
            )

    def run_on(
        self, id: str, config: RunConfig, *, cancel: threading.Event | None = None
    ) -> tuple[int, bytes]:
        """Run `config` on a throwaway copy of result `id` and return its exit status (128+N
        when killed by signal N) and its output (stdout and stderr merged, as in a step's
        log). Nothing it writes is kept or cached. Raises ObuilderError if there is no such
        result or the command cannot be started."""
        output = bytearray()
        status = 0

        def in_copy(tmp: Path) -> None:
            nonlocal status
            try:
                self.sandbox.run(config, tmp / "rootfs", log=output.extend, cancel=cancel)
            except StepFailed as e:
                status = e.status if e.status is not None else 128 + (e.signum or 0)
            raise _Throwaway

        with self._kept(id), contextlib.suppress(_Throwaway):
            self.store.build(scratch_id(id, "run-on"), id, in_copy)
        return status, bytes(output)

    def rerun(
        self,
        step: StepRecord,
        scratch_id: str,
        *,
        config: RunConfig | None = None,
        sandbox: Sandbox | None = None,
        cancel: threading.Event | None = None,
        log: Emit | None = None,
    ) -> None:
        """Execute `step` (of a BuildResult) again on its parent, never from the cache, and
        commit it as `scratch_id` (which must not exist; it is not indexed: the caller
        deletes it with `store.delete`). `config` replaces a run step's command config and
        `sandbox` the builder's sandbox for it (e.g. to vary its environment); `log` gets
        its output too. Raises ObuilderError if the step fails (StepFailed when its command
        does) or cannot be run again (a base image)."""
        plan, parent = step.plan, step.parent
        if plan is None or parent is None:
            raise ObuilderError(f"step {_quote(step.heading)} cannot be executed again")
        if config is not None and isinstance(plan, RunPlan):
            plan = dataclasses.replace(plan, config=config)
        fill = self._steps.fill(plan, sandbox)
        stop = cancel or threading.Event()

        def in_tmp(tmp: Path) -> None:
            with open(tmp / "log", "wb") as saved:

                def write(data: bytes) -> None:
                    saved.write(data)
                    if log is not None:
                        log(data)

                fill(tmp, write, stop)

        with self._kept(parent):
            self.store.build(scratch_id, parent, in_tmp)

    @contextlib.contextmanager
    def _kept(self, id: str) -> Iterator[None]:
        """Keep result `id` from pruning for the block; ObuilderError if there is none.
        (Protect first, then look: a prune running now cannot remove what is then found.)"""
        with self.index.protect([id]):
            if not self._steps.has(id):
                raise ObuilderError(f"Build result {_quote(id)} not found")
            yield


def _spec_name(spec: Spec) -> str | None:
    """Whose earlier builds explain this build's misses: the spec file (absolute), or the
    name a spec made in code was given; None for `<string>`-like names, which many specs
    share (no explanations then)."""
    name = spec.from_pos.file if spec.from_pos is not None else None
    if name is None or name.startswith("<"):
        return None
    return os.path.abspath(name) if os.path.isfile(name) else name


def _registry_caches(
    cache_from: Sequence[str], cache_to: str | None, insecure: bool
) -> tuple[list[RemoteCache], RemoteCache | None]:
    if not cache_from and not cache_to:
        return [], None  # and no import of the registry client
    from obuilder_core.remote.registry_cache import RegistryCache

    pulls: list[RemoteCache] = [RegistryCache(r, allow_http=insecure) for r in cache_from]
    return pulls, RegistryCache(cache_to, allow_http=insecure) if cache_to else None


class _Throwaway(Exception):
    """Raised by a store build's fill function to discard what it wrote: a store commits
    nothing when the function raises (`Store.build`)."""


def _quote(s: str) -> str:
    return ocaml_string(s)
