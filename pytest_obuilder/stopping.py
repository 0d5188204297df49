"""Clean stops of a pytest session: SIGINT, SIGTERM and SIGHUP all end it like Ctrl-C.

pytest turns Ctrl-C (KeyboardInterrupt) into a clean end: the running test is interrupted, the
session finishes and unconfigures, and the plugin's builder then waits until the cancelled
steps' containers are gone. SIGTERM (a CI job being cancelled) and SIGHUP (a closed terminal)
would kill the process outright and leave containers running; here they take the same path.
The session's exit status says which signal stopped it (130, 143, 129), in every pytest-xdist
worker too. Signals after the first are ignored while the session stops: the wait is bounded.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """The handlers installed for one pytest process (none outside the main thread)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            print("obuilder: still stopping the running steps...", file=sys.stderr)
            return
        self.signum = signum
        raise KeyboardInterrupt(signal.Signals(signum).name)

    def restore(self) -> None:
        """Put the previous handlers back."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


stop_key = pytest.StashKey[StopSignals]()
