"""Fakes of the slow parts for logic tests: an image source and a sandbox that run nothing.

Every behaviour they stand in for is also shown with the real parts (runc, real images).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from obuilder_core.images import ImageConfig, ImageNotFound
from obuilder_core.sandbox import Cancelled, RunConfig, StepFailed
from obuilder_core.sandbox.rules import PosixRules


class ScriptedImages:
    """An image source with the images `names` (by default just `img`), whose env is PATH=/bin."""

    def __init__(self, names: tuple[str, ...] = ("img",)) -> None:
        self.names = names

    def fetch(self, name: str, rootfs: Path, log: object, progress: object = None) -> ImageConfig:
        if name not in self.names:
            raise ImageNotFound(f"no image {name}")
        (rootfs / "bin").mkdir()
        return ImageConfig(env=(("PATH", "/bin"),))


class ScriptedSandbox(PosixRules):
    """Runs nothing: `block` waits for cancel, then until `may_finish_cancelling` is set (so
    a test can hold a step in the middle of being cancelled), `boom` raises a RuntimeError,
    `fail` exits 1, anything else is echoed; `act_as` maps other commands to one of those.
    Records every config."""

    def __init__(self, act_as: Mapping[str, str] = {}) -> None:
        self.act_as = dict(act_as)
        self.configs: list[RunConfig] = []
        self.may_finish_cancelling = threading.Event()
        self.may_finish_cancelling.set()

    def describe(self) -> str:
        return "scripted sandbox"

    def run(
        self,
        config: RunConfig,
        rootfs: Path,
        *,
        log: object,
        stdin: object = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.configs.append(config)
        cmd = self.act_as.get(config.argv[-1], config.argv[-1])
        if cmd == "block":
            log(b"blocking\n")  # type: ignore[operator]
            assert cancel is not None
            cancel.wait()
            self.may_finish_cancelling.wait()
            raise Cancelled(config.argv)
        if cmd == "boom":
            raise RuntimeError("boom")
        if cmd == "fail":
            raise StepFailed(config.argv, status=1)
        log(cmd.encode() + b"\n")  # type: ignore[operator]
