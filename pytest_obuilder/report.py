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
from _pytest._code.code import ReprEntry, ReprExceptionInfo, ReprFileLocation, ReprTraceback
from tabulate import tabulate

if TYPE_CHECKING:  # the builder is imported only when a spec is built
    from obuilder_core.builder import BuildFailure, BuildResult
    from obuilder_core.spec.model import Pos

RESULT_ID = "obuilder_result_id"
STEPS = "obuilder_steps"
FAILED_STEP = "obuilder_failed_step"
EXPORTED = "obuilder_exported"
"""`HOST/REPO:TAG@DIGEST` of the image `--obuilder-export-to` pushed."""
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
    pulled: bool = False
    """Taken from a registry cache (`cached` too)."""
    why: str | None = None
    """Why it was not in the cache (builder/explain.py)."""


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
        {
            "id": s.id,
            "heading": s.heading,
            "cached": s.cached,
            "duration": round(s.duration, 3),
            "pulled": s.pulled_from is not None,
            "why": s.miss_reason,
        }
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


def located(text: str, message: str, where: Pos, tbstyle: str) -> ReprExceptionInfo:
    """A failure report that pytest and its plugins read as they read a Python traceback's:
    its crash location is the spec line `where` with a one-line `message`, which is what
    `--tb=line`, the `-r` summary, junit's `message` attribute and IDEs show. `--tb=short`
    puts the location first; the other styles end with it, as a traceback does. Made of
    pytest's own traceback parts so that pytest-xdist carries it from a worker intact."""
    crash = ReprFileLocation(where.file, where.line, message.partition("\n")[0])
    lines = text.splitlines()
    if tbstyle == "short":
        first = f"{crash.path}:{crash.lineno}: {crash.message}"
        entry = ReprEntry([first, *lines], None, None, None, "value")
    else:
        entry = ReprEntry(lines, None, None, crash, "value")
    return ReprExceptionInfo(reprtraceback=ReprTraceback([entry], None, "value"), reprcrash=crash)


def step_lines(run: SpecRun) -> list[str]:
    """`-v` lines for one build: cached, built or failed, seconds, heading (aligned)."""
    out = []
    for step in run.steps:
        status = "pulled" if step.pulled else "cached" if step.cached else "built"
        out.extend(_step_line(f"{status:<6} {step.duration:7.2f}s", step.heading))
        if step.why is not None:
            out.extend(_step_line(" " * 15, f"miss: {step.why}"))
    if run.failed_step is not None:
        out.extend(_step_line(f"{'failed':<6} {'':8}", run.failed_step))
    return out


def _step_line(status: str, heading: str) -> list[str]:
    prefix = f"    {status}  "
    first, *rest = heading.splitlines() or [""]
    return [prefix + first, *(" " * len(prefix) + line for line in rest)]


def summary_table(runs: Iterable[SpecRun], *, all_specs: bool = False) -> str:
    """The table of specs that failed or built a step (every spec if `all_specs`: `-v`):
    steps, cached, built, seconds, result id; then one line of totals that agree with the
    store's counters, which count a failed step as a miss."""
    runs = sorted(runs, key=lambda r: r.nodeid)
    shown = [r for r in runs if all_specs or r.outcome != "passed" or _built(r)]
    rows = [
        [
            run.nodeid.split("::")[0],
            run.outcome,
            len(run.steps),
            len(run.steps) - _built(run),
            _built(run),
            f"{run.duration:.2f}",
            (run.result_id or "-")[:SHORT_ID],
        ]
        for run in shown
    ]
    headers = ["spec", "result", "steps", "cached", "built", "seconds", "result id"]
    align = ("left", "left", "right", "right", "right", "right", "left")
    table = tabulate(rows, headers=headers, disable_numparse=True, colalign=align)
    built = sum(_built(r) for r in runs)
    failed = sum(r.failed_step is not None for r in runs)
    cached = sum(len(r.steps) for r in runs) - built
    pulled = sum(s.pulled for r in runs for s in r.steps)
    unlisted = len(runs) - len(shown)
    from_registry = f" ({pulled} from a registry cache)" if pulled else ""
    totals = (
        f"{_count(len(runs), 'spec')}: {_count(cached, 'step')} from the cache{from_registry}, "
        f"{built} built, "
        f"{failed} failed (store: {sum(r.hits for r in runs)} hits, "
        f"{sum(r.misses for r in runs)} misses)"
    )
    if unlisted:
        totals += f"\n{_count(unlisted, 'spec')} passed from the cache alone (-v lists them)"
    return f"{table}\n{totals}" if shown else totals


def _built(run: SpecRun) -> int:
    return sum(not s.cached for s in run.steps)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
