"""The `obuilder` command line: argparse subcommands, one module per group of commands.

A subcommand module exposes `register(subparsers) -> None`, which adds its parsers with
`subparsers.add_parser(...)` and sets a handler with `parser.set_defaults(func=handler)`, where
`handler(args: argparse.Namespace) -> int` returns the exit status. To add one, append its
module name to `SUBCOMMAND_MODULES`. Every subcommand also accepts `-v/--verbose`.

Exit statuses: 0 success; 1 a check failed (`fmt --check`) or a build step failed; 2 bad usage,
unreadable input or an invalid spec; 130, 143, 129 stopped by SIGINT, SIGTERM, SIGHUP (the
running steps are cancelled and their containers gone first: `stopping.py`). An
`ObuilderError` is printed as one line (`obuilder: error: MESSAGE`; a spec error as
`file:line:col: message`), never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from obuilder_core.builder import ObuilderError
from obuilder_core.cli.stopping import Stopped, stop_signals

# Imported lazily by `build_parser`, so a subcommand module can import helpers from here.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "obuilder_core.cli.spec_commands",
    "obuilder_core.cli.image",
    "obuilder_core.cli.build_commands",
    "obuilder_core.cli.verify_command",
    "obuilder_core.cli.explain_command",
    "obuilder_core.cli.export_command",
)

PROG = "obuilder"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

log = logging.getLogger(__name__)


class UsageError(ObuilderError):
    """Bad command-line input (a missing or unreadable file, conflicting options): exit 2."""

    exit_code = EXIT_USAGE


def read_input_file(path: str) -> bytes:
    """The bytes of the file named on the command line; UsageError naming it if unreadable."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None


def exit_code_for(error: ObuilderError) -> int:
    """The exit status for an error: its class's `exit_code` if it has one, else by kind."""
    code = getattr(error, "exit_code", None)
    if isinstance(code, int):
        return code
    # Imported here: the spec package is not needed to print `--help`.
    from obuilder_core.spec import SpecError
    from obuilder_core.spec.docker import DockerfileError

    return EXIT_USAGE if isinstance(error, SpecError | DockerfileError) else EXIT_FAILED


def error_line(error: ObuilderError) -> str:
    """The one line printed for `error` (a spec error is already `file:line:col: message`)."""
    from obuilder_core.spec import SpecError

    text = "; ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text if isinstance(error, SpecError) else f"{PROG}: error: {text}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # ~50 ms: only for --version

    try:
        return version("pytest-obuilder")
    except PackageNotFoundError:
        return "unknown"


class _VersionAction(argparse.Action):
    """`--version`, looking the version up only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"{PROG} {_version()}")
        parser.exit()


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, except that bad usage is one line, as every other error is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The full `obuilder` parser, with every module of SUBCOMMAND_MODULES registered."""
    from obuilder_core.builder import default_store_spec

    parser = _ArgumentParser(
        prog=PROG,
        description="Build OBuilder specs: cached, sandboxed build steps.",
        epilog=f"The default store (where --store is not given) is {default_store_spec()}.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="show the version and exit"
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (repeat for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for sub in subparsers.choices.values():
        # SUPPRESS keeps a `-v` given before the subcommand when none is given after it.
        sub.add_argument(
            "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


class _LineFormatter(logging.Formatter):
    """`obuilder: warning: message`, like the error lines."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {record.exc_info[1]}"  # the reason, not the traceback (`-vv` has it)
        if record.exc_info and logging.getLogger("obuilder_core").level <= logging.DEBUG:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _log_handler(verbosity: int) -> logging.Handler:
    """Warnings always reach stderr (e.g. a store whose permissions were tightened); `-v`
    adds progress information, `-vv` debugging."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    levels = [logging.WARNING, logging.INFO]
    handler.setLevel(levels[verbosity] if verbosity < len(levels) else logging.DEBUG)
    return handler


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except ObuilderError as e:
        print(error_line(e), file=sys.stderr)
        return exit_code_for(e)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `obuilder` with `argv` (default: sys.argv[1:]) and return its exit status."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, --version, usage errors: argparse already printed
            return e.code if isinstance(e.code, int) else EXIT_USAGE
        package_log = logging.getLogger("obuilder_core")
        handler = _log_handler(args.verbose)
        package_log.addHandler(handler)
        package_log.setLevel(handler.level)
        try:
            with stop_signals():
                return _run(args)
        finally:
            package_log.removeHandler(handler)
            package_log.setLevel(logging.NOTSET)
    except Stopped as e:
        print(f"Cancelled at user's request ({e})", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`obuilder dockerfile ... | head`): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
