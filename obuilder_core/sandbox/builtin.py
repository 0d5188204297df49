"""The built-in sandbox (runc), registered as a plugin (see `obuilder_core.plugins`)."""

from __future__ import annotations

from pathlib import Path

from obuilder_core.plugins import hookimpl
from obuilder_core.sandbox.base import Sandbox


@hookimpl(trylast=True)
def obuilder_sandbox(state_dir: Path, fast_sync: bool) -> Sandbox | None:
    """runc, unless another plugin provides a sandbox first."""
    from obuilder_core.sandbox.runc import RuncSandbox

    return RuncSandbox(state_dir, fast_sync=fast_sync)
