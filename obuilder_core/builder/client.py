"""One `build` call as the step runner sees it: where its events go, its steps so far, and the
end of the current step's output for its failure report."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from obuilder_core.builder.result import BuildFailure, LogEvent, StepRecord
from obuilder_core.errors import ObuilderError
from obuilder_core.log import Tail
from obuilder_core.sandbox import DEFAULT_LIMITS, Limits
from obuilder_core.spec.model import Pos

if TYPE_CHECKING:
    from concurrent.futures import Future


class StepFailure(ObuilderError):
    """A step failed; carries what the client needs to report it (`Builder.build` turns it
    into its result's `failure`, so it never reaches a caller)."""

    def __init__(self, failure: BuildFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class Client:
    """One `build` call: sends its events, records its steps, keeps the current step's output."""

    def __init__(
        self,
        log: Callable[[LogEvent], None] | None,
        cancel: threading.Event,
        limits: Limits = DEFAULT_LIMITS,
        *,
        spec_name: str | None = None,
        dry_run: bool = False,
    ) -> None:
        self._log = log
        self.cancel = cancel
        self.limits = limits
        self.steps: list[StepRecord] = []
        self.output = Tail()  # the current step's, for its failure report; bounded
        self.heading = ""
        self.pos: Pos | None = None  # where the current step is written
        self.stage: str | None = None  # the child build (stage) being built, if any
        self.pushes: list[Future[bool]] = []  # its steps' pushes to a --cache-to cache
        self.spec_name = spec_name  # whose earlier builds explain a miss (None: no one's)
        self.dry_run = dry_run  # only look: say what is cached and why the rest is not

    def step_number(self, id: str) -> int | None:
        """The number (from 1) of the step with this id among the build's steps so far."""
        for n, step in enumerate(self.steps, 1):
            if step.id == id:
                return n
        return None

    def event(self, kind: str, text: str) -> None:
        if self._log is not None:
            self._log(LogEvent(kind, text.encode()))  # type: ignore[arg-type]

    def step(self, heading: str, pos: Pos | None) -> None:
        """A new step starts: send its heading and forget the previous step's output."""
        self.heading = heading
        self.pos = pos
        self.output.clear()
        self.event("heading", heading)

    def progress(self, done: int) -> None:
        """The current step has sent `done` bytes (a copy)."""
        if self._log is not None:
            self._log(LogEvent("progress", str(done).encode()))

    def write(self, data: bytes) -> None:
        self.output.write(data)
        if self._log is not None:
            self._log(LogEvent("output", data))

    def fail(self, message: str, log_path: Path | None = None) -> StepFailure:
        return StepFailure(
            BuildFailure(self.heading, message, self.output.bytes(), log_path, self.pos)
        )
