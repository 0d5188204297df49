"""The build log of one spec item: written to a file, its tail kept for the report, and shown
while it is written.

With `-s` (no capture) the log streams to the terminal as it arrives. Otherwise a step that is
still running after SLOW_STEP seconds gets one line naming it, so a long build is never silent
and a fast or cached one leaves the usual one-character-per-test output alone.
"""

from __future__ import annotations

import codecs
import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from obuilder_core.builder import Tail

if TYPE_CHECKING:  # the builder is imported only when a spec is built
    from obuilder_core.builder import LogEvent

SLOW_STEP = 2.0  # seconds before a running step is announced


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
        """Record one event: headings and notes on lines of their own, output as it is."""
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
        self, terminal: Terminal, config: pytest.Config, name: str, stream: bool, resume: str = ""
    ) -> None:
        """`resume`: what pytest had written on the test's line (`hello.spec `), written again
        after a notice so that the result letter lands where pytest's output puts it."""
        self._terminal = terminal
        self._resume = resume
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
            if self._stream:
                self._show(event)
            elif event.kind == "heading":  # a new step starts: the previous one is done
                self._cancel_timer()
                heading = event.data.decode("utf-8", errors="replace").strip()
                args = (heading, self._step)
                self._timer = threading.Timer(SLOW_STEP, self._announce, args)
                self._timer.daemon = True
                self._timer.start()

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

    def _announce(self, heading: str, step: int) -> None:
        with self._lock:
            if step != self._step:
                return  # the step finished while this thread was waiting for the lock
            first_line = heading.splitlines()[0] if heading else heading
            with self._uncaptured():
                self._terminal.ensure_newline()
                self._terminal.write_line(f"[{self._name}] running {first_line}")
                self._terminal.write(self._resume, flush=True)

    def _cancel_timer(self) -> None:
        self._step += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _uncaptured(self) -> AbstractContextManager[object]:
        # Output captured at the file-descriptor level would otherwise swallow these lines.
        if self._capman is None:
            return nullcontext()
        disabled: AbstractContextManager[object] = self._capman.global_and_fixture_disabled()
        return disabled
