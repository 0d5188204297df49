"""Clean stops: SIGINT, SIGTERM and SIGHUP cancel the build, and the command waits for it.

A build runs in a worker thread while the main thread waits. The first stop signal raises
`Stopped` in the main thread; the build is cancelled, the builder's `close()` (when its `with`
block ends) waits until every cancelled step's container is gone, and the command exits with
128 + the signal's number (130, 143, 129), as a shell reports a process killed by it. Further
signals while stopping are ignored: the wait is bounded, and leaving early would leave
containers running.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TypeVar

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
JOIN_GRACE = 30.0  # seconds the build thread gets to return after it was cancelled


class Stopped(BaseException):
    """A stop signal arrived (a BaseException, like KeyboardInterrupt: nothing catches it
    by accident)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP."""
        return 128 + self.signum


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """While in the block, the first stop signal raises Stopped in the main thread and later
    ones are ignored. The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    stopping: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        if stopping:
            print("obuilder: still stopping the running steps...", file=sys.stderr)
            return
        stopping.append(signum)
        raise Stopped(signum)

    previous = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_until_stopped(work: Callable[[threading.Event], T]) -> T:
    """Run `work(cancel)` in a thread and return its result. On Stopped, set `cancel`, wait
    (bounded) for `work` to return, and re-raise."""
    cancel = threading.Event()
    box: list[T] = []
    raised: list[BaseException] = []

    def run() -> None:
        try:
            box.append(work(cancel))
        except BaseException as e:  # re-raised in the caller's thread, below
            raised.append(e)

    thread = threading.Thread(target=run, name="build", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except Stopped:
        cancel.set()
        thread.join(JOIN_GRACE)
        raise
    if raised:
        raise raised[0]
    return box[0]
