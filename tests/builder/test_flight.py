"""The single-flight without root, runc or a store: fake steps in threads and in processes.

`Flights` (one process) is driven by threads; `StepLocks` (across processes) by child
processes that each ask for the same step. A fake step prints `start`, waits at a gate (a file
the test creates once it has seen what it needs), prints `end` and "commits" by creating a
marker file. Every execution appends a line to a counter file, so a test knows exactly how
often the step ran. Nothing waits for a guessed amount of time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from obuilder_core.builder.flights import FlightCancelled, Flights
from obuilder_core.builder.step_lock import StepLocks
from obuilder_core.log import SharedLog

REPO = Path(__file__).resolve().parents[2]

# -- one process: Flights -----------------------------------------------------------------------


def test_concurrent_callers_share_one_execution() -> None:
    flights: Flights[list[str], str] = Flights()
    release = threading.Event()
    joined = threading.Semaphore(0)
    runs: list[int] = []

    def fn(state: list[str], stop: threading.Event) -> str:
        runs.append(1)
        release.wait()
        return "done"

    results: list[str] = []

    def call() -> None:
        with flights.join("k", list, fn) as flight:
            joined.release()
            results.append(flight.wait())

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for _ in threads:
        joined.acquire()  # all five are in before the execution may end
    release.set()
    for t in threads:
        t.join()
    assert results == ["done"] * 5 and runs == [1]
    assert flights.keys() == []


def test_the_execution_stops_only_when_every_caller_has_left() -> None:
    flights: Flights[None, str] = Flights()
    stopped = threading.Event()

    def fn(state: None, stop: threading.Event) -> str:
        stop.wait()
        stopped.set()
        return "stopped"

    cancel_a, cancel_b = threading.Event(), threading.Event()
    with flights.join("k", lambda: None, fn) as a, flights.join("k", lambda: None, fn) as b:
        cancel_a.set()
        with pytest.raises(FlightCancelled):
            a.wait(cancel_a)
        assert not stopped.is_set()  # b is still joined
        cancel_b.set()
        with pytest.raises(FlightCancelled):
            b.wait(cancel_b)
    assert flights.wait_idle(60) and stopped.is_set()


def test_a_caller_arriving_while_it_stops_waits_then_starts_anew() -> None:
    flights: Flights[None, int] = Flights()
    may_end = threading.Event()
    count: list[int] = []

    def fn(state: None, stop: threading.Event) -> int:
        count.append(1)
        if len(count) == 1:
            stop.wait()
            may_end.wait()  # still stopping
        return len(count)

    with flights.join("k", lambda: None, fn):
        pass  # left at once: the execution is stopping
    waited = threading.Event()
    result: list[int] = []

    def late() -> None:
        with flights.join("k", lambda: None, fn, on_wait=waited.set) as flight:
            result.append(flight.wait())

    t = threading.Thread(target=late)
    t.start()
    waited.wait()
    may_end.set()
    t.join()
    assert result == [2] and count == [1, 1]


def test_an_exception_reaches_every_caller_and_state_closes_once() -> None:
    closed: list[object] = []
    flights: Flights[list[int], None] = Flights(close_state=closed.append)
    go = threading.Event()

    def fn(state: list[int], stop: threading.Event) -> None:
        go.wait()
        raise RuntimeError("boom")

    with flights.join("k", list, fn) as a, flights.join("k", list, fn) as b:
        assert a.state is b.state
        go.set()
        for flight in (a, b):
            with pytest.raises(RuntimeError, match="boom"):
                flight.wait()
        assert closed == []  # callers still there
    assert len(closed) == 1


# -- across processes: StepLocks ----------------------------------------------------------------

CHILD = """
import json, os, sys, threading, time
from pathlib import Path
from obuilder_core.builder.step_lock import StepLocks
from obuilder_core.errors import ObuilderError
from obuilder_core.log import SharedLog

steps, work, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
committed = work / "committed"

def execute(write, stop):
    with open(work / "executions", "a") as f:
        f.write(f"{os.getpid()}\\n")
    write(b"start\\n")
    while not (work / "gate").exists():
        if stop.is_set():
            raise ObuilderError("cancelled")
        time.sleep(0.01)
    if mode == "fail":
        raise ObuilderError("the step failed")
    write(b"end\\n")
    committed.mkdir()

log = SharedLog()
def follow():
    log.follow(lambda d: print(json.dumps({"output": d.decode()}), flush=True))
t = threading.Thread(target=follow)
t.start()
try:
    outcome = StepLocks(steps).run("step", execute, log, threading.Event(), committed.exists)
finally:
    log.finish()
t.join()
print(json.dumps({"outcome": outcome.kind, "message": outcome.message}), flush=True)
"""


class Child:
    """A process asking for the step; the test reads its output as it comes."""

    def __init__(self, tmp: Path, mode: str = "ok") -> None:
        self.output = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp / "steps"), str(tmp), mode],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )

    def read_until(self, text: str, count: int = 1) -> None:
        assert self.proc.stdout is not None
        while self.output.count(text) < count:
            line = self.proc.stdout.readline()
            assert line, f"the child ended before printing {text!r}: {self.output!r}"
            self.output += json.loads(line).get("output", "")

    def outcome(self) -> dict[str, str]:
        out, _ = self.proc.communicate(timeout=120)
        *lines, last = [json.loads(line) for line in out.splitlines()]
        self.output += "".join(e["output"] for e in lines)
        return last  # type: ignore[no-any-return]


def _executions(tmp: Path) -> int:
    path = tmp / "executions"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_one_process_runs_the_step_the_others_follow_it(tmp_path: Path) -> None:
    children = [Child(tmp_path) for _ in range(3)]
    for c in children:
        c.read_until("start")  # all three see the one run, owner or follower
    (tmp_path / "gate").touch()
    assert [c.outcome()["outcome"] for c in children] == ["saved"] * 3
    assert all(c.output == "start\nend\n" for c in children)
    assert _executions(tmp_path) == 1


def test_a_failure_reaches_the_followers_and_a_new_client_runs_it_again(tmp_path: Path) -> None:
    children = [Child(tmp_path, "fail") for _ in range(3)]
    for c in children:
        c.read_until("start")
    (tmp_path / "gate").touch()
    for c in children:
        assert c.outcome() == {"outcome": "failed", "message": "the step failed"}
    assert _executions(tmp_path) == 1
    # Failed steps are never cached: a client that did not follow that run runs it itself.
    assert Child(tmp_path, "fail").outcome()["outcome"] == "failed"
    assert _executions(tmp_path) == 2


def test_a_late_follower_gets_the_output_from_the_first_byte(tmp_path: Path) -> None:
    owner = Child(tmp_path)
    owner.read_until("start")
    late = Child(tmp_path)
    late.read_until("start")
    (tmp_path / "gate").touch()
    assert owner.outcome()["outcome"] == late.outcome()["outcome"] == "saved"
    assert late.output == "start\nend\n"
    assert Child(tmp_path).outcome()["outcome"] == "cached"  # committed: nothing runs
    assert _executions(tmp_path) == 1


def test_a_follower_takes_over_when_the_owner_is_killed(tmp_path: Path) -> None:
    owner = Child(tmp_path)
    owner.read_until("start")
    follower = Child(tmp_path)
    follower.read_until("start")
    os.kill(owner.proc.pid, signal.SIGKILL)
    owner.proc.wait()
    follower.read_until("start", count=2)  # the dead owner's output, then its own run
    (tmp_path / "gate").touch()
    assert follower.outcome()["outcome"] == "saved"
    assert follower.output == "start\nstart\nend\n"
    assert _executions(tmp_path) == 2


def test_opening_sweeps_what_a_killed_owner_left_but_not_a_live_run(tmp_path: Path) -> None:
    dead = Child(tmp_path)
    dead.read_until("start")
    os.kill(dead.proc.pid, signal.SIGKILL)
    dead.proc.wait()
    steps = tmp_path / "steps"
    assert {p.name for p in steps.iterdir()} >= {"step.lock", "step.log"}
    StepLocks(steps).sweep()
    assert [p.name for p in steps.iterdir()] == [".sweep"]
    live = Child(tmp_path)
    live.read_until("start")
    StepLocks(steps).sweep()  # its lock is held: nothing of it goes
    assert {p.name for p in steps.iterdir()} == {".sweep", "step.lock", "step.log"}
    (tmp_path / "gate").touch()
    assert live.outcome()["outcome"] == "saved"


def test_the_log_is_read_back_from_files_only(tmp_path: Path) -> None:
    # No file mode or other metadata is a signal: a filesystem that ignores fchmod (or
    # anything else) behaves the same. The outcome comes from the lock and the token.
    locks = StepLocks(tmp_path / "steps")
    log = SharedLog()
    got: list[bytes] = []
    reader = threading.Thread(target=log.follow, args=(got.append,))
    reader.start()
    try:
        outcome = locks.run(
            "s", lambda write, stop: write(b"out\n"), log, threading.Event(), lambda: False
        )
    finally:
        log.finish()
    reader.join()
    assert outcome.kind == "saved" and b"".join(got) == b"out\n"
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "steps").iterdir()}
    assert modes == {".sweep": 0o600, "s.lock": 0o600}
