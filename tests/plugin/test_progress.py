"""How a running step is shown (`--obuilder-progress`), with a terminal that records writes.

The timers are not waited for: each test calls the announcement a timer would make, so nothing
depends on how long anything takes. The plain mode is also shown end to end, through a real
pytest run, in test_builds.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from obuilder_core.builder import LogEvent
from pytest_obuilder.progress import LiveOutput
from pytest_obuilder.relay import FileTerminal, ProgressRelay

HEADING = LogEvent("heading", b'/: (run (shell "make"))')


class RecordingTerminal:
    """The part of pytest's TerminalReporter that LiveOutput uses, writing to a string, with
    its quirk: `ensure_newline` ends the line only if pytest itself wrote the file's name on
    it (its `currentfspath`), once."""

    def __init__(self) -> None:
        self.text = "slow.spec "  # what pytest wrote on the test's line
        self.fspath_on_line = True

    def write(self, content: str, *, flush: bool = False) -> None:
        self.text += content

    def write_line(self, line: str) -> None:
        self.write(line + "\n")

    def ensure_newline(self) -> None:
        if self.fspath_on_line:
            self.write("\n")
            self.fspath_on_line = False


def _live(pytester: pytest.Pytester, **kw: bool) -> tuple[LiveOutput, RecordingTerminal]:
    terminal = RecordingTerminal()
    live = LiveOutput(terminal, pytester.parseconfig(), "slow", False, "slow.spec ", **kw)
    return live, terminal


def _announce(live: LiveOutput, started: float) -> None:
    live._announce(HEADING.data.decode(), live._step, started)  # what the timer calls


def test_in_place_the_line_is_rewritten_with_the_time_then_ended(
    pytester: pytest.Pytester,
) -> None:
    live, terminal = _live(pytester, in_place=True)
    live.event(HEADING)
    _announce(live, time.monotonic() - 5)
    _announce(live, time.monotonic() - 65)
    live.event(LogEvent("heading", b"/: (run (shell next))"))  # the slow step is done
    live.close()
    assert terminal.text == (
        "slow.spec \n"
        '\r[slow] running /: (run (shell "make")) (5s)\x1b[K'
        '\r[slow] running /: (run (shell "make")) (1m05s)\x1b[K'
        "\nslow.spec "  # pytest's result letter goes on here
    )


def test_plain_lines_each_put_the_spec_back(pytester: pytest.Pytester) -> None:
    live, terminal = _live(pytester)
    live.event(HEADING)
    _announce(live, time.monotonic() - 2)
    _announce(live, time.monotonic() - 32)
    live.close()
    assert terminal.text == (
        "slow.spec \n"
        '[slow] running /: (run (shell "make")) (2s)\nslow.spec \n'
        '[slow] running /: (run (shell "make")) (32s)\nslow.spec '
    )


def test_a_finished_step_is_not_announced(pytester: pytest.Pytester) -> None:
    live, terminal = _live(pytester)
    live.event(HEADING)
    step = live._step
    live.event(LogEvent("heading", b"/: (run (shell next))"))
    live._announce(HEADING.data.decode(), step, time.monotonic())  # a timer that lost the race
    live.close()
    assert terminal.text == "slow.spec "


def test_quiet_shows_nothing(pytester: pytest.Pytester) -> None:
    live, terminal = _live(pytester, quiet=True)
    live.event(HEADING)
    assert live._timer is None  # nothing scheduled
    live.close()
    assert terminal.text == "slow.spec "


def test_the_option_and_its_ini_twin(pytester: pytest.Pytester) -> None:
    pytester.makefile(".spec", hello="((from busybox))")
    bad = pytester.runpytest("--obuilder-progress=loud", "--collect-only")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    pytester.makeini("[pytest]\nobuilder_progress = loud\n")
    bad = pytester.runpytest("--collect-only")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*obuilder_progress: 'loud' is not one of auto, plain, quiet*"])


def test_the_relay_shows_each_complete_worker_line_once_on_a_line_of_its_own(
    tmp_path: Path,
) -> None:
    shown = RecordingTerminal()
    relay = ProgressRelay(shown)
    worker = FileTerminal(relay.file_for("gw1"))
    worker.write_line("[slow] running /: (run (shell make)) (2s)")
    worker.write("[slow] running /: (run (shell make)) (3")  # not complete yet: not shown
    relay.close()  # shows what is left, then stops
    assert shown.text == "slow.spec [gw1] [slow] running /: (run (shell make)) (2s)\n"
    assert not relay.dir.exists()


def test_a_copy_says_how_much_it_has_sent(pytester: pytest.Pytester) -> None:
    live, terminal = _live(pytester)
    live.event(LogEvent("heading", b"/: (copy (src big) (dst /big))"))
    live.event(LogEvent("progress", b"3145728"))
    live._announce("/: (copy (src big) (dst /big))", live._step, time.monotonic() - 2)
    live.close()
    assert "[slow] running /: (copy (src big) (dst /big)) (2s, 3.1 MB sent)\n" in terminal.text


def test_a_worker_line_after_the_controller_has_finished_goes_nowhere(tmp_path: Path) -> None:
    relay = ProgressRelay(RecordingTerminal())
    worker = FileTerminal(relay.file_for("gw0"))
    relay.close()  # the controller is done: its directory is gone
    worker.write_line("[slow] running /: (run (shell make)) (32s)")  # no error in the worker
    assert not relay.dir.exists()
