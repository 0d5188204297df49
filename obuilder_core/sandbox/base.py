"""The Sandbox contract: run one command in a root filesystem, isolated from the host.

A sandbox is what a `run` step (and the unpacking of a `copy` step) executes in. The builder
hands it a `RunConfig` (argv, env, user, cwd, network, cache mounts, secrets, limits) and the
step's writable rootfs; the sandbox streams the command's output into the step log and reports
how it ended (`errors.py`). It also owns its rules (`rules.py`).
"""

from __future__ import annotations

import posixpath
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from obuilder_core.log import Emit
from obuilder_core.sandbox.errors import SandboxError, UnsupportedNetwork, dump_list
from obuilder_core.sandbox.limits import DEFAULT_LIMITS, Limits
from obuilder_core.spec.model import User

HOST_NETWORK = ("host",)
"""`RunConfig.network` for a step that shares the host's network (`(network host)`)."""


@dataclass(frozen=True)
class Mount:
    """A host directory (a cache clone) bind-mounted at `dst` inside the container."""

    src: Path
    dst: str
    readonly: bool = False


@dataclass(frozen=True)
class SecretMount:
    """A secret value visible inside the container as the read-only file `target`.

    The value is kept out of `repr()` so it cannot leak into logs or tracebacks.
    """

    target: str
    value: bytes = field(repr=False)


@dataclass(frozen=True)
class RunConfig:
    """Everything about how one command runs, except the rootfs it runs in.

    `network` is `()` for an isolated network (loopback only) or `("host",)` for the host's;
    `user` is `(uid, gid)`; `env` is `((name, value), ...)` in order (duplicates are passed on);
    `limits`: processes, memory and time the command may use.
    """

    argv: tuple[str, ...]
    cwd: str = "/"
    env: tuple[tuple[str, str], ...] = ()
    user: tuple[int, int] = (0, 0)
    hostname: str = "builder"
    domainname: str | None = None
    """The UTS domain name (`domainname`); None leaves it unset, as OBuilder does."""
    network: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    secrets: tuple[SecretMount, ...] = ()
    limits: Limits = DEFAULT_LIMITS

    def validate(self) -> None:
        """Raise SandboxError (or UnsupportedNetwork) naming the first invalid field."""
        if not self.argv:
            raise SandboxError("cannot run an empty command")
        if self.network not in ((), HOST_NETWORK):
            raise UnsupportedNetwork(
                f"Unsupported network configuration {dump_list(self.network)}"
                ' (use no network, or "host")'
            )
        for what, path in [
            ("working directory", self.cwd),
            *(("cache mount target", m.dst) for m in self.mounts),
            *(("secret target", s.target) for s in self.secrets),
        ]:
            if not posixpath.isabs(path):
                raise SandboxError(f"{what} {path!r} is not an absolute path")
        for name, _ in self.env:
            if not name or "=" in name or "\0" in name:
                raise SandboxError(f"invalid environment variable name {name!r}")


class Sandbox(Protocol):
    """Runs commands in a rootfs. Implementations are safe to call from many threads at once.

    A sandbox owns its rules (as OBuilder's `S.SANDBOX` has `shell` and `tar`): the shell of
    `run` steps, how a copy is unpacked, which users a step may run as. The builder asks it,
    so a second sandbox needs no edit of the builder.
    """

    @property
    def default_shell(self) -> tuple[str, ...]:
        """The shell `(run (shell CMD))` uses until a `(shell ...)` op sets one: CMD is
        appended. Part of every run step's id: a sandbox must not change it."""
        ...

    def unpack_config(self, limits: Limits) -> RunConfig:
        """How a copy step's tar stream (on stdin) is unpacked into the rootfs: as root,
        resolving paths inside the container (a symlink never leads out of the rootfs)."""
        ...

    def check_user(self, user: User) -> None:
        """Raise SandboxError (naming the user and why) if steps cannot run as `user`."""
        ...

    def describe(self) -> str:
        """What runs the steps, for a header line: e.g. `runc 1.1.5`, or why nothing can."""
        ...

    def run(
        self,
        config: RunConfig,
        rootfs: Path,
        *,
        log: Emit,
        stdin: bytes | BinaryIO | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Run `config.argv` with `rootfs` (writable) as `/`, returning when it exits with 0.

        stdout and stderr, merged, are passed to `log` chunk by chunk as they are produced (on
        the calling thread). `stdin` is the command's input (empty if None). Setting `cancel`
        or exceeding `config.limits.timeout` kills the command within about a second; the
        command never has more than `config.limits.pids` processes or `.memory` bytes.

        Raises StepFailed (non-zero exit or signal; with a `reason` if a limit was hit),
        Cancelled, TimedOut, or SandboxError if the command could not be started. However it
        ends, nothing of the sandbox is left running, and mount points the sandbox had to
        create in `rootfs` are removed again, so `rootfs` holds only what the command wrote.
        Secret values never enter `rootfs` or `log`.
        """
        ...
