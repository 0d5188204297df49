"""How a command in the sandbox can end other than with status 0, as one-line errors in
OBuilder's words (`"/bin/sh" "-c" "exit 3" failed with exit status 3`)."""

from __future__ import annotations

import signal

from obuilder_core.errors import ObuilderError
from obuilder_core.spec.reader import ocaml_string


class SandboxError(ObuilderError):
    """A command could not be run, or did not finish successfully."""


class UnsupportedNetwork(SandboxError):
    """`RunConfig.network` names a network this sandbox does not provide."""


class StepFailed(SandboxError):
    """The command exited with a non-zero status or was killed by a signal.

    The message matches OBuilder's: `"/bin/sh" "-c" "exit 3" failed with exit status 3`. When
    the command hit one of its limits, `reason` says which: `... killed: out of memory (limit
    256 MiB)`, `... failed with exit status 2: hit its limit of 100 processes`.
    """

    def __init__(
        self,
        argv: tuple[str, ...],
        *,
        status: int | None = None,
        signum: int | None = None,
        reason: str | None = None,
    ) -> None:
        self.argv = argv
        self.status = status
        self.signum = signum
        self.reason = reason
        how = f"signal {signal_name(signum)}" if signum is not None else f"exit status {status}"
        if reason is None:
            text = f"failed with {how}"
        elif signum == signal.SIGKILL:
            text = f"killed: {reason}"
        else:
            text = f"failed with {how}: {reason}"
        super().__init__(f"{quote_argv(argv)} {text}")


class Cancelled(SandboxError):
    """The caller cancelled the command; it was killed and its container removed."""

    def __init__(self, argv: tuple[str, ...]) -> None:
        self.argv = argv
        super().__init__(f"{quote_argv(argv)} cancelled")


class TimedOut(SandboxError):
    """The command ran longer than its time limit; it was killed and its container removed."""

    def __init__(self, argv: tuple[str, ...], timeout: float) -> None:
        self.argv = argv
        self.timeout = timeout
        super().__init__(f"{quote_argv(argv)} killed: step timeout {timeout:g}s")


def quote_argv(argv: tuple[str, ...]) -> str:
    """`"/bin/sh" "-c" "exit 3"`: each argument quoted, space separated (OBuilder's format)."""
    return " ".join(ocaml_string(a) for a in argv)


def signal_name(signum: int) -> str:
    """`SIGKILL` for 9; the number itself for signals without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def dump_list(items: tuple[str, ...]) -> str:
    """`["a"; "b"]`: a list of strings as OCaml prints one."""
    return "[" + "; ".join(ocaml_string(i) for i in items) + "]"
