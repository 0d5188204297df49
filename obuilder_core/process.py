"""The one place that runs external commands, so every failure reads the same way."""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Sequence

from obuilder_core.errors import ObuilderError

log = logging.getLogger(__name__)


class CommandError(ObuilderError):
    """An external command failed; the message names it and quotes its stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        # "btrfs subvolume snapshot failed: ERROR: ..." -- the tool and its subcommand words.
        words = [argv[0].rsplit("/", 1)[-1]]
        words += [a for a in argv[1:3] if not a.startswith("-") and "/" not in a]
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {returncode}"
        super().__init__(f"{' '.join(words)} failed: {detail}")


class CommandTimeout(ObuilderError):
    """An external command gave no answer within its time limit (it was killed)."""

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        words = " ".join([argv[0].rsplit("/", 1)[-1], *argv[1:3]])
        super().__init__(f"{words} gave no answer in {timeout:g}s")


def run_cmd(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    check: bool = True,
    cwd: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv`, capturing stdout and stderr.

    Raises CommandError (with the command's stderr) if it exits non-zero and `check` is set,
    CommandTimeout if it runs longer than `timeout` seconds (it is killed), and ObuilderError
    if the program is not installed.
    """
    log.debug("running %s", shlex.join(argv))
    try:
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, cwd=cwd, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise ObuilderError(f"{argv[0]}: command not found (is it installed?)") from None
    except subprocess.TimeoutExpired:
        raise CommandTimeout(argv, timeout or 0) from None
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc
