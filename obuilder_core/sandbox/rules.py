"""The rules of a sandbox that the builder asks for: the shell of `run` steps, how a copy is
unpacked, which users a step may run as (as OBuilder's `S.SANDBOX` has `shell` and `tar`)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import BinaryIO

from obuilder_core.log import Emit
from obuilder_core.sandbox.base import RunConfig
from obuilder_core.sandbox.errors import SandboxError
from obuilder_core.sandbox.limits import Limits
from obuilder_core.spec.model import NamedUser, User

POSIX_SHELL = ("/usr/bin/env", "bash", "-c")
"""OBuilder's default shell for `run` steps in a Linux container."""


UNPACK_ENV = (("PATH", "/bin:/usr/bin"),)


class PosixRules:
    """The rules of a Linux container sandbox (runc's, and OBuilder's): bash for `run`, the
    image's own `tar -xf -` for copies, numeric users only (a name means nothing before the
    container's /etc/passwd is read, and runc does not read it)."""

    @property
    def default_shell(self) -> tuple[str, ...]:
        """See `Sandbox.default_shell`: `/usr/bin/env bash -c`."""
        return POSIX_SHELL

    def unpack_config(self, limits: Limits) -> RunConfig:
        """See `Sandbox.unpack_config`: `tar -xf -` run as root in `/`."""
        return RunConfig(argv=("tar", "-xf", "-"), cwd="/", env=UNPACK_ENV, limits=limits)

    def check_user(self, user: User) -> None:
        """See `Sandbox.check_user`: `(user (uid U) (gid G))` only."""
        if isinstance(user, NamedUser):
            raise SandboxError(
                f"user {user.name!r}: this sandbox needs a numeric (user (uid U) (gid G))"
            )


class UnavailableSandbox(PosixRules):
    """Stands in for a sandbox that cannot run here (e.g. runc is not installed): every run
    fails with `reason`, so that a store can still be maintained."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def describe(self) -> str:
        """`no sandbox: REASON`."""
        return f"no sandbox: {self.reason}"

    def run(
        self,
        config: RunConfig,
        rootfs: Path,
        *,
        log: Emit,
        stdin: bytes | BinaryIO | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Raise SandboxError(reason)."""
        raise SandboxError(self.reason)
