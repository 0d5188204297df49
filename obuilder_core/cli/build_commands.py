"""`obuilder build`, `healthcheck`, `delete`, `clean`, `delete-cache` and `df`: the commands
that use a store."""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from obuilder_core.builder import (
    DEFAULT_PIDS,
    LimitError,
    Limits,
    ObuilderError,
    default_store_spec,
    human_size,
    parse_seconds,
    parse_size,
)
from obuilder_core.cli import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    read_input_file,
)
from obuilder_core.cli.stopping import run_until_stopped

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNITS = {"": 86400.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def register(subparsers: Any) -> None:
    """Add `build`, `healthcheck`, `delete`, `clean` and `df` to the `obuilder` subcommands."""
    p = subparsers.add_parser(
        "build",
        help="build a spec",
        description="Build SPEC with CONTEXT as the source directory of (copy ...) steps.",
    )
    spec_arguments(p)
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="re-run every run and copy step instead of using cached results",
    )
    p.set_defaults(func=cmd_build)

    p = subparsers.add_parser(
        "healthcheck",
        help="check that the store and sandbox work",
        description="Run `echo healthcheck` in the busybox image.",
    )
    _builder_options(p)
    p.set_defaults(func=cmd_healthcheck)

    p = subparsers.add_parser(
        "delete",
        help="delete a step and everything built on it",
        description="Delete step ID and all its descendants.",
    )
    p.add_argument("id", metavar="ID", help="step id")
    _store_option(p)
    p.set_defaults(func=cmd_delete)

    p = subparsers.add_parser(
        "clean",
        help="remove cached steps and caches",
        description="Remove least recently used steps and caches: all of them by default, or "
        "those unused for --older-than, or as many as needed to get --keep-free percent free "
        "(steps first, then caches). Never a step a running build uses; a cache that a build "
        "uses meanwhile is deleted under it (its changes are then dropped).",
    )
    p.add_argument(
        "--older-than",
        metavar="D",
        type=_duration,
        help="only steps unused for D (e.g. 30s, 12h, 7d; a bare number is days)",
    )
    p.add_argument(
        "--keep-free",
        metavar="PCT",
        type=_percent,
        help="remove steps until PCT percent of the store's filesystem is free",
    )
    _store_option(p)
    p.set_defaults(func=cmd_clean)

    p = subparsers.add_parser(
        "delete-cache",
        help="delete caches",
        description="Delete the caches NAME... (those of (cache (NAME (target ...)))), e.g. "
        "one that filled the disk. Steps that use one start with it empty again.",
    )
    p.add_argument("names", metavar="NAME", nargs="+", help="cache name")
    _store_option(p)
    p.set_defaults(func=cmd_delete_cache)

    p = subparsers.add_parser(
        "df",
        help="show the store's usage",
        description="Print the number of steps, their size and free space.",
    )
    _store_option(p)
    p.set_defaults(func=cmd_df)


def checked_arg(check: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse `type` that keeps the text but refuses it, as a usage error, when `check`
    raises ObuilderError: bad values are reported before anything is opened."""

    def convert(text: str) -> str:
        try:
            check(text)
        except ObuilderError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    return convert


def _store_arg(text: str) -> str:
    from obuilder_core.builder import parse_store_spec

    return checked_arg(parse_store_spec)(text)


def _cache_ref_arg(text: str) -> str:
    from obuilder_core.builder import parse_cache_ref

    return checked_arg(parse_cache_ref)(text)


def insecure_registry_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--insecure-registry",
        action="store_true",
        help="allow plain http to registries (always allowed for 127.0.0.1 and localhost)",
    )


def _store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        metavar="KIND:ARG",
        default=None,
        type=_store_arg,
        help=f"store, e.g. btrfs:/var/cache/obuilder (default: {default_store_spec()})",
    )


def _builder_options(p: argparse.ArgumentParser) -> None:
    _store_option(p)
    p.add_argument(
        "--fast-sync",
        action="store_true",
        help="make sync calls in the sandbox no-ops (faster, less durable)",
    )
    p.add_argument(
        "--registry-mirror",
        metavar="URL",
        default=None,
        help="pull images from this registry mirror instead of Docker Hub",
    )
    remote = p.add_argument_group("registry cache (docs/cache.md)")
    remote.add_argument(
        "--cache-from",
        metavar="HOST/REPO",
        type=_cache_ref_arg,
        action="append",
        default=[],
        help="on a local miss, take the step from this registry cache if it has it (repeatable)",
    )
    remote.add_argument(
        "--cache-to",
        metavar="HOST/REPO",
        type=_cache_ref_arg,
        default=None,
        help="push every step the build gets to this registry cache",
    )
    insecure_registry_option(remote)
    limits = p.add_argument_group("limits of each step")
    limits.add_argument(
        "--pids-limit",
        metavar="N",
        type=_pids,
        default=DEFAULT_PIDS,
        help=f"processes and threads a step may have at once (default {DEFAULT_PIDS}; "
        "-1: unlimited)",
    )
    limits.add_argument(
        "--memory",
        metavar="SIZE",
        type=_limit(parse_size),
        default=None,
        help="memory a step may use, e.g. 512M or 2G (default: unlimited)",
    )
    limits.add_argument(
        "--step-timeout",
        metavar="SECONDS",
        type=_limit(parse_seconds),
        default=None,
        help="kill a step that runs longer, e.g. 600 or 10m (default: no limit)",
    )


def _limit(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except LimitError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


def _pids(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid pids limit {text[:40]!r}") from None
    if value == -1:
        return None
    if value < 1:
        raise argparse.ArgumentTypeError(f"pids limit {value}: expected at least 1, or -1")
    return value


def limits_of(args: argparse.Namespace) -> Limits:
    """The step limits the command line asked for (see `_builder_options`)."""
    try:
        return Limits(pids=args.pids_limit, memory=args.memory, timeout=args.step_timeout)
    except LimitError as e:
        raise UsageError(str(e)) from None


def _duration(text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 30s, 12h, 7d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"invalid percentage {text!r} (0-100)")
    return value


# -- output -------------------------------------------------------------------------------------


class _Printer:
    """Prints a build's log like OBuilder: headings (blue), notes (yellow), raw output."""

    def __init__(self) -> None:
        self.out = sys.stdout.buffer
        # no-color.org: NO_COLOR set to anything but the empty string turns colour off.
        colour = os.isatty(self.out.fileno()) and not os.environ.get("NO_COLOR")
        self.styles = {"heading": b"\x1b[94m", "note": b"\x1b[33m"} if colour else {}
        self.at_line_start = True
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> None:
        if event.kind == "progress":
            return  # the log shows what a step printed, not how far it has got
        with self._lock:
            if event.kind == "output":
                self.out.write(event.data)
                self.at_line_start = event.data.endswith(b"\n")
            else:
                if not self.at_line_start:
                    self.out.write(b"\n")
                style = self.styles.get(event.kind)
                text = style + event.data + b"\x1b[0m" if style else event.data
                self.out.write(text + b"\n")
                self.at_line_start = True
            self.out.flush()


def spec_arguments(p: argparse.ArgumentParser) -> None:
    """`-f SPEC CONTEXT [--secret ID:PATH]...` and the builder options (store, sandbox)."""
    p.add_argument("-f", "--file", dest="spec", metavar="SPEC", required=True, help="spec file")
    p.add_argument("context", metavar="CONTEXT", type=Path, help="build context directory")
    p.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="ID:PATH",
        help="provide secret ID with the contents of file PATH (repeatable)",
    )
    _builder_options(p)


def load_inputs(args: argparse.Namespace) -> tuple[Any, dict[str, bytes]]:
    """The spec and the secrets that `spec_arguments` named, with a clear usage error for a
    missing spec file, context directory or secret file."""
    from obuilder_core.spec import load_spec

    read_input_file(args.spec)
    if not args.context.is_dir():
        raise UsageError(f"{args.context}: build context is not a directory")
    secrets = {}
    for item in args.secret:
        sid, sep, path = item.partition(":")
        if not sep or not sid or not path:
            raise UsageError(f"--secret {item!r}: expected ID:PATH")
        secrets[sid] = read_input_file(path)
    return load_spec(args.spec), secrets


def _open_builder(args: argparse.Namespace) -> Any:
    from obuilder_core.builder import Builder

    return Builder.open(
        args.store,
        fast_sync=args.fast_sync,
        registry_mirror=args.registry_mirror,
        limits=limits_of(args),
        watch=True,
        cache_from=args.cache_from,
        cache_to=args.cache_to,
        insecure_registry=args.insecure_registry,
    )


# -- commands -----------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    """`obuilder build`: 0 when built (`Got: "ID"`), 1 when a step failed, 2 on bad input."""
    from obuilder_core.spec import ocaml_string

    spec, secrets = load_inputs(args)
    printer = _Printer()
    with _open_builder(args) as builder:  # closing waits for cancelled steps to be gone
        result = run_until_stopped(
            lambda cancel: builder.build(
                spec,
                args.context,
                secrets=secrets,
                log=printer,
                cancel=cancel,
                use_cache=not args.no_cache,
            )
        )
    if result.failure is not None:
        printer.out.flush()
        print(f"Build step failed: {result.failure.message}", file=sys.stderr)
        return EXIT_FAILED
    print(f"Got: {ocaml_string(result.id or '')}", flush=True)
    return EXIT_OK


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """`obuilder healthcheck`: build `echo healthcheck` in busybox, then delete that step."""
    with _open_builder(args) as builder:
        problem = run_until_stopped(lambda cancel: builder.healthcheck(cancel=cancel))
    if problem is None:
        print("Healthcheck passed")
        return EXIT_OK
    print(f"Healthcheck failed: {problem}", file=sys.stderr)
    return EXIT_FAILED


def _store_builder(args: argparse.Namespace) -> Any:
    """A builder for maintaining the store named by `--store` (runc is not needed)."""
    from obuilder_core.builder import Builder

    return Builder.open(args.store, watch=True)


def cmd_delete(args: argparse.Namespace) -> int:
    """`obuilder delete ID`: remove the step and its descendants, printing each. ID may be
    any unique prefix of at least 4 hex digits, like the 12 shown by `build` and pytest."""
    if not re.fullmatch(r"[0-9a-f]{4,64}", args.id):
        raise UsageError(f"{args.id!r} is not a step id (4 to 64 hex digits)")
    with _store_builder(args) as builder:
        for id in builder.delete(builder.resolve(args.id)):
            print(f"Removing {id}")
    return EXIT_OK


def cmd_clean(args: argparse.Namespace) -> int:
    """`obuilder clean`: prune least recently used steps (never those in use) and caches."""
    with _store_builder(args) as builder:
        if args.keep_free is not None:
            pruned = builder.gc(args.keep_free)
        else:
            pruned = builder.prune(time.time() - (args.older_than or 0.0))
    for id in pruned.steps:
        print(f"Removing {id}")
    for name in pruned.caches:
        print(f"Removing cache {name}")
    print(f"Removed {len(pruned.steps) + len(pruned.caches)} items")
    return EXIT_OK


def cmd_delete_cache(args: argparse.Namespace) -> int:
    """`obuilder delete-cache NAME...`: delete caches (what `(cache (NAME ...))` mounts)."""
    with _store_builder(args) as builder:
        known = {name for name, _ in builder.caches()}
        for name in args.names:
            builder.delete_cache(name)
            print(f"Removing cache {name}" + ("" if name in known else " (never used here)"))
    return EXIT_OK


def cmd_df(args: argparse.Namespace) -> int:
    """`obuilder df`: steps in the store, their total size, caches, the free space."""
    with _store_builder(args) as builder:
        usage = builder.usage()
    print(f"store:  {usage.kind} ({usage.store})")
    print(f"steps:  {usage.steps}")
    print(f"size:   {human_size(usage.size)}")
    print(f"caches: {usage.caches}")
    print(f"free:   {usage.free_pct:.1f}%")
    return EXIT_OK
