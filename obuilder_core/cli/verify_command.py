"""`obuilder verify`: build a spec, rebuild each step on the same parent, report differences."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from obuilder_core.builder import ObuilderError
from obuilder_core.cli import error_line
from obuilder_core.cli.build_commands import (
    _open_builder,
    _Printer,
    checked_arg,
    load_inputs,
    spec_arguments,
)
from obuilder_core.cli.stopping import run_until_stopped

EXIT_ERROR = 2


def register(subparsers: Any) -> None:
    """Add `verify` to the `obuilder` subcommands."""
    from obuilder_core.builder.variations import DEFAULT_VARY, VARIATIONS

    p = subparsers.add_parser(
        "verify",
        help="check that a spec builds deterministically",
        description="Build SPEC (using the cache), then run each run/copy step again on the "
        "same parent, uncached and with variations, and compare the results. Stops at the "
        "first step that differs. Exit status: 0 same, 1 different, 2 error.",
    )
    spec_arguments(p)
    p.add_argument(
        "--vary",
        default=",".join(DEFAULT_VARY),
        metavar="all|none|LIST",
        help=f"variations of the rebuild, comma-separated from {', '.join(VARIATIONS)} "
        f"(default: {','.join(DEFAULT_VARY)})",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the divergent rebuild and print both paths"
    )
    p.add_argument("--check-mtimes", action="store_true", help="also compare modification times")
    p.add_argument(
        "--source-date-epoch",
        type=_epoch_arg,
        default=os.environ.get("SOURCE_DATE_EPOCH"),
        metavar="SECONDS",
        help="with --check-mtimes: mtimes later than this compare as it, as a build clamping "
        "them to SOURCE_DATE_EPOCH sets them (default: $SOURCE_DATE_EPOCH, if set)",
    )
    p.add_argument(
        "--no-explain",
        action="store_true",
        help="when a step differs, do not rebuild it once per variation to name the one "
        "responsible",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the build log")
    p.set_defaults(func=cmd_verify)


def _epoch_arg(text: str) -> str:
    from obuilder_core.builder.verify import parse_source_date_epoch

    return checked_arg(parse_source_date_epoch)(text)


def cmd_verify(args: argparse.Namespace) -> int:
    """`obuilder verify`: 0 when every step rebuilds identically, 1 if one differs, 2 on error."""
    try:
        return _verify(args)
    except ObuilderError as e:  # verify's errors exit 2, like diffoscope's
        print(error_line(e), file=sys.stderr)
        return EXIT_ERROR


def _verify(args: argparse.Namespace) -> int:
    from obuilder_core.builder.verify import (
        format_report,
        parse_source_date_epoch,
        parse_vary,
        verify,
    )

    vary = parse_vary(args.vary)
    epoch = args.source_date_epoch
    source_date_epoch = None if epoch is None else parse_source_date_epoch(epoch)
    spec, secrets = load_inputs(args)
    printer = None if args.quiet else _Printer()
    with _open_builder(args) as builder:  # closing waits for cancelled steps to be gone
        result = run_until_stopped(
            lambda cancel: verify(
                builder,
                spec,
                args.context,
                spec_name=args.spec,
                secrets=secrets,
                vary=vary,
                keep=args.keep,
                check_mtimes=args.check_mtimes,
                source_date_epoch=source_date_epoch,
                cancel=cancel,
                explain=not args.no_explain,
                log=printer,
            )
        )
    sys.stdout.flush()
    print(format_report(result), flush=True)
    return result.exit_code
