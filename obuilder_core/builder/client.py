"""One `build` call as the step runner sees it: where its events go, its steps so far, and the
end of the current step's output for its failure report."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from obuilder_core.builder.result import BuildFailure, LogEvent, StepRecord
from obuilder_core.errors import ObuilderError
from obuilder_core.log import Tail
from obuilder_core.sandbox import DEFAULT_LIMITS, Limits


class StepFailure(ObuilderError):
    """A step failed; carries what the client needs to report it (`Builder.build` turns it
    into its result's `failure`, so it never reaches a caller)."""

    def __init__(
        self, heading: str, message: str, log: bytes, log_path: Path | None = None
    ) -> None:
        super().__init__(message)
        self.failure = BuildFailure(heading, message, log, log_path)


class Client:
    """One `build` call: sends its events, records its steps, keeps the current step's output."""

    def __init__(
        self,
        log: Callable[[LogEvent], None] | None,
        cancel: threading.Event,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._log = log
        self.cancel = cancel
        self.limits = limits
        self.steps: list[StepRecord] = []
        self.output = Tail()  # the current step's, for its failure report; bounded
        self.heading = ""

    def event(self, kind: str, text: str) -> None:
        if kind == "heading":
            self.heading = text
            self.output.clear()
        if self._log is not None:
            self._log(LogEvent(kind, text.encode()))  # type: ignore[arg-type]

    def write(self, data: bytes) -> None:
        self.output.write(data)
        if self._log is not None:
            self._log(LogEvent("output", data))

    def fail(self, message: str, log_path: Path | None = None) -> StepFailure:
        return StepFailure(self.heading, message, self.output.bytes(), log_path)
