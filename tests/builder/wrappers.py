"""Wrappers around the real sandbox and store that let a test decide *when* things happen.

Tests must not depend on timing: a step that "takes a few seconds" so that a second client can
attach in time is a race. Instead a step waits at a `Gate` until the test opens it, and the
test acts on what it has seen (a line of output), never on how long something took.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

from obuilder_core.sandbox import Mount, RunConfig, Sandbox
from obuilder_core.stores import Store

GATE_DIR = "/gate"
WAIT_FOR_GATE = f"while [ ! -e {GATE_DIR}/open ]; do sleep 0.02; done"
"""Shell that blocks a step until the test calls `Gate.open()` (the wait is for an event)."""


class Gate:
    """A host directory bound read-only at /gate in every container of a `GatedSandbox`."""

    def __init__(self, dir: Path) -> None:
        self.dir = dir
        dir.mkdir(parents=True, exist_ok=True)

    def open(self) -> None:
        """Let every step waiting at the gate go on (and every later one pass at once)."""
        (self.dir / "open").touch()


class GatedSandbox:
    """The real sandbox, with the gate's directory bound into each container."""

    def __init__(self, inner: Sandbox, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate

    def run(self, config: RunConfig, rootfs: Path, **kw: object) -> None:
        mounts = (*config.mounts, Mount(self.gate.dir, GATE_DIR, readonly=True))
        self.inner.run(dataclasses.replace(config, mounts=mounts), rootfs, **kw)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)  # the sandbox's rules: shell, unpacking, users


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

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)  # the sandbox's rules: shell, unpacking, users


class ChangeBeforeCopy:
    """The real store, except that building a step with a parent first rewrites `victim`:
    after the copy step's manifest was taken, before a byte of its stream is written."""

    def __init__(self, inner: Store, victim: Path, content: bytes) -> None:
        self.inner, self.victim, self.content = inner, victim, content

    def build(self, id: str, parent: str | None, fn: Callable[[Path], None]) -> Path:
        if parent is not None:
            self.victim.write_bytes(self.content)
        return self.inner.build(id, parent, fn)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)
