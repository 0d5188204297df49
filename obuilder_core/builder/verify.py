"""The determinism checker behind `obuilder verify` and `pytest --obuilder-rebuild`.

The spec is built normally (cached steps are reused). Then each run or copy step of the
result, in order, is executed again (`Builder.rerun`) without the cache on top of the same
parent snapshot, under a scratch id, with some variations of its environment (reprotest-like),
and the two root filesystems are compared (`tree_diff.compare_trees`). The first step whose
results differ stops the check. The cached result is never replaced; the scratch result is
deleted unless `keep` is set.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from obuilder_core.builder import diffoscope
from obuilder_core.builder.builder import Builder
from obuilder_core.builder.plans import RunPlan
from obuilder_core.builder.result import BuildFailure, LogEvent, StepRecord
from obuilder_core.builder.tree_diff import TreeDiff, compare_trees, content_detail, iso_time
from obuilder_core.builder.variations import DEFAULT_VARY as DEFAULT_VARY  # re-exported
from obuilder_core.builder.variations import VARIATIONS as VARIATIONS
from obuilder_core.builder.varying import faketime_missing, thread_traits, varied_config
from obuilder_core.errors import ObuilderError
from obuilder_core.keys import scratch_id
from obuilder_core.log import Tail
from obuilder_core.sandbox import StepFailed
from obuilder_core.sandbox.disorder import DisorderedSandbox, disorderfs_missing
from obuilder_core.spec.model import Pos, Spec
from obuilder_core.stat_cache import StatCache

EXIT_SAME, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2

CLOCK_GAP = 2.0
"""Seconds at least between a step's execution and its rebuild's: a step that records the time
at one-second resolution (`date +%s`, a tar or gzip header; zip's is two seconds) then differs
whenever it is nondeterministic, not only when the two runs straddle a second."""
STAT_CACHE = "verify-stat-cache.sqlite"
"""Digests of compared files, in the store's state dir (cached results are compared again)."""
DETAIL_FILES = 10
DEEP_DIFF_FILES = 3


class VerifyError(ObuilderError):
    """Bad verify options (an unknown variation)."""


def parse_source_date_epoch(text: str) -> int:
    """SOURCE_DATE_EPOCH's value: whole seconds since 1970; VerifyError otherwise."""
    value = text.strip()
    if not value.isdigit():
        raise VerifyError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, not {text!r}")
    return int(value)


def parse_vary(text: str) -> tuple[str, ...]:
    """`all`, `none`, or a comma-separated list of VARIATIONS names; VerifyError if a name is
    unknown, or needs a tool that cannot run here (`fileorder`, `time`: `all` skips them in
    `verify`)."""
    text = text.strip()
    if text == "all":
        return tuple(VARIATIONS)
    if text in ("none", ""):
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in VARIATIONS]
    if unknown:
        known = ", ".join(VARIATIONS)
        raise VerifyError(f"unknown variation {unknown[0]!r} in --vary (use all, none or {known})")
    _available(names)
    return names


@dataclass(frozen=True)
class Divergence:
    """The first step whose rebuild differs: its heading, ids, and the tree differences.

    `kept` is the scratch result's step dir when it was kept, else None; `details` maps the
    first DETAIL_FILES paths with different content to a unified diff or hex summary.
    """

    heading: str
    id: str
    rebuilt_id: str
    diff: TreeDiff
    kept: Path | None
    details: tuple[tuple[str, str], ...] = ()
    pos: Pos | None = None
    """Where the step is written in the spec."""
    blame: str | None = None
    """Which variation makes the step differ (`explain`): `differs under: tz`, or `differs
    with no variation (the step itself is nondeterministic)`; None if not looked for."""

    def summary(self) -> str:
        """One line: `not deterministic at step HEADING: /PATH differs (content)`."""
        first = self.diff.differences[0] if self.diff.differences else None
        path = "" if first is None or first.path == "." else first.path
        where = f": /{path} differs ({first.kind})" if first else ""
        return f"not deterministic at step {self.heading.splitlines()[0]}{where}"


@dataclass(frozen=True)
class VerifyResult:
    """The outcome: `failure` if the build failed or a rebuild could not be done (an error),
    `divergence` if a step's rebuild differs, `rebuild_failed` if a step's command failed
    when rebuilt (a finding, with the rebuild's log tail), none of them if every step was the
    same. `checked` counts the steps compared."""

    spec_name: str
    vary: tuple[str, ...]
    checked: int
    divergence: Divergence | None
    failure: BuildFailure | None
    notes: tuple[str, ...] = ()
    rebuild_failed: BuildFailure | None = None
    source_date_epoch: int | None = None
    """The mtime clamp the comparison used (only with check_mtimes)."""

    @property
    def exit_code(self) -> int:
        """0 same, 1 different (or failed only when rebuilt), 2 error (like diffoscope)."""
        if self.failure is not None:
            return EXIT_ERROR
        found = self.divergence is not None or self.rebuild_failed is not None
        return EXIT_DIFFERENT if found else EXIT_SAME


class _Checker:
    """Rebuilds steps one at a time and compares them with their cached results."""

    def __init__(
        self,
        builder: Builder,
        vary: tuple[str, ...],
        keep: bool,
        check_mtimes: bool,
        source_date_epoch: int | None,
        stat_cache: StatCache,
        cancel: threading.Event | None,
        clock_gap: float = CLOCK_GAP,
        explain: bool = True,
    ) -> None:
        self.builder = builder
        self.clock_gap = clock_gap
        self.explain = explain
        self.stat_cache = stat_cache
        self.vary = vary
        self.keep = keep
        self.check_mtimes = check_mtimes
        self.source_date_epoch = source_date_epoch
        self.cancel = cancel
        self.checked = 0
        self.divergence: Divergence | None = None
        self.failure: BuildFailure | None = None
        self.rebuild_failed: BuildFailure | None = None
        self.notes: list[str] = []

    def check(self, step: StepRecord) -> bool:
        """Rebuild `step` and compare; False once a result differs or a rebuild failed."""
        store = self.builder.store
        assert step.plan is not None and step.parent is not None
        self._wait_for_clock(step)
        with contextlib.ExitStack() as views:
            try:
                original = views.enter_context(store.view(step.id))
                parent = views.enter_context(store.view(step.parent))
            except ObuilderError:
                raise ObuilderError(f"Build result {step.id} vanished while verifying") from None
            return self._compare(step, original, parent, views)

    def _compare(
        self, step: StepRecord, original: Path, parent: Path, views: contextlib.ExitStack
    ) -> bool:
        store = self.builder.store
        scratch = scratch_id(step.id, "verify")
        keep = False
        output = Tail()  # the rebuild's, for its report if its command fails
        try:
            try:
                self._rerun(step, scratch, parent, self.vary, output.write)
            except StepFailed as e:  # it succeeded the first time: a finding, not an error
                message = f"failed when rebuilt: {e}"
                self.rebuild_failed = BuildFailure(step.name, message, output.bytes(), pos=step.pos)
                return False
            except ObuilderError as e:
                self.failure = BuildFailure(step.name, f"rebuild failed: {e}", b"", pos=step.pos)
                return False
            rebuilt = views.enter_context(store.view(scratch))
            self.checked += 1
            diff = self._diff(original, rebuilt)
            if diff.same:
                return True
            keep = self.keep
            details = _content_details(diff)
            kept = store.result(scratch) if keep else None
            blame = self._blame(step, original) if self.explain else None
            self.divergence = Divergence(
                step.name, step.id, scratch, diff, kept, details, step.pos, blame
            )
            return False
        finally:
            if not keep:
                views.close()  # the views go before the scratch result they show
                store.delete(scratch)

    def _blame(self, step: StepRecord, original: Path) -> str:
        """Which variation makes `step` differ, as reprotest's --auto-build says: rebuild it
        with no variation, then with each one alone, and compare each with the original."""
        if self._differs(step, original, ()):
            return "differs with no variation (the step itself is nondeterministic)"
        alone = [v for v in self.vary if self._differs(step, original, (v,))]
        if alone:
            return f"differs under: {', '.join(alone)}"
        return f"differs only under several variations together: {', '.join(self.vary)}"

    def _rerun(
        self,
        step: StepRecord,
        scratch: str,
        parent: Path,
        vary: tuple[str, ...],
        log: Callable[[bytes], None] | None = None,
    ) -> None:
        """Execute `step` again as `scratch` on its parent (step dir `parent`), with `vary`."""
        run = step.plan.config if isinstance(step.plan, RunPlan) else None
        config = None
        if run is not None:
            config = varied_config(run, vary, parent / "rootfs")
            if "umask" in vary and config.argv == run.argv:
                self._note(f"umask not varied for {step.name}: no /bin/sh in the image")
        sandbox = None
        if "fileorder" in vary and run is not None:
            sandbox = DisorderedSandbox(self.builder.sandbox)
        with thread_traits(vary if run is not None else ()):
            self.builder.rerun(
                step, scratch, config=config, sandbox=sandbox, cancel=self.cancel, log=log
            )

    def _differs(self, step: StepRecord, original: Path, vary: tuple[str, ...]) -> bool:
        """Whether a rebuild of `step` with only `vary` differs from `original` (or fails)."""
        assert step.plan is not None and step.parent is not None
        store = self.builder.store
        scratch = scratch_id(step.id, "verify-blame")
        with contextlib.ExitStack() as views:
            parent = views.enter_context(store.view(step.parent))
            try:
                self._rerun(step, scratch, parent, vary)
            except StepFailed:
                return True
            try:
                rebuilt = views.enter_context(store.view(scratch))
                return not self._diff(original, rebuilt).same
            finally:
                views.close()
                store.delete(scratch)

    def _diff(self, original: Path, rebuilt: Path) -> TreeDiff:
        """How the rootfs of step dirs `original` and `rebuilt` differ."""
        return compare_trees(
            original / "rootfs",
            rebuilt / "rootfs",
            check_mtimes=self.check_mtimes,
            mtime_clamp=self.source_date_epoch,
            stat_cache=self.stat_cache,
        )

    def _wait_for_clock(self, step: StepRecord) -> None:
        """Start the rebuild `clock_gap` seconds after the step was saved, at the earliest:
        its clock then reads at least that much later than the original's did."""
        row = self.builder.index.get(step.id)
        if row is None:
            return
        delay = row.created + self.clock_gap - time.time()
        if delay > 0:
            (self.cancel or threading.Event()).wait(delay)

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def verify(
    builder: Builder,
    spec: Spec,
    context: Path,
    *,
    spec_name: str = "spec",
    secrets: Mapping[str, bytes] = {},
    vary: tuple[str, ...] = DEFAULT_VARY,
    keep: bool = False,
    check_mtimes: bool = False,
    source_date_epoch: int | None = None,
    cancel: threading.Event | None = None,
    log: Callable[[LogEvent], None] | None = None,
    clock_gap: float = CLOCK_GAP,
    explain: bool = True,
) -> VerifyResult:
    """Build `spec` (using the cache), rebuild each run/copy step on the same parent and
    compare; stop at the first divergent step. Never raises for a failing step (see
    VerifyResult.failure); raises ObuilderError for a bad context. `log` gets the build's
    log events (the rebuilds' output goes only to their scratch logs). `clock_gap`: seconds
    at least between a step's execution and its rebuild (0 only where no step reads the time).
    `explain`: when a step differs, rebuild it again with each variation alone to name the
    one responsible (`Divergence.blame`). `source_date_epoch`: with `check_mtimes`, mtimes
    later than it (seconds since 1970) compare as it, as a build clamping them would set them.
    """
    vary, notes = _available(vary)
    cache_path = builder.store.state_dir() / STAT_CACHE
    with StatCache(cache_path) as cache:
        checker = _Checker(
            builder, vary, keep, check_mtimes, source_date_epoch, cache, cancel, clock_gap, explain
        )
        checker.notes += notes
        result = builder.build(spec, context, secrets=secrets, cancel=cancel, log=log)
        if result.failure is not None:
            checker.failure = result.failure
        else:
            for step in result.steps:
                if step.plan is not None and not checker.check(step):
                    break
    return VerifyResult(
        spec_name,
        vary,
        checked=checker.checked,
        divergence=checker.divergence,
        failure=checker.failure,
        notes=tuple(checker.notes),
        rebuild_failed=checker.rebuild_failed,
        source_date_epoch=source_date_epoch if check_mtimes else None,
    )


#: Variations that need a host tool: how to learn why it cannot run (None if it can).
NEEDS: dict[str, tuple[str, Callable[[], str | None]]] = {
    "fileorder": ("disorderfs", disorderfs_missing),
    "time": ("libfaketime", faketime_missing),
}


def _available(vary: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """`vary` without the variations whose tool cannot run here, with a note for each, if
    `vary` is `all`; VerifyError if such a variation was asked for by name."""
    kept, notes = [], []
    for name in vary:
        tool, missing = NEEDS.get(name, ("", lambda: None))
        why = missing()
        if why is None:
            kept.append(name)
        # Every variation selected means `--vary all`: there, skip what cannot run, with a note.
        elif set(vary) == set(VARIATIONS):
            notes.append(f"{name} not varied: {why}")
        else:
            raise VerifyError(f"variation {name} needs {tool}: {why}")
    return tuple(kept), notes


def _content_details(diff: TreeDiff) -> tuple[tuple[str, str], ...]:
    """(path, detail) for the first DETAIL_FILES files whose contents differ: a text diff,
    archive members or a hex summary, and diffoscope's report on the first DEEP_DIFF_FILES
    archives and binaries when it is installed."""
    paths = [x.path for x in diff.differences if x.kind == "content"][:DETAIL_FILES]
    deep = _DeepDiffs(DEEP_DIFF_FILES) if diffoscope.installed() else None
    return tuple((p, content_detail(diff.a / p, diff.b / p, deep=deep)) for p in paths)


class _DeepDiffs:
    """diffoscope's report on the first `limit` pairs asked about (it is slow), then nothing."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def __call__(self, a: Path, b: Path) -> str:
        if self.left <= 0:
            return ""
        self.left -= 1
        return diffoscope.deep_diff(a, b)


REBUILD_LOG_LINES = 20
"""Lines of a failed rebuild's log that the report shows."""


def format_report(result: VerifyResult, *, show_same: bool = True) -> str:
    """The human report: spec, divergent step, grouped paths, diffs."""
    vary = ", ".join(result.vary) or "none"
    lines = [f"spec: {result.spec_name}", f"variations: {vary}"]
    if result.source_date_epoch is not None:
        epoch = result.source_date_epoch
        when = iso_time(epoch * 1_000_000_000)
        lines.append(f"mtimes: later than SOURCE_DATE_EPOCH={epoch} ({when}) compare as it")
    lines += [f"note: {n}" for n in result.notes]
    if result.failure is not None:
        lines.append(f"error at step {result.failure.heading}: {result.failure.message}")
        return "\n".join(lines)
    if result.rebuild_failed is not None:
        failed = result.rebuild_failed
        lines.append(f"NOT deterministic at step {failed.heading}: {failed.message}")
        tail = failed.log.decode("utf-8", errors="replace").splitlines()[-REBUILD_LOG_LINES:]
        if tail:
            lines.append(f"---- last {len(tail)} log lines of the rebuild ----")
            lines += tail
        return "\n".join(lines)
    d = result.divergence
    if d is None:
        if show_same:
            lines.append(f"deterministic: {result.checked} step(s) rebuilt, results identical")
        return "\n".join(lines)
    lines.append(f"NOT deterministic at step {d.heading}")
    if d.blame is not None:
        lines.append(f"  {d.blame}")
    lines.append(f"  A (cached):  {d.id}")
    lines.append(f"  B (rebuilt): {d.rebuilt_id}" + ("" if d.kept else " (deleted)"))
    if d.kept is not None:
        lines.append(f"  A path: {d.diff.a}")
        lines.append(f"  B path: {d.diff.b}")
    details = dict(d.details)
    for kind, diffs in d.diff.by_kind().items():
        lines.append(f"{kind} ({len(diffs)}):")
        for diff in diffs[:50]:
            extra = f": {diff.a} -> {diff.b}" if diff.a or diff.b else ""
            lines.append(f"  /{diff.path}{extra}" if diff.path != "." else f"  /{extra}")
            if kind == "content" and diff.path in details:
                lines += ["    " + x for x in details[diff.path].splitlines()]
        if len(diffs) > 50:
            lines.append(f"  ... and {len(diffs) - 50} more")
    return "\n".join(lines)
