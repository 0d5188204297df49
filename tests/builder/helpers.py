"""Helpers for the builder tests: specs from busybox, collecting log events, a real Builder
(runc) on a fresh store with busybox imported, and cleaning up its containers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from obuilder_core.builder import Builder, BuildResult, LogEvent
from obuilder_core.images import LocalImages
from obuilder_core.sandbox import RuncSandbox, state_dir_for
from obuilder_core.spec import parse_spec
from tests.fixtures.busybox import delete_containers
from tests.fixtures.root import require_root, require_tool

SH = "(shell /bin/sh -c)"


def spec(*ops: str, image: str = "busybox", builds: str = "") -> object:
    """A spec from busybox with the sh shell and the given op forms."""
    return parse_spec(f"({builds} (from {image}) {SH} {' '.join(ops)})", "test.spec")


def collect() -> tuple[list[LogEvent], Callable[[LogEvent], None]]:
    """A list of events and the callback that fills it."""
    events: list[LogEvent] = []
    return events, events.append


def output(events: list[LogEvent]) -> bytes:
    """All raw output in `events`."""
    return b"".join(e.data for e in events if e.kind == "output")


def text(events: list[LogEvent]) -> str:
    """The events as the CLI prints them (headings and notes on their own lines)."""
    return "".join(
        e.data.decode(errors="replace") + ("" if e.kind == "output" else "\n") for e in events
    )


def ok(result: BuildResult) -> BuildResult:
    """`result`, asserting it succeeded (showing the failure otherwise)."""
    assert result.failure is None, result.failure
    return result


def make_builder(store_spec: str, busybox_oci: Path) -> Builder:
    """A Builder on `store_spec` with the busybox image imported as `busybox`."""
    builder = Builder.open(store_spec)
    LocalImages(builder.store.state_dir() / "images").import_("busybox", busybox_oci)
    return builder


def kill_leftovers(builder: Builder) -> None:
    """Delete every runc container still in the builder's sandbox, then its bundles."""
    state = state_dir_for(builder.store.state_dir())
    delete_containers(state / "runc")
    with contextlib.suppress(Exception):
        RuncSandbox(state).remove_leftovers()


@contextlib.contextmanager
def running_builder(store_spec: str, busybox_oci: Path) -> Iterator[Builder]:
    """`make_builder`, skipping without root or runc; closed (containers killed) at the end."""
    require_root()
    require_tool("runc")
    builder = make_builder(store_spec, busybox_oci)
    try:
        yield builder
    finally:
        kill_leftovers(builder)
        builder.close()
