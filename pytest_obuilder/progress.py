"""The build log of one spec item: written to a file, its tail kept for the report, and shown
while it is written.

With `-s` (no capture) the log streams to the terminal as it arrives. Otherwise a step that is
still running after SLOW_STEP seconds gets a line naming it, so a long build is never silent
and a fast or cached one leaves the usual one-character-per-test output alone. The line says
how long the step has run: on a terminal it is rewritten in place every second; elsewhere
(`--obuilder-progress=plain`, or output that is not a terminal) it is repeated every
PLAIN_REPEAT seconds. `--obuilder-progress=quiet` shows none.
"""

from __future__ import annotations

import codecs
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from obuilder_core.builder import Tail, human_size

if TYPE_CHECKING:  # the builder is imported only when a spec is built
    from obuilder_core.builder import LogEvent

SLOW_STEP = 2.0  # seconds before a running step is announced
PLAIN_REPEAT = 30.0  # seconds between the lines of a step that is still running, not in place
PROGRESS_MODES = ("auto", "plain", "quiet")


def _elapsed(seconds: float) -> str:
    """`5s`, `1m05s`: how long a step has run."""
    whole = int(seconds)
    return f"{whole}s" if whole < 60 else f"{whole // 60}m{whole % 60:02d}s"


class Terminal(Protocol):
    """The part of pytest's TerminalReporter that progress output uses."""

    def write(self, content: str, *, flush: bool = False) -> None: ...
    def write_line(self, line: str) -> None: ...
    def ensure_newline(self) -> None: ...


class BuildLog:
    """Receives a build's LogEvents (the builder's `log=` callback): writes them all to the
    file `path` and keeps only the end in memory, however much the build prints."""

    def __init__(self, path: Path, live: LiveOutput | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")  # noqa: SIM115 -- closed by close()
        self._tail = Tail()
        self._at_line_start = True
        self._live = live

    def __call__(self, event: LogEvent) -> None:
        """Record one event: headings and notes on lines of their own, output as it is;
        progress only on the terminal."""
        if event.kind == "progress":
            if self._live is not None:
                self._live.event(event)
            return
        if event.kind == "output":
            data = event.data
        else:
            data = (b"" if self._at_line_start else b"\n") + event.data.rstrip(b"\n") + b"\n"
        if data:
            self._file.write(data)
            self._tail.write(data)
            self._at_line_start = data.endswith(b"\n")
        if self._live is not None:
            self._live.event(event)

    def tail(self, lines: int) -> tuple[str, bool]:
        """The last `lines` lines (decoded leniently: builds may print any bytes), and whether
        that is less than the whole log."""
        kept = self._tail.bytes().decode("utf-8", errors="replace").splitlines()
        clipped = self._tail.total > len(self._tail.bytes()) or len(kept) > lines
        return "\n".join(kept[-lines:] if lines else []), clipped

    def close(self) -> None:
        """Stop any pending progress line and close the file (call when the build returns)."""
        if self._live is not None:
            self._live.close()
        self._file.close()


class LiveOutput:
    """Shows a running build on the terminal: everything (`stream`) or slow steps only."""

    def __init__(
        self,
        terminal: Terminal,
        config: pytest.Config,
        name: str,
        stream: bool,
        resume: str = "",
        *,
        in_place: bool = False,
        quiet: bool = False,
    ) -> None:
        """`resume`: what pytest had written on the test's line (`hello.spec `), written again
        after a notice so that the result letter lands where pytest's output puts it;
        `in_place`: rewrite the notice every second (a terminal); `quiet`: no notices."""
        self._terminal = terminal
        self._resume = resume
        self._in_place = in_place
        self._quiet = quiet
        self._open_line = False  # an in-place notice is on the terminal's current line
        self._sent: int | None = None  # bytes the running copy step has sent
        self._resumed = False  # `resume` was written last: the line is pytest's again
        self._capman = config.pluginmanager.getplugin("capturemanager")
        self._name = name
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._step = 0  # counts headings; a timer only announces the step it was started for
        self._started = False

    def event(self, event: LogEvent) -> None:
        """Show or schedule what `event` means for the user watching the terminal."""
        with self._lock:
            if event.kind == "progress":
                self._sent = int(event.data)
            elif self._stream:
                self._show(event)
            elif event.kind == "heading" and not self._quiet:  # the previous step is done
                self._cancel_timer()
                heading = event.data.decode("utf-8", errors="replace").strip()
                self._schedule(SLOW_STEP, heading, time.monotonic())

    def close(self) -> None:
        """Cancel a pending announcement; end a streamed log with a newline."""
        with self._lock:
            self._cancel_timer()
            if self._stream and self._started:
                with self._uncaptured():
                    self._terminal.ensure_newline()

    def _show(self, event: LogEvent) -> None:
        with self._uncaptured():
            if not self._started:
                self._terminal.ensure_newline()
                self._started = True
            if event.kind == "output":
                self._terminal.write(self._decoder.decode(event.data), flush=True)
            else:
                self._terminal.ensure_newline()
                text = event.data.decode("utf-8", errors="replace").rstrip("\n")
                self._terminal.write_line(text)

    def _schedule(self, delay: float, heading: str, started: float) -> None:
        self._timer = threading.Timer(delay, self._announce, (heading, self._step, started))
        self._timer.daemon = True
        self._timer.start()

    def _announce(self, heading: str, step: int, started: float) -> None:
        with self._lock:
            if step != self._step:
                return  # the step finished while this thread was waiting for the lock
            first_line = heading.splitlines()[0] if heading else heading
            done = _elapsed(time.monotonic() - started)
            if self._sent is not None:
                done += f", {human_size(self._sent)} sent"
            text = f"[{self._name}] running {first_line} ({done})"
            with self._uncaptured():
                if self._in_place:
                    if not self._open_line:
                        self._new_line()
                    self._terminal.write(f"\r{text}\x1b[K", flush=True)
                    self._open_line = True
                else:
                    self._new_line()
                    self._terminal.write_line(text)
                    self._write_resume()
            self._schedule(1.0 if self._in_place else PLAIN_REPEAT, heading, started)

    def _cancel_timer(self) -> None:
        self._step += 1
        self._sent = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._open_line:  # end the in-place line; pytest's line goes on below it
            with self._uncaptured():
                self._terminal.write("\n")
                self._write_resume()
            self._open_line = False

    def _new_line(self) -> None:
        # pytest's ensure_newline ends only a line it began with a file name, once.
        if self._resumed:
            self._terminal.write("\n")
        else:
            self._terminal.ensure_newline()
        self._resumed = False

    def _write_resume(self) -> None:
        self._terminal.write(self._resume, flush=True)
        self._resumed = bool(self._resume)

    def _uncaptured(self) -> AbstractContextManager[object]:
        # Output captured at the file-descriptor level would otherwise swallow these lines.
        if self._capman is None:
            return nullcontext()
        disabled: AbstractContextManager[object] = self._capman.global_and_fixture_disabled()
        return disabled
