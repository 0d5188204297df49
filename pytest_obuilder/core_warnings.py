"""The builder's warnings (a registry cache that failed, a full disk while recording a use)
as pytest warnings: the build goes on, and pytest shows them in its warnings summary, also
for pytest-xdist workers. Logged records would reach users only in a failing test's report."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator


class ObuilderWarning(UserWarning):
    """Something went wrong that did not fail the build (e.g. a registry cache unreachable)."""


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def core_warnings() -> Iterator[None]:
    """Collect what `obuilder_core` logs at WARNING or above during the block (from any
    thread: pulls and pushes run in their own), then issue each as an ObuilderWarning."""
    collector = _Collector()
    logger = logging.getLogger("obuilder_core")
    logger.addHandler(collector)
    try:
        yield
    finally:
        logger.removeHandler(collector)
        for message in dict.fromkeys(collector.messages):  # once each, in order
            warnings.warn(ObuilderWarning(message), stacklevel=3)
