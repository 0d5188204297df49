"""`obuilder export ID --to TARGET`: a build's result as an OCI image other tools run."""

from __future__ import annotations

import argparse
import re
from typing import Any

from obuilder_core.cli import EXIT_OK, UsageError
from obuilder_core.cli.build_commands import _store_option, checked_arg, insecure_registry_option

TARGETS = "oci:DIR[:TAG], docker-archive:FILE[:NAME:TAG] or HOST[:PORT]/REPO[:TAG]"


def register(subparsers: Any) -> None:
    """Add `export` to the `obuilder` subcommands."""
    p = subparsers.add_parser(
        "export",
        help="write a build's result as an OCI image",
        description="Write result ID (the `Got:` of a build; a unique prefix will do) as an "
        "OCI image: one layer per step, the config with the spec's final env, workdir and "
        "user. TARGET is an OCI image layout (oci:DIR[:TAG], tag default latest), a docker "
        "save archive (docker-archive:FILE[:NAME:TAG]) or a registry (HOST[:PORT]/REPO[:TAG]), "
        "named as skopeo names them.",
    )
    p.add_argument("id", metavar="ID", help="result id, or a unique prefix of at least 4")
    p.add_argument(
        "--to", metavar="TARGET", required=True, type=_target_arg, help=f"one of {TARGETS}"
    )
    _store_option(p)
    insecure_registry_option(p)
    p.set_defaults(func=cmd_export)


def _target_arg(text: str) -> str:
    """Checked as the command line is parsed: a bad target is a usage error, before the
    store is opened."""
    from obuilder_core.builder.export import check_target

    return checked_arg(check_target)(text)


def cmd_export(args: argparse.Namespace) -> int:
    """`obuilder export`: 0 when written (one line saying where), 1 if it failed, 2 on bad
    usage."""
    from obuilder_core.builder import Builder

    if not re.fullmatch(r"[0-9a-f]{4,64}", args.id):
        raise UsageError(f"{args.id!r} is not a step id (4 to 64 hex digits)")
    with Builder.open(args.store, watch=True) as builder:
        id = builder.resolve(args.id)
        exported = builder.export(id, args.to, insecure_registry=args.insecure_registry)
    layers = f"{exported.layers} layer{'s' if exported.layers != 1 else ''}"
    print(f"Exported {id} to {exported.target} ({layers}, manifest {exported.digest})")
    return EXIT_OK
