"""Subcommands that only read specs: `dockerfile`, `fmt` and `check`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from typing import Any

from obuilder_core.builder import ObuilderError
from obuilder_core.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    error_line,
    exit_code_for,
    read_input_file,
)
from obuilder_core.spec import check_spec, format_spec, parse_spec

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add `dockerfile`, `fmt` and `check` to the `obuilder` subcommands."""
    p = subparsers.add_parser(
        "dockerfile",
        help="print the Dockerfile equivalent of a spec",
        description="Print the Dockerfile equivalent of a spec on stdout.",
    )
    p.add_argument("-f", "--file", dest="spec", metavar="SPEC", required=True, help="spec file")
    p.add_argument(
        "--buildkit", action="store_true", help="keep cache and secret mounts (RUN --mount=...)"
    )
    p.add_argument(
        "--escape",
        choices=("unix", "windows"),
        default="windows" if sys.platform == "win32" else "unix",
        help="escape character style: unix (\\) or windows (`); default: this host's",
    )
    p.set_defaults(func=cmd_dockerfile)

    p = subparsers.add_parser(
        "fmt",
        help="print specs in canonical form",
        description="Print each spec in canonical form on stdout, or check or rewrite files.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="print the files that are not in canonical form and exit 1 if there are any",
    )
    mode.add_argument(
        "-w", "--write", action="store_true", help="rewrite files that are not in canonical form"
    )
    p.set_defaults(func=cmd_fmt)

    p = subparsers.add_parser(
        "check",
        help="report every error in spec files",
        description="Parse and validate spec files; print every error as file:line:col: message.",
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files")
    p.set_defaults(func=cmd_check)


def cmd_dockerfile(args: argparse.Namespace) -> int:
    """`obuilder dockerfile -f SPEC`: print the Dockerfile.

    As OBuilder's command (`print_endline` of the converted text), the output ends with an
    empty line.
    """
    from obuilder_core.spec.docker import dockerfile  # not loaded by the other commands

    spec = parse_spec(read_input_file(args.spec), args.spec)
    sys.stdout.write(dockerfile(spec, buildkit=args.buildkit, escape=args.escape) + "\n")
    return EXIT_OK


def cmd_fmt(args: argparse.Namespace) -> int:
    """`obuilder fmt SPEC...`: print, check (`--check`) or rewrite (`--write`) canonical forms.

    Comments are kept (`format_spec`), so a commented spec in canonical form passes `--check`.
    Every file is processed even after an error; a bad file makes the exit status 2.
    """
    status = EXIT_OK
    for path in args.specs:
        try:
            data = read_input_file(path)
            canonical = format_spec(data, path)
        except ObuilderError as e:
            print(error_line(e), file=sys.stderr)
            status = max(status, exit_code_for(e))
            continue
        if args.check:
            if data != canonical.encode():
                print(path)
                status = max(status, EXIT_FAILED)
        elif args.write:
            if data != canonical.encode():
                write_atomically(path, canonical)
                log.info("reformatted %s", path)
        else:
            sys.stdout.write(canonical)
    return status


def cmd_check(args: argparse.Namespace) -> int:
    """`obuilder check SPEC...`: print every error of every file on stderr."""
    status = EXIT_OK
    for path in args.specs:
        try:
            errors = check_spec(read_input_file(path), path)
        except ObuilderError as e:  # unreadable file: report it and check the others
            print(error_line(e), file=sys.stderr)
            status = max(status, exit_code_for(e))
            continue
        for error in errors:
            print(error_line(error), file=sys.stderr)
        if errors:
            status = max(status, EXIT_USAGE)
    if status != EXIT_OK:
        return status
    if getattr(args, "verbose", 0):
        n = len(args.specs)
        print(f"{n} spec file{'s' if n != 1 else ''} checked: no errors", file=sys.stderr)
    return EXIT_OK


def write_atomically(path: str, text: str) -> None:
    """Replace the file at `path` with `text` so readers see the old or the new file, whole.

    The new file keeps the old one's permission bits; a failure leaves the old file intact.
    """
    directory = os.path.dirname(path) or "."
    try:
        mode = os.stat(path).st_mode & 0o7777
        fd, tmp = tempfile.mkstemp(
            dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
        )
    except OSError as e:
        raise ObuilderError(f"{path}: cannot rewrite: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise ObuilderError(f"{path}: cannot rewrite: {e.strerror or e}") from None
        raise
