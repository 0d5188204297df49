"""Helpers for the sandbox tests: shell configs, what runc knows, running and checking."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from obuilder_core.sandbox import RunConfig, RuncSandbox, StepFailed

PATH_ENV = (("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),)


def sh(script: str, **fields: Any) -> RunConfig:
    """A RunConfig running `script` with busybox's sh and a PATH."""
    fields.setdefault("env", PATH_ENV)
    return RunConfig(argv=("/bin/sh", "-c", script), **fields)


def runc_states(state_dir: Path) -> list[dict[str, Any]]:
    """`runc list` of a sandbox's state dir: one dict (id, pid, status, ...) per container."""
    proc = subprocess.run(
        ["runc", "--root", str(state_dir / "runc"), "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout or "null") or []


def runc_containers(state_dir: Path) -> list[str]:
    """The ids runc still knows in a sandbox's state dir."""
    return [c["id"] for c in runc_states(state_dir)]


def run(sandbox: RuncSandbox, rootfs: Path, config: RunConfig, **kwargs: Any) -> str:
    """Run `config` and return its log as text; a failure shows the log too."""
    out = bytearray()
    try:
        sandbox.run(config, rootfs, log=out.extend, **kwargs)
    except StepFailed as e:
        e.add_note(f"its log: {out.decode(errors='replace')!r}")
        raise
    return out.decode()


def assert_no_leftovers(sandbox: RuncSandbox) -> None:
    """No container is known to runc and no bundle (config, secrets) remains."""
    assert runc_containers(sandbox.state_dir) == []
    assert list(sandbox.bundles.iterdir()) == []
