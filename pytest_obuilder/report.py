"""What the plugin reports: failure text, per-step lines for `-v`, the summary table.

Build facts travel from the process that built a spec (a pytest-xdist worker under `-n`) to
the one that prints (the controller) as `item.user_properties`, which pytest copies onto every
report and pytest-xdist serialises: plain strings and numbers only, so `--junitxml` shows them
as readable `<property>` elements too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from tabulate import tabulate

if TYPE_CHECKING:  # the builder is imported only when a spec is built
    from obuilder_core.builder import BuildFailure, BuildResult

RESULT_ID = "obuilder_result_id"
STEPS = "obuilder_steps"
FAILED_STEP = "obuilder_failed_step"
HITS = "obuilder_store_hits"
MISSES = "obuilder_store_misses"
SHORT_ID = 12


@dataclass(frozen=True)
class Step:
    """One step of a finished build, as reported."""

    id: str
    heading: str
    cached: bool
    duration: float


@dataclass(frozen=True)
class SpecRun:
    """The reported build of one spec item (read back from its call-phase report)."""

    nodeid: str
    outcome: str
    duration: float
    result_id: str | None
    steps: tuple[Step, ...]
    failed_step: str | None
    hits: int
    misses: int


def build_properties(result: BuildResult, hits: int, misses: int) -> list[tuple[str, object]]:
    """The user properties that carry `result` (and the store counters it moved) to reports."""
    steps = [
        {"id": s.id, "heading": s.heading, "cached": s.cached, "duration": round(s.duration, 3)}
        for s in result.steps
    ]
    props: list[tuple[str, object]] = [
        (RESULT_ID, result.id or ""),
        (STEPS, json.dumps(steps)),
        (HITS, hits),
        (MISSES, misses),
    ]
    if result.failure is not None:
        props.append((FAILED_STEP, result.failure.heading))
    return props


def spec_run(report: pytest.TestReport) -> SpecRun | None:
    """The build carried by a call-phase `report`, or None if it is not a built spec."""
    props = dict(report.user_properties)
    if STEPS not in props:
        return None
    steps = tuple(Step(**s) for s in json.loads(str(props[STEPS])))
    return SpecRun(
        nodeid=report.nodeid,
        outcome=_outcome(report),
        duration=report.duration,
        result_id=str(props.get(RESULT_ID, "")) or None,
        steps=steps,
        failed_step=str(props[FAILED_STEP]) if FAILED_STEP in props else None,
        hits=int(props.get(HITS, 0)),  # type: ignore[call-overload]
        misses=int(props.get(MISSES, 0)),  # type: ignore[call-overload]
    )


def _outcome(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    return report.outcome


def failure_text(failure: BuildFailure, log_lines: int) -> str:
    """The failed step, its message, the last `log_lines` lines of its log and where the
    whole log is."""
    lines = [f"build failed at step: {failure.heading}", failure.message]
    log = failure.log.decode("utf-8", errors="replace").splitlines()
    where = f" (whole log: {failure.log_path})" if failure.log_path is not None else ""
    if log_lines and log:
        tail = log[-log_lines:]
        lines.append(f"---- last {len(tail)} log lines of the step{where} ----")
        lines.extend(tail)
    elif not log:
        lines.append("(the step wrote no output)")
    return "\n".join(lines)


def step_lines(run: SpecRun) -> list[str]:
    """`-v` lines for one build: cached, built or failed, seconds, heading (aligned)."""
    out = []
    for step in run.steps:
        status = "cached" if step.cached else "built"
        out.extend(_step_line(f"{status:<6} {step.duration:7.2f}s", step.heading))
    if run.failed_step is not None:
        out.extend(_step_line(f"{'failed':<6} {'':8}", run.failed_step))
    return out


def _step_line(status: str, heading: str) -> list[str]:
    prefix = f"    {status}  "
    first, *rest = heading.splitlines() or [""]
    return [prefix + first, *(" " * len(prefix) + line for line in rest)]


def summary_table(runs: Iterable[SpecRun]) -> str:
    """The table of specs (steps, cached, built, seconds, result id), then the store counters."""
    rows, hits, misses = [], 0, 0
    for run in sorted(runs, key=lambda r: r.nodeid):
        cached = sum(s.cached for s in run.steps)
        rows.append(
            [
                run.nodeid.split("::")[0],
                run.outcome,
                len(run.steps),
                cached,
                len(run.steps) - cached,
                f"{run.duration:.2f}",
                (run.result_id or "-")[:SHORT_ID],
            ]
        )
        hits += run.hits
        misses += run.misses
    headers = ["spec", "result", "steps", "cached", "built", "seconds", "result id"]
    align = ("left", "left", "right", "right", "right", "right", "left")
    table = tabulate(rows, headers=headers, disable_numparse=True, colalign=align)
    return f"{table}\nstore: {hits} hits, {misses} misses"
