"""Spec files as pytest collectors and items, and the one Builder each pytest process shares."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from obuilder_core.builder import LimitError, Limits, ObuilderError
from obuilder_core.spec import SpecError, check_spec, parse_spec
from obuilder_core.spec.model import Pos, Spec
from pytest_obuilder.core_warnings import ObuilderWarning, core_warnings
from pytest_obuilder.markers import SpecMark, comment_marks, leading_marks
from pytest_obuilder.options import LIMITS_MARK, Settings, limits_from
from pytest_obuilder.progress import BuildLog, LiveOutput
from pytest_obuilder.relay import WORKER_KEY, FileTerminal
from pytest_obuilder.report import EXPORTED, STEPS, build_properties, failure_text, located

if TYPE_CHECKING:
    from obuilder_core.builder import Builder, BuildFailure, BuildResult


class BuilderSession:
    """The one Builder of this pytest process (one per pytest-xdist worker), opened on first use.

    Workers share the store on disk; the builder itself makes sure each step runs once.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.header: str | None = None
        """`obuilder: store ... , runc ...`, once `start` has opened the builder."""
        self.passed_over: dict[Path, None] = {}
        """Files matching `obuilder_spec_files` that are not OBuilder specs (not collected)."""
        self._builder: Builder | None = None
        self._error: ObuilderError | None = None

    def start(self) -> str:
        """Open the builder before the first spec is built, and say which store and sandbox
        it uses. A store that cannot be opened is one usage error (pytest exits 4), not the
        same failure for every spec."""
        if self.header is None:
            try:
                self.header = f"obuilder: {self.builder().describe()}"
            except ObuilderError as e:
                raise pytest.UsageError(f"obuilder: {e}") from None
        return self.header

    def builder(self) -> Builder:
        """The open Builder; raises the ObuilderError that opening it gave (every time)."""
        if self._error is not None:
            raise self._error
        if self._builder is None:
            from obuilder_core.builder import Builder  # only sessions that build need it

            try:
                self._builder = Builder.open(
                    self.settings.store,
                    fast_sync=self.settings.fast_sync,
                    registry_mirror=self.settings.registry_mirror,
                    limits=self.settings.limits,
                    watch=True,
                    cache_from=self.settings.cache_from,
                    cache_to=self.settings.cache_to,
                    insecure_registry=self.settings.insecure_registry,
                )
            except ObuilderError as e:
                self._error = e
                raise
        return self._builder

    def close(self) -> None:
        """Close the builder if it was opened."""
        if self._builder is not None:
            self._builder.close()
            self._builder = None


session_key = pytest.StashKey[BuilderSession]()


class _SpecFailed(Exception):
    """A spec's build failed at a step (the test's failure)."""

    def __init__(self, failure: BuildFailure) -> None:
        super().__init__(failure.heading)
        self.failure = failure


class NotDeterministic(Exception):
    """`--obuilder-rebuild`: a step's rebuild differs from its first build (or failed)."""

    def __init__(self, report: str, summary: str, pos: Pos | None) -> None:
        super().__init__(summary)
        self.report = report
        self.summary = summary
        self.pos = pos


class SpecFile(pytest.File):
    """A `*.spec` file: parsed at collection, so a bad spec is a collection error."""

    def collect(self) -> list[SpecItem]:
        """One item named after the file, carrying the marks written in the spec."""
        filename = display_path(self.config, self.path)
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise self.CollectError(f"{filename}: cannot read: {e.strerror or e}") from None
        errors = check_spec(data, filename)
        if errors:
            raise self.CollectError("\n".join(str(e) for e in errors))
        try:
            spec = parse_spec(data, filename)
            text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
            marks = leading_marks(text, filename) + comment_marks(spec)
        except SpecError as e:
            raise self.CollectError(str(e)) from None
        limits = self.config.stash[session_key].settings.limits
        for mark in marks:
            if mark.name == LIMITS_MARK:
                limits = _mark_limits(limits, mark)
        item = SpecItem.from_parent(self, name=self.path.stem, spec=spec, limits=limits)
        for mark in marks:
            item.add_marker(_decorator(mark))
        return [item]


class SpecItem(pytest.Item):
    """Building one spec: passes when every step succeeds, fails at the first failing step."""

    def __init__(self, *, spec: Spec, limits: Limits, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.limits = limits

    def runtest(self) -> None:
        """Build the spec with the session's builder; record the result; fail if it failed."""
        session = self.config.stash[session_key]
        settings = session.settings
        log = BuildLog(_log_path(self), _live_output(self))
        try:
            builder = session.builder()
            hits, misses = builder.stats()
            try:
                with core_warnings():
                    result = builder.build(
                        self.spec,
                        settings.context or self.path.parent,
                        secrets=dict(settings.secrets),
                        log=log,
                        use_cache=settings.use_cache,
                        limits=self.limits,
                    )
            finally:
                log.close()
                # "Captured stdout call": shown on failure, and junit's system-out. Clipped:
                # a build may print gigabytes; the whole log stays in its file.
                text, clipped = log.tail(settings.log_lines)
                if clipped:
                    text = f"(last {settings.log_lines} lines; whole log: {log.path})\n{text}"
                if text:
                    self.add_report_section("call", "stdout", text)
        except ObuilderError:
            self.user_properties.append((STEPS, "[]"))  # still a row in the summary table
            raise
        new_hits, new_misses = builder.stats()
        self.user_properties.extend(build_properties(result, new_hits - hits, new_misses - misses))
        self.ihook.pytest_obuilder_build_finished(item=self, result=result)
        if result.failure is not None:
            raise _SpecFailed(result.failure)
        if settings.rebuild:
            self._check_determinism(builder)
        if settings.export_to is not None and result.id is not None:
            self._export(builder, result, settings)

    def _export(self, builder: Builder, result: BuildResult, settings: Settings) -> None:
        """Push the passing spec's result as an image; a failed push is a warning, as a
        registry cache push is."""
        from obuilder_core.builder.export import export_ref

        assert result.id is not None and settings.export_to is not None
        ref = export_ref(settings.export_to, self.nodeid.split("::")[0])
        insecure = settings.insecure_registry
        try:
            exported = builder.export(
                result.id, ref, settings=result.settings, insecure_registry=insecure
            )
        except ObuilderError as e:
            warnings.warn(ObuilderWarning(f"export to {ref} failed: {e}"), stacklevel=1)
            return
        self.user_properties.append((EXPORTED, f"{exported.target}@{exported.digest}"))

    def _check_determinism(self, builder: Builder) -> None:
        """Rebuild every step (all cached by now) on its parent; fail if one differs."""
        from obuilder_core.builder.verify import DEFAULT_VARY, format_report, verify

        settings = self.config.stash[session_key].settings
        result = verify(
            builder,
            self.spec,
            settings.context or self.path.parent,
            spec_name=str(self.path),
            secrets=dict(settings.secrets),
            vary=DEFAULT_VARY if settings.vary is None else settings.vary,
            check_mtimes=settings.check_mtimes,
            source_date_epoch=settings.source_date_epoch,
        )
        if result.divergence is not None:
            d = result.divergence
            raise NotDeterministic(format_report(result), d.summary(), d.pos)
        for failed, what in (
            (result.rebuild_failed, "not deterministic"),
            (result.failure, "error"),
        ):
            if failed is not None:
                summary = f"{what} at step {failed.heading.splitlines()[0]}: {failed.message}"
                raise NotDeterministic(format_report(result), summary, failed.pos)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> Any:
        """The failed step, its message and log tail, located at the step's line; a user
        error's one line; else a traceback."""
        tbstyle = self.config.getoption("tbstyle", "auto")
        error = excinfo.value
        if isinstance(error, _SpecFailed):
            settings = self.config.stash[session_key].settings
            text = failure_text(error.failure, settings.log_lines)
            return located(text, error.failure.message, self._where(error.failure.pos), tbstyle)
        if isinstance(error, NotDeterministic):
            return located(error.report, error.summary, self._where(error.pos), tbstyle)
        if isinstance(excinfo.value, ObuilderError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def _where(self, pos: Pos | None) -> Pos:
        return pos or Pos(display_path(self.config, self.path), 1, 1)

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        """The spec file, its first line (0-based, as pytest counts), and the item's name."""
        return self.path, 0, self.name


def display_path(config: pytest.Config, path: Path) -> str:
    """`path` relative to where pytest was started (if below it), so that a `file:line:col`
    opens from the terminal."""
    rel = os.path.relpath(path, config.invocation_params.dir)
    return str(path) if rel.startswith("..") else rel


FUNCTION_ONLY_MARKS = {
    "parametrize": "it makes several calls of a Python test function",
    "usefixtures": "a spec item uses no fixtures",
}
"""Marks that mean something for Python test functions only, and why."""


def _decorator(mark: SpecMark) -> pytest.MarkDecorator:
    """The pytest mark for a mark written in a spec; a collection error at the mark's
    `file:line:col` if it cannot apply to a spec or (with `--strict-markers`) is unknown.
    An unknown mark's warning names the spec's line, not this module."""
    why = FUNCTION_ONLY_MARKS.get(mark.name)
    if why is not None:
        raise SpecFile.CollectError(f"{mark.pos}: mark.{mark.name} cannot apply to a spec: {why}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pytest.PytestUnknownMarkWarning)
        try:
            decorator = mark.mark()
        except pytest.fail.Exception as e:  # strict markers: an unknown mark is an error
            raise SpecFile.CollectError(f"{mark.pos}: {e.msg}") from None
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, mark.pos.file, mark.pos.line)
    return decorator


def _mark_limits(base: Limits, mark: SpecMark) -> Limits:
    """The limits a spec's `obuilder_limits(...)` mark sets; a collection error if unusable."""
    where = str(mark.pos)
    if mark.args:
        raise SpecFile.CollectError(f"{where}: mark.{LIMITS_MARK} takes keyword arguments only")
    try:
        return limits_from(base, **dict(mark.kwargs))
    except TypeError as e:  # an unknown keyword
        raise SpecFile.CollectError(f"{where}: mark.{LIMITS_MARK}: {e}") from None
    except LimitError as e:
        raise SpecFile.CollectError(f"{where}: mark.{LIMITS_MARK}: {e}") from None


def _log_path(item: SpecItem) -> Path:
    """Where the item's whole build log goes: under pytest's temporary directory of this
    session (`--basetemp`), named after the spec."""
    factory = getattr(item.config, "_tmp_path_factory", None)
    base = factory.getbasetemp() if factory is not None else Path(tempfile.gettempdir())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid).strip("_")
    return base / "obuilder-logs" / f"{name}.log"


def _live_output(item: SpecItem) -> LiveOutput | None:
    config = item.config
    progress = config.stash[session_key].settings.progress
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # a pytest-xdist worker: lines to the controller's relay
        relayed = workerinput.get(WORKER_KEY)
        if relayed is None or progress == "quiet":
            return None
        return LiveOutput(FileTerminal(Path(relayed)), config, item.name, False)
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is None:
        return None
    stream = config.getoption("capture") == "no"
    verbosity = config.get_verbosity()
    # What pytest wrote on the test's line before the result: the node id with -v, the file
    # by default, nothing with -q.
    where = (
        item.nodeid if verbosity > 0 else display_path(config, item.path) if verbosity == 0 else ""
    )
    return LiveOutput(
        terminal,
        config,
        item.name,
        stream,
        f"{where} " if where else "",
        in_place=progress == "auto" and bool(terminal.isatty()),
        quiet=progress == "quiet",
    )
