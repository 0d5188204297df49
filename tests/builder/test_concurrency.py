"""Single-flight and cancellation with runc on btrfs: threads of one builder, and processes.

Each step prints a fresh random token: every execution of a step prints a different one, so a
step ran exactly once when all clients saw (and the store saved) the same token.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from obuilder_core.builder import Builder, BuildResult, LogEvent
from tests.builder.helpers import collect, ok, output, spec
from tests.builder.wrappers import WAIT_FOR_GATE, CountingSandbox, Gate, GatedSandbox

REPO = Path(__file__).resolve().parents[2]
TOKEN = re.compile(rb"token-(\w+)-([0-9a-f]{32})")


def _step(name: str, sleep: float = 0.5) -> str:
    # /proc/sys/kernel/random/uuid gives a new value on every read.
    return (
        f'(run (shell "sleep {sleep}; echo token-{name}-'
        '$(tr -d - < /proc/sys/kernel/random/uuid)"))'
    )


def _overlapping_specs(n: int) -> list[object]:
    """n specs sharing their first two steps; every third shares a third one too."""
    return [spec(_step("a"), _step("b"), _step(f"c{i % 3}", 0.2)) for i in range(n)]


def _tokens(data: bytes) -> dict[str, set[bytes]]:
    seen: dict[str, set[bytes]] = {}
    for name, token in TOKEN.findall(data):
        seen.setdefault(name.decode(), set()).add(token)
    return seen


def test_ten_concurrent_builds_in_one_builder_run_each_step_once(
    btrfs_builder: Builder, tmp_path: Path
) -> None:
    counting = CountingSandbox(btrfs_builder.sandbox)
    btrfs_builder.sandbox = counting
    specs = _overlapping_specs(10)
    logs = [collect() for _ in specs]
    with ThreadPoolExecutor(10) as pool:
        results = list(
            pool.map(lambda i: btrfs_builder.build(specs[i], tmp_path, log=logs[i][1]), range(10))
        )
    for r in results:
        ok(r)
    assert len(counting.argvs) == 5  # a, b, c0, c1, c2
    merged: dict[str, set[bytes]] = {}
    for events, _ in logs:
        seen = _tokens(output(events))
        assert set(seen) >= {"a", "b"} and len(seen) == 3  # the full log: all three steps
        for name, tokens in seen.items():
            merged.setdefault(name, set()).update(tokens)
    assert all(len(t) == 1 for t in merged.values()), merged


GATED = f'(run (shell "echo start; {WAIT_FOR_GATE}; echo end"))'
"""A step that prints `start`, then waits until the test opens its gate."""


def _gated(builder: Builder, tmp_path: Path) -> Gate:
    gate = Gate(tmp_path / "gate")
    builder.sandbox = GatedSandbox(builder.sandbox, gate)
    return gate


def test_cancelling_one_of_two_clients_keeps_the_build(
    btrfs_builder: Builder, tmp_path: Path
) -> None:
    gate = _gated(btrfs_builder, tmp_path)
    s = spec(GATED)
    ok(btrfs_builder.build(spec(), tmp_path))  # base image first
    cancel_a, cancel_b = threading.Event(), threading.Event()
    (events_a, log_a), (events_b, log_b) = collect(), collect()
    with ThreadPoolExecutor(2) as pool:
        fa = pool.submit(btrfs_builder.build, s, tmp_path, cancel=cancel_a, log=log_a)
        fb = pool.submit(btrfs_builder.build, s, tmp_path, cancel=cancel_b, log=log_b)
        _wait_for(lambda: b"start" in output(events_a) and b"start" in output(events_b))
        cancel_a.set()
        a = fa.result()  # returns at once, the step still runs for b
        assert a.failure is not None and "Cancelled" in a.failure.message
        assert btrfs_builder.in_progress()
        gate.open()
        b = ok(fb.result())
    assert output(events_b).endswith(b"start\nend\n")
    assert btrfs_builder.store.result(b.id or "") is not None


def test_cancelling_all_clients_kills_the_step(btrfs_builder: Builder, tmp_path: Path) -> None:
    _gated(btrfs_builder, tmp_path)  # never opened: the step would run for ever
    s = spec(GATED)
    ok(btrfs_builder.build(spec(), tmp_path))
    cancels = [threading.Event(), threading.Event()]
    logs = [collect(), collect()]
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(btrfs_builder.build, s, tmp_path, cancel=c, log=log)
            for c, (_, log) in zip(cancels, logs, strict=True)
        ]
        _wait_for(lambda: all(b"start" in output(events) for events, _ in logs))
        for c in cancels:
            c.set()
        results = [f.result() for f in futures]
    assert all(r.failure is not None for r in results)
    _wait_for(lambda: not btrfs_builder.in_progress())
    # Nothing was cached: the step starts again (and this client stops it once it has).
    cancel = threading.Event()
    events: list[LogEvent] = []

    def log(event: LogEvent) -> None:
        events.append(event)
        if event.kind == "output" and b"start" in event.data:
            cancel.set()

    again = btrfs_builder.build(s, tmp_path, cancel=cancel, log=log)
    assert again.failure is not None and b"start" in output(events)
    _wait_for(lambda: not btrfs_builder.in_progress())


# -- across processes ---------------------------------------------------------------------------

CLIENT = """
import json, sys
from pathlib import Path
from obuilder_core.builder import Builder
from obuilder_core.spec import parse_spec
from tests.builder.wrappers import Gate, GatedSandbox
store, text, ctx, gate = sys.argv[1:5]

def send(**fields):
    print(json.dumps(fields), flush=True)

with Builder.open(store) as b:
    b.sandbox = GatedSandbox(b.sandbox, Gate(Path(gate)))
    r = b.build(
        parse_spec(text, "t.spec"), Path(ctx), log=lambda e: send(kind=e.kind, data=e.data.hex())
    )
    send(ok=r.ok, id=r.id, failure=r.failure and r.failure.message)
"""


class Client:
    """A builder in another process whose events the test reads as they happen."""

    def __init__(self, store: str, text: str, ctx: Path, gate: Gate) -> None:
        self.output = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT, store, text, str(ctx), str(gate.dir)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )

    def read_until(self, wanted: bytes) -> None:
        """Read events until the output so far contains `wanted`."""
        assert self.proc.stdout is not None
        while wanted not in self.output:
            line = self.proc.stdout.readline()
            assert line, f"the client ended before printing {wanted!r}: {self.output!r}"
            event = json.loads(line)
            assert "ok" not in event, f"the client finished before printing {wanted!r}: {event}"
            if event["kind"] == "output":
                self.output += bytes.fromhex(event["data"])

    def result(self) -> dict[str, object]:
        """Read the remaining events and return the final report."""
        out, _ = self.proc.communicate(timeout=300)
        *events, last = [json.loads(line) for line in out.splitlines()]
        for e in events:
            if e["kind"] == "output":
                self.output += bytes.fromhex(e["data"])
        return last  # type: ignore[no-any-return]


def _store_spec(builder: Builder) -> str:
    return f"{builder.store.kind}:{builder.store.state_dir().parent}"


def test_ten_processes_share_each_step(btrfs_builder: Builder, tmp_path: Path) -> None:
    store = _store_spec(btrfs_builder)
    ok(btrfs_builder.build(spec(), tmp_path))
    sh = "(shell /bin/sh -c)"
    texts = [
        f"((from busybox) {sh} {_step('a', 1)} {_step('b')} {_step(f'c{i % 3}', 0.2)})"
        for i in range(10)
    ]
    gate = Gate(tmp_path / "gate")
    gate.open()  # the steps do not wait: whoever comes late gets a cache hit
    clients = [Client(store, t, tmp_path, gate) for t in texts]
    merged: dict[str, set[bytes]] = {}
    for c in clients:
        report = c.result()
        assert report["ok"], report
        seen = _tokens(c.output)
        assert len(seen) == 3, c.output
        for name, tokens in seen.items():
            merged.setdefault(name, set()).update(tokens)
    assert all(len(t) == 1 for t in merged.values()), merged
    steps_dir = btrfs_builder.store.state_dir() / "steps"
    left = {p.name for p in steps_dir.iterdir()}
    assert left and all(n == ".sweep" or n.endswith(".lock") for n in left), left  # no logs
    Builder.open(store).close()  # opening the store sweeps the lock files no one holds
    assert [p.name for p in steps_dir.iterdir()] == [".sweep"]


def test_a_failure_is_shared_with_followers_in_other_processes(
    btrfs_builder: Builder, tmp_path: Path
) -> None:
    store = _store_spec(btrfs_builder)
    ok(btrfs_builder.build(spec(), tmp_path))
    token = "token-f-$(tr -d - < /proc/sys/kernel/random/uuid)"
    fail = f'(run (shell "echo {token}; {WAIT_FOR_GATE}; exit 3"))'
    gate = Gate(tmp_path / "gate")
    text = f"((from busybox) (shell /bin/sh -c) {fail})"
    clients = [Client(store, text, tmp_path, gate) for _ in range(3)]
    for c in clients:
        c.read_until(b"token-f-")  # all three follow the one execution ...
    gate.open()  # ... before it fails
    for c in clients:
        report = c.result()
        assert not report["ok"]
        assert report["failure"] == (
            f'"/bin/sh" "-c" "echo {token}; {WAIT_FOR_GATE}; exit 3" failed with exit status 3'
        )
    tokens = set().union(*(_tokens(c.output).get("f", set()) for c in clients))
    assert len(tokens) == 1  # one execution, seen by all three


def test_follower_takes_over_when_the_owner_dies(btrfs_builder: Builder, tmp_path: Path) -> None:
    store = _store_spec(btrfs_builder)
    ok(btrfs_builder.build(spec(), tmp_path))
    gate = _gated(btrfs_builder, tmp_path)
    owner = Client(store, f"((from busybox) (shell /bin/sh -c) {GATED})", tmp_path, gate)
    events, log = collect()
    done: list[BuildResult] = []
    t = threading.Thread(
        target=lambda: done.append(btrfs_builder.build(spec(GATED), tmp_path, log=log))
    )
    try:
        owner.read_until(b"start")
        t.start()
        _wait_for(lambda: b"start" in output(events))  # following the owner's run
        os.kill(owner.proc.pid, signal.SIGKILL)
    finally:
        owner.proc.kill()
        owner.proc.wait()
    _wait_for(lambda: output(events).count(b"start\n") == 2)  # its own run, after the owner's
    gate.open()
    t.join()
    result = ok(done[0])
    # the dead owner's output so far, then the follower's own complete run
    assert output(events).splitlines()[-3:] == [b"start", b"start", b"end"]
    assert btrfs_builder.store.result(result.id or "") is not None


def _wait_for(cond: object, timeout: float = 120.0) -> None:
    """Wait for a condition another thread or process makes true (the timeout catches hangs)."""
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)
