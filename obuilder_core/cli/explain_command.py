"""`obuilder explain`: for every step of a spec, cached or not and why not, building nothing."""

from __future__ import annotations

import argparse
from typing import Any

from obuilder_core.cli.build_commands import _open_builder, load_inputs, spec_arguments

EXIT_OK = 0
EXIT_STOPPED = 1


def register(subparsers: Any) -> None:
    """Add `explain` to the `obuilder` subcommands."""
    p = subparsers.add_parser(
        "explain",
        help="say which steps of a spec are cached, and why the others are not",
        description="Build nothing: for each step of SPEC, say whether the store has it and, "
        "if not, what changed in its key since the last build of SPEC here (a file of a copy, "
        "an env variable, the command, the parent step, ...). Exit status: 0 every step "
        "looked at, 1 stopped early (a base image or stage is not in the store), 2 bad usage.",
    )
    spec_arguments(p)
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    """`obuilder explain`: one heading and one status line per step."""
    spec, secrets = load_inputs(args)
    with _open_builder(args) as builder:
        result = builder.explain(spec, args.context, secrets=secrets)
    for step in result.steps:
        print(step.name)
        status = f"cached {step.id[:12]}" if step.cached else f"miss: {step.miss_reason}"
        print(f"    {status}")
    if result.failure is not None:
        print(f"stopped at {result.failure.heading}: {result.failure.message}")
        return EXIT_STOPPED
    return EXIT_OK
