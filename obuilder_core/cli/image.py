"""`obuilder image import NAME SOURCE` and `obuilder image ls`: the store's local base images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from obuilder_core.cli.build_commands import _store_option, checked_arg


def register(subparsers: Any) -> None:
    """Add the `image` command (with `import` and `ls`) to the CLI's subparsers."""
    image = subparsers.add_parser("image", help="manage the store's local base images")
    sub = image.add_subparsers(dest="image_command", metavar="COMMAND", required=True)

    imp = sub.add_parser(
        "import",
        help="import an image for (from NAME)",
        description="Import SOURCE as image NAME: an OCI image layout directory, an OCI archive,"
        " a `docker save` archive or a plain rootfs tarball (optionally compressed)."
        " Re-importing a name replaces the image.",
    )
    imp.add_argument(
        "name", metavar="NAME", type=_image_name, help="image name, e.g. busybox or debian:12"
    )
    imp.add_argument("source", metavar="SOURCE", type=Path, help="file or directory to import")
    _options(imp)
    imp.set_defaults(func=import_command)

    ls = sub.add_parser("ls", help="list local images", description="List the local images.")
    _options(ls)
    ls.set_defaults(func=ls_command)


def _options(parser: argparse.ArgumentParser) -> None:
    # Like the top-level subcommands, accept -v after the sub-subcommand too.
    parser.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    _store_option(parser)


def _image_name(text: str) -> str:
    """An argparse `type`: a bad NAME is a usage error, found before the store is opened."""
    from obuilder_core.builder import parse_image_ref

    return checked_arg(parse_image_ref)(text)


def import_command(args: argparse.Namespace) -> int:
    """Handler of `obuilder image import`; returns 0 (errors raise ObuilderError)."""
    from obuilder_core.builder import Builder, human_size
    from obuilder_core.cli import UsageError

    if not args.source.exists():
        raise UsageError(f"{args.source}: no such file or directory")
    with Builder.open(args.store) as builder:
        info = builder.import_image(args.name, args.source, log=_stderr)
    print(f"{info.name} {info.digest} {human_size(info.size)}")
    return 0


def ls_command(args: argparse.Namespace) -> int:
    """Handler of `obuilder image ls`; returns 0 (errors raise ObuilderError)."""
    from obuilder_core.builder import Builder, human_size

    with Builder.open(args.store) as builder:
        infos = builder.images()
    rows = [(i.name, i.digest, human_size(i.size)) for i in infos]
    from tabulate import tabulate  # only `image ls` needs it

    print(tabulate(rows, headers=["NAME", "DIGEST", "SIZE"], tablefmt="plain"))
    return 0


def _stderr(line: bytes) -> None:
    sys.stderr.buffer.write(line)
    sys.stderr.flush()
