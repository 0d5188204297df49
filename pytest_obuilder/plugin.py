"""The pytest11 entry point: hooks that collect `*.spec` files and report their builds."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from obuilder_core.spec.sniff import HEAD_BYTES, looks_like_spec
from pytest_obuilder import fixture, hooks
from pytest_obuilder.items import BuilderSession, SpecFile, SpecItem, display_path, session_key
from pytest_obuilder.options import LIMITS_MARK_HELP, add_options, read_settings
from pytest_obuilder.relay import WORKER_KEY, ProgressRelay
from pytest_obuilder.report import SpecRun, spec_run, step_lines, summary_table
from pytest_obuilder.stopping import StopSignals, stop_key


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the `--obuilder-*` options and their ini twins."""
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Make `pytest_obuilder_build_finished` available to conftest files and plugins."""
    pluginmanager.add_hookspecs(hooks)


def pytest_configure(config: pytest.Config) -> None:
    """Read the options once; set up the session's builder and, where output goes, reporting;
    make SIGINT, SIGTERM and SIGHUP stop the session cleanly."""
    config.addinivalue_line("markers", LIMITS_MARK_HELP)
    config.pluginmanager.register(fixture, "obuilder-fixture")  # the `obuilder` fixture
    config.stash[session_key] = BuilderSession(read_settings(config))
    config.stash[stop_key] = StopSignals()
    if not hasattr(config, "workerinput"):  # pytest-xdist workers report to the controller
        config.pluginmanager.register(BuildReporter(config), "obuilder-reporter")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """A session stopped by a signal exits as a process killed by it: 130, 143 or 129."""
    stop = session.config.stash.get(stop_key, None)
    if stop is not None and stop.signum is not None:
        session.exitstatus = 128 + stop.signum


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the builder this process opened: it waits until the steps that a stop cancelled
    are gone, containers included. Then give the signals back."""
    session = config.stash.get(session_key, None)
    if session is not None:
        session.close()
    stop = config.stash.get(stop_key, None)
    if stop is not None:
        stop.restore()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SpecFile | None:
    """Collect the OBuilder specs among the files matching the ini option
    `obuilder_spec_files` (default `*.spec`) under `obuilder_paths` (default: anywhere).
    Other tools' `.spec` files (RPM, PyInstaller) are passed over, not collection errors."""
    obuilder = parent.config.stash[session_key]
    if not _wanted(file_path, obuilder):
        return None
    if not _is_spec(file_path):
        obuilder.passed_over[file_path] = None  # pytest may ask twice for a file it was given
        return None
    return SpecFile.from_parent(parent, path=file_path)


def _wanted(path: Path, obuilder: BuilderSession) -> bool:
    settings = obuilder.settings
    if settings.spec_paths and not any(path.is_relative_to(p) for p in settings.spec_paths):
        return False
    return any(_matches(path, pattern) for pattern in settings.spec_files)


def _is_spec(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return looks_like_spec(f.read(HEAD_BYTES))
    except OSError:
        return True  # collected, so that the collection error says why it cannot be read


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Before any spec is built, open the builder: a store that cannot be opened stops the
    session with one usage error. (Under pytest-xdist the controller does it, below.)"""
    config = session.config
    if hasattr(config, "workerinput") or config.option.collectonly:
        return
    if session.testsfailed and not config.option.continue_on_collection_errors:
        return  # collection errors stop the session before anything is built
    if any(isinstance(item, SpecItem) for item in session.items):
        config.stash[session_key].start()


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    """The store and sandbox line; with `-v` or `--collect-only`, the files passed over."""
    obuilder = config.stash[session_key]
    lines = [obuilder.header] if obuilder.header else []
    if config.get_verbosity() >= 1 or config.option.collectonly:
        lines += [
            f"obuilder: not a spec, not collected: {display_path(config, p)}"
            for p in obuilder.passed_over
        ]
    return lines


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: Sequence[str]) -> None:
    """pytest-xdist's controller: once a worker has collected a spec, open the builder here
    as `pytest_collection_finish` does without workers, and show the store line."""
    config: pytest.Config = node.config
    obuilder = config.stash[session_key]
    if obuilder.header is not None or not any(_is_spec_nodeid(i, obuilder) for i in ids):
        return
    header = obuilder.start()
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(header)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist's controller, before it starts a worker: name the file the worker writes
    its progress lines to (shown here by the relay, `relay.py`)."""
    reporter = node.config.pluginmanager.get_plugin("obuilder-reporter")
    relay = reporter.relay() if reporter is not None else None
    if relay is not None:
        node.workerinput[WORKER_KEY] = str(relay.file_for(node.gateway.id))


def _is_spec_nodeid(nodeid: str, obuilder: BuilderSession) -> bool:
    path = Path(nodeid.partition("::")[0])
    return any(_matches(path, pattern) for pattern in obuilder.settings.spec_files)


def _matches(path: Path, pattern: str) -> bool:
    # Like `python_files`: a pattern with a slash matches the end of the path.
    if "/" in pattern:
        return fnmatch(path.as_posix(), f"*/{pattern.lstrip('/')}")
    return fnmatch(path.name, pattern)


class BuildReporter:
    """Terminal output of builds: per-step lines with `-v`, and the summary table at the end.

    Reads what workers sent in reports, so under pytest-xdist it covers every worker's builds.
    """

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._runs: list[SpecRun] = []
        self._pending: dict[str, SpecRun] = {}
        self._relay: ProgressRelay | None = None

    def relay(self) -> ProgressRelay | None:
        """The relay of pytest-xdist workers' progress lines, started on first use; None
        without a terminal to show them on (`-p no:terminal`)."""
        terminal = self._config.pluginmanager.get_plugin("terminalreporter")
        if self._relay is None and terminal is not None:
            self._relay = ProgressRelay(terminal)
        return self._relay

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        """The workers are done: show their last progress lines before the summary."""
        if self._relay is not None:
            self._relay.close()
            self._relay = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep the build carried by each call-phase report."""
        if report.when != "call":
            return
        run = spec_run(report)
        if run is not None:
            self._runs.append(run)
            if self._config.get_verbosity() >= 1:
                self._pending[report.nodeid] = run

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        """With `-v`, list the spec's steps under its result line."""
        run = self._pending.pop(nodeid, None)
        terminal = self._config.pluginmanager.get_plugin("terminalreporter")
        if run is None or terminal is None:
            return
        terminal.ensure_newline()
        for line in step_lines(run):
            terminal.write_line(line)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """The table of builds and the store's hits and misses."""
        if not self._runs or self._config.get_verbosity() < -1:
            return
        terminalreporter.write_sep("=", "obuilder builds")
        all_specs = self._config.get_verbosity() >= 1
        terminalreporter.write_line(summary_table(self._runs, all_specs=all_specs))
