"""What a build reports: log events as they happen, and per-step records plus the outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from obuilder_core.builder.plans import Plan
from obuilder_core.spec.model import Pos, User


@dataclass(frozen=True)
class LogEvent:
    """One item of a build's log, in order: a step heading, a note, a chunk of raw output, or
    how far a step has got.

    `data` is the heading or note text encoded as UTF-8, the output chunk as produced, or for
    `progress` the bytes a copy step has sent so far, in decimal (`b"3145728"`): for a
    progress display only, never part of a step's log (the build that executes the copy gets
    them; builds waiting for it get its output only).
    """

    kind: Literal["heading", "note", "output", "progress"]
    data: bytes


@dataclass(frozen=True)
class StepRecord:
    """One step of a build: its id, heading, whether it came from the cache, and its log.

    `parent` is the step it was built on (None for a base image) and `plan` what it does
    (None for a base image): enough to execute it again (`Builder.rerun`). `pos`: where the
    step is written in the spec; `stage`: the child build it belongs to (None: the main one);
    `pulled_from`: the remote cache it came from (`registry cache HOST/REPO`; `cached` too);
    `miss_reason`: why it was not in the cache (builder/explain.py), for a step that missed.
    """

    id: str
    heading: str
    cached: bool
    duration: float
    log_path: Path | None
    parent: str | None = None
    plan: Plan | None = field(default=None, repr=False, compare=False)
    pos: Pos | None = field(default=None, repr=False, compare=False)
    stage: str | None = None
    pulled_from: str | None = None
    miss_reason: str | None = None

    @property
    def name(self) -> str:
        """The heading, after its stage's name for a step of a child build (`dev: /: (run
        ...)`): steps of two stages may have the same heading."""
        return f"{self.stage}: {self.heading}" if self.stage else self.heading


@dataclass(frozen=True)
class BuildFailure:
    """The step that failed, why (e.g. `"/bin/sh" "-c" "exit 3" failed with exit status 3`),
    the end of that step's own output (`log`, at most `log.TAIL_BYTES`) and, when it ran, the
    file holding its whole output (`log_path`), and where the step is written in the spec
    (`pos`: None for a spec made in code)."""

    heading: str
    message: str
    log: bytes
    log_path: Path | None = None
    pos: Pos | None = None


@dataclass(frozen=True)
class FinalSettings:
    """What the spec's ops left set at its end, as an image config holds them: what a
    command run on the result starts with (`Builder.run_on`)."""

    env: tuple[tuple[str, str], ...]
    workdir: str
    user: User
    shell: tuple[str, ...]


@dataclass(frozen=True)
class BuildResult:
    """The outcome of a build: the final step id (None on failure), every step done, and the
    settings the spec ends with (None on failure)."""

    id: str | None
    steps: tuple[StepRecord, ...]
    failure: BuildFailure | None
    settings: FinalSettings | None = None

    @property
    def ok(self) -> bool:
        """True when the build succeeded."""
        return self.failure is None
