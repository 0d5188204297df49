"""In-process single-flight: concurrent requests for the same key share one execution.

The shape of BuildKit's `flightcontrol.Group`, with one difference: callers can share state
while the execution runs (a step's log, followed from its first byte), so joining and waiting
are two steps:

    with flights.join(key, SharedLog, execute) as flight:
        flight.state.follow(emit, cancel)      # the shared state, e.g. the log so far, then live
        outcome = flight.wait(cancel)          # the execution's result (or its exception)

Invariants:

- At most one execution per key runs in this process at any time; it runs in a thread of its
  own, started by the first caller to join, with `fn(state, stop)`.
- `stop` is set exactly when every caller that joined the execution has left before it
  finished: an execution is cancelled only when no one wants its result any more.
- A caller that joins while an execution is stopping (every earlier caller left, `fn` has
  not returned yet) waits for it to end (calling `on_wait` once), then starts a new one.
- Every caller still joined when `fn` returns gets its result, or its exception re-raised.
- The shared state is closed (`close_state`) exactly once, when the execution has ended and
  its last caller has left, whichever comes last.
- `wait_idle` returns once no execution runs, so a builder can wait for the executions its
  cancelled callers left behind before it closes (containers are gone then).

Nothing here knows about steps, logs or processes: the cross-process part of a step's
single-flight is `step_lock.StepLocks`, which a step's `fn` uses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

S = TypeVar("S")
T = TypeVar("T")


class FlightCancelled(Exception):
    """The caller's own cancel event was set before the execution finished."""


class _Execution(Generic[S, T]):
    def __init__(self, state: S) -> None:
        self.state = state
        self.callers = 0
        self.stop = threading.Event()
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class Flight(Generic[S, T]):
    """One caller's membership in an execution: its shared `state`, and `wait` for the end."""

    def __init__(self, execution: _Execution[S, T]) -> None:
        self._execution = execution

    @property
    def state(self) -> S:
        """The state shared by every caller of this execution (made once, when it started)."""
        return self._execution.state

    def wait(self, cancel: threading.Event | None = None) -> T:
        """The execution's result; its exception re-raised; FlightCancelled if `cancel` is set
        first (the caller leaves when its `join` block ends)."""
        execution = self._execution
        while not execution.done.wait(_CANCEL_CHECK):
            if cancel is not None and cancel.is_set():
                raise FlightCancelled
        if execution.error is not None:
            raise execution.error
        return execution.result  # type: ignore[return-value]


_CANCEL_CHECK = 0.1
"""Seconds between looks at a waiting caller's cancel event (it is not a condition we own)."""


class Flights(Generic[S, T]):
    """The executions in progress in this process, by key. Thread-safe."""

    def __init__(
        self, name: str = "flight", close_state: Callable[[S], None] = lambda _: None
    ) -> None:
        """`close_state(state)` runs once an execution has ended and its last caller left."""
        self._name = name
        self._close_state = close_state
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._executions: dict[str, _Execution[S, T]] = {}

    def keys(self) -> list[str]:
        """The keys with an execution in progress (running or stopping)."""
        with self._lock:
            return list(self._executions)

    @contextmanager
    def join(
        self,
        key: str,
        new_state: Callable[[], S],
        fn: Callable[[S, threading.Event], T],
        *,
        on_wait: Callable[[], None] = lambda: None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Flight[S, T]]:
        """Join the execution of `key`, starting `fn(new_state(), stop)` if none runs.

        Leaving the block leaves the execution; the last caller to leave before it finished
        stops it. Raises FlightCancelled if `cancel` is set while waiting for a stopping
        execution to end.
        """
        execution = self._enter(key, new_state, fn, on_wait, cancel)
        try:
            yield Flight(execution)
        finally:
            with self._lock:
                execution.callers -= 1
                last = execution.callers == 0
                if last and not execution.done.is_set():
                    execution.stop.set()
                finished = last and execution.done.is_set()
            if finished:
                self._close_state(execution.state)

    def _enter(
        self,
        key: str,
        new_state: Callable[[], S],
        fn: Callable[[S, threading.Event], T],
        on_wait: Callable[[], None],
        cancel: threading.Event | None,
    ) -> _Execution[S, T]:
        waited = False
        while True:
            with self._lock:
                execution = self._executions.get(key)
                if execution is None:
                    execution = _Execution(new_state())
                    execution.callers = 1
                    self._executions[key] = execution
                    self._start(key, execution, fn)
                    return execution
                if not execution.stop.is_set():
                    execution.callers += 1
                    return execution
            if not waited:
                on_wait()
                waited = True
            while not execution.done.wait(_CANCEL_CHECK):
                if cancel is not None and cancel.is_set():
                    raise FlightCancelled

    def _start(
        self, key: str, execution: _Execution[S, T], fn: Callable[[S, threading.Event], T]
    ) -> None:
        def run() -> None:
            try:
                execution.result = fn(execution.state, execution.stop)
            except BaseException as e:  # handed to every caller; nothing to do here
                execution.error = e
            finally:
                with self._lock:
                    del self._executions[key]
                    execution.done.set()
                    self._idle.notify_all()
                    abandoned = execution.callers == 0
                if abandoned:
                    self._close_state(execution.state)

        threading.Thread(target=run, name=f"{self._name}-{key[:12]}", daemon=True).start()

    def stop_all(self) -> None:
        """Stop every execution in progress, whoever still waits for it (closing time)."""
        with self._lock:
            for execution in self._executions.values():
                execution.stop.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no execution runs (True) or `timeout` seconds have passed (False)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._executions:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True
