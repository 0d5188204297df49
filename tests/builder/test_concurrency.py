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

from obuilder_core.builder import Builder, BuildResult
from obuilder_core.sandbox import RunConfig, Sandbox
from tests.builder.conftest import collect, ok, output, spec

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


class CountingSandbox:
    """The real sandbox, counting the commands it runs."""

    def __init__(self, inner: Sandbox) -> None:
        self.inner = inner
        self.argvs: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    def run(self, config: RunConfig, rootfs: Path, **kw: object) -> None:
        with self._lock:
            self.argvs.append(config.argv)
        self.inner.run(config, rootfs, **kw)  # type: ignore[arg-type]


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


def test_cancelling_one_of_two_clients_keeps_the_build(
    btrfs_builder: Builder, tmp_path: Path
) -> None:
    s = spec('(run (shell "echo start; sleep 2; echo end"))')
    ok(btrfs_builder.build(spec(), tmp_path))  # base image first
    cancel_a, cancel_b = threading.Event(), threading.Event()
    events_b, log_b = collect()
    with ThreadPoolExecutor(2) as pool:
        fa = pool.submit(btrfs_builder.build, s, tmp_path, cancel=cancel_a)
        fb = pool.submit(btrfs_builder.build, s, tmp_path, cancel=cancel_b, log=log_b)
        _wait_for(lambda: b"start" in output(events_b))
        cancel_a.set()
        a = fa.result(timeout=5)  # returns at once, the step still runs
        assert a.failure is not None and "Cancelled" in a.failure.message
        b = ok(fb.result(timeout=60))
    assert output(events_b).endswith(b"start\nend\n")
    assert btrfs_builder.store.result(b.id or "") is not None


def test_cancelling_all_clients_kills_the_step(btrfs_builder: Builder, tmp_path: Path) -> None:
    s = spec('(run (shell "echo start; sleep 120; echo end"))')
    ok(btrfs_builder.build(spec(), tmp_path))
    cancels = [threading.Event(), threading.Event()]
    events, log = collect()
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(btrfs_builder.build, s, tmp_path, cancel=c, log=log) for c in cancels
        ]
        _wait_for(lambda: b"start" in output(events))
        for c in cancels:
            c.set()
        results = [f.result(timeout=10) for f in futures]
    assert all(r.failure is not None for r in results)
    _wait_for(lambda: not btrfs_builder.in_progress())
    assert time.monotonic() - started < 60
    again = btrfs_builder.build(s, tmp_path, cancel=_set_after(1.0))
    assert again.failure is not None  # nothing was cached: it started again (and we stopped it)
    _wait_for(lambda: not btrfs_builder.in_progress())


# -- across processes ---------------------------------------------------------------------------

CLIENT = """
import json, sys
from pathlib import Path
from obuilder_core.builder import Builder
from obuilder_core.spec import parse_spec
store, text, ctx = sys.argv[1:4]
with Builder.open(store) as b:
    out = []
    r = b.build(parse_spec(text, "t.spec"), Path(ctx), log=lambda e: out.append(e.data.hex()))
    fail = r.failure and r.failure.message
    print(json.dumps({"ok": r.ok, "id": r.id, "events": out, "failure": fail}))
"""


def _spawn(store: str, text: str, ctx: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT, store, text, str(ctx)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


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
    procs = [_spawn(store, t, tmp_path) for t in texts]
    merged: dict[str, set[bytes]] = {}
    for p in procs:
        out, _ = p.communicate(timeout=120)
        report = json.loads(out)
        assert report["ok"], report
        data = b"".join(bytes.fromhex(h) for h in report["events"])
        seen = _tokens(data)
        assert len(seen) == 3, data
        for name, tokens in seen.items():
            merged.setdefault(name, set()).update(tokens)
    assert all(len(t) == 1 for t in merged.values()), merged
    steps_dir = btrfs_builder.store.state_dir() / "steps"
    assert sorted(p.name for p in steps_dir.iterdir()) == []  # no lock or log files left


def test_a_failure_is_shared_with_followers_in_other_processes(
    btrfs_builder: Builder, tmp_path: Path
) -> None:
    store = _store_spec(btrfs_builder)
    ok(btrfs_builder.build(spec(), tmp_path))
    fail = '(run (shell "sleep 3; echo token-f-$(tr -d - < /proc/sys/kernel/random/uuid); exit 3"))'
    procs = [
        _spawn(store, f"((from busybox) (shell /bin/sh -c) {fail})", tmp_path) for _ in range(3)
    ]
    tokens: set[bytes] = set()
    for p in procs:
        report = json.loads(p.communicate(timeout=120)[0])
        assert not report["ok"]
        data = b"".join(bytes.fromhex(h) for h in report["events"])
        tokens |= _tokens(data).get("f", set())
    assert len(tokens) == 1  # one execution, seen by all three


def test_follower_takes_over_when_the_owner_dies(btrfs_builder: Builder, tmp_path: Path) -> None:
    store = _store_spec(btrfs_builder)
    ok(btrfs_builder.build(spec(), tmp_path))
    step = '(run (shell "echo start; sleep 3; echo end"))'
    owner = _spawn(store, f"((from busybox) (shell /bin/sh -c) {step})", tmp_path)
    steps_dir = btrfs_builder.store.state_dir() / "steps"
    try:
        _wait_for(lambda: any(p.suffix == ".log" and p.stat().st_size for p in steps_dir.iterdir()))
        events, log = collect()
        done: list[BuildResult] = []
        t = threading.Thread(
            target=lambda: done.append(btrfs_builder.build(spec(step), tmp_path, log=log))
        )
        t.start()
        _wait_for(lambda: b"start" in output(events))
        os.kill(owner.pid, signal.SIGKILL)
    finally:
        owner.wait()
    t.join(60)
    result = ok(done[0])
    # the dead owner's output so far, then the follower's own complete run
    assert output(events).endswith(b"start\nend\n")
    assert output(events).count(b"start\n") == 2
    assert btrfs_builder.store.result(result.id or "") is not None


def _wait_for(cond: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _set_after(seconds: float) -> threading.Event:
    event = threading.Event()
    threading.Timer(seconds, event.set).start()
    return event
