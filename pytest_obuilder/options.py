"""The plugin's options: each command-line option has an ini twin; the command line wins."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from obuilder_core.builder import (
    DEFAULT_LIMITS,
    DEFAULT_PIDS,
    LimitError,
    Limits,
    ObuilderError,
    default_store_spec,
    parse_seconds,
    parse_size,
    parse_store_spec,
)
from obuilder_core.builder.variations import DEFAULT_VARY
from pytest_obuilder.progress import PROGRESS_MODES

T = TypeVar("T")

DEFAULT_LOG_LINES = 50
DEFAULT_SPEC_FILES = ["*.spec"]


def add_options(parser: pytest.Parser) -> None:
    """Declare `--obuilder-*` options and their ini twins."""
    group = parser.getgroup("obuilder", "build specs with obuilder")
    group.addoption(
        "--obuilder-store",
        metavar="KIND:ARG",
        help="store for build results, e.g. btrfs:/var/cache/obuilder (default: "
        f"{default_store_spec()}). ini: obuilder_store",
    )
    group.addoption(
        "--obuilder-context",
        metavar="DIR",
        help="build context of every spec (default: the spec's directory). ini: obuilder_context",
    )
    group.addoption(
        "--obuilder-secret",
        action="append",
        default=[],
        metavar="ID:PATH",
        help="make the file PATH available to (secrets (ID ...)) mounts; repeatable. "
        "ini: obuilder_secrets (one ID:PATH per line, relative to the ini file)",
    )
    group.addoption(
        "--obuilder-fast-sync",
        action="store_true",
        default=None,
        help="make sync/fsync no-ops inside the sandbox (faster, less safe). ini: "
        "obuilder_fast_sync",
    )
    group.addoption(
        "--obuilder-registry-mirror",
        metavar="URL",
        help="pull base images through this registry mirror. ini: obuilder_registry_mirror",
    )
    group.addoption(
        "--obuilder-cache-from",
        action="append",
        default=[],
        metavar="HOST/REPO",
        help="on a local miss, take steps from this registry cache; repeatable. ini: "
        "obuilder_cache_from (one per line)",
    )
    group.addoption(
        "--obuilder-cache-to",
        metavar="HOST/REPO",
        help="push every step the specs get to this registry cache. ini: obuilder_cache_to",
    )
    group.addoption(
        "--obuilder-export-to",
        metavar="HOST/REPO",
        help="push each passing spec's result as an image HOST/REPO:TAG, TAG from the spec's "
        "path (docs/export.md). ini: obuilder_export_to",
    )
    group.addoption(
        "--obuilder-insecure-registry",
        action="store_true",
        default=None,
        help="allow plain http to registries (always allowed for loopback). ini: "
        "obuilder_insecure_registry",
    )
    group.addoption(
        "--obuilder-no-cache",
        action="store_true",
        default=None,
        help="run every step again instead of using cached results. ini: obuilder_no_cache",
    )
    group.addoption(
        "--obuilder-rebuild",
        action="store_true",
        default=None,
        help="check determinism: rebuild each step uncached on the same parent and fail the "
        "spec if a result differs (see `obuilder verify`). ini: obuilder_rebuild",
    )
    group.addoption(
        "--obuilder-vary",
        metavar="all|none|LIST",
        help="with --obuilder-rebuild: what the rebuild varies, as `obuilder verify --vary` "
        f"(default: {','.join(DEFAULT_VARY)}). ini: obuilder_vary",
    )
    group.addoption(
        "--obuilder-check-mtimes",
        action="store_true",
        default=None,
        help="with --obuilder-rebuild: compare modification times too. ini: obuilder_check_mtimes",
    )
    group.addoption(
        "--obuilder-source-date-epoch",
        metavar="SECONDS",
        help="with --obuilder-check-mtimes: mtimes later than this compare as it, as a build "
        "clamping them sets them (default: $SOURCE_DATE_EPOCH). ini: obuilder_source_date_epoch",
    )
    group.addoption(
        "--obuilder-log-lines",
        type=int,
        metavar="N",
        help=f"log lines shown for a failed step (default {DEFAULT_LOG_LINES}). "
        "ini: obuilder_log_lines",
    )
    group.addoption(
        "--obuilder-progress",
        choices=PROGRESS_MODES,
        help="how a running step is shown: auto (a line rewritten in place on a terminal, "
        "else plain), plain (a line now and then), quiet (none). ini: obuilder_progress",
    )
    group.addoption(
        "--obuilder-pids-limit",
        type=int,
        metavar="N",
        help=f"processes a step may have at once (default {DEFAULT_PIDS}; -1: unlimited). "
        "ini: obuilder_pids_limit",
    )
    group.addoption(
        "--obuilder-memory",
        metavar="SIZE",
        help="memory a step may use, e.g. 512M (default: unlimited). ini: obuilder_memory",
    )
    group.addoption(
        "--obuilder-step-timeout",
        metavar="SECONDS",
        help="kill a step running longer, e.g. 600 or 10m (default: no limit). "
        "ini: obuilder_step_timeout",
    )
    parser.addini(
        "obuilder_spec_files",
        "glob patterns of files collected as build specs",
        type="args",
        default=DEFAULT_SPEC_FILES,
    )
    parser.addini(
        "obuilder_paths",
        "directories (relative to the ini file) where spec files are collected; default: all",
        type="paths",
    )
    parser.addini("obuilder_store", "store for build results, KIND:ARG")
    parser.addini("obuilder_context", "build context directory (relative to the ini file)")
    parser.addini("obuilder_secrets", "ID:PATH secrets, one per line", type="linelist")
    parser.addini("obuilder_fast_sync", "no-op sync/fsync in the sandbox", type="bool")
    parser.addini("obuilder_registry_mirror", "registry mirror URL")
    parser.addini("obuilder_cache_from", "registry caches to pull steps from", type="linelist")
    parser.addini("obuilder_cache_to", "registry cache to push steps to, HOST/REPO")
    parser.addini("obuilder_export_to", "repository passing specs' results are pushed to")
    parser.addini("obuilder_insecure_registry", "allow plain http to registries", type="bool")
    parser.addini("obuilder_no_cache", "run every step again", type="bool")
    parser.addini("obuilder_log_lines", "log lines shown for a failed step")
    parser.addini("obuilder_rebuild", "rebuild each step and compare (determinism)", type="bool")
    parser.addini("obuilder_vary", "what a rebuild varies: all, none or a comma-separated list")
    parser.addini("obuilder_check_mtimes", "rebuilds compare modification times too", type="bool")
    parser.addini("obuilder_source_date_epoch", "mtimes later than this compare as it")
    parser.addini("obuilder_progress", "how a running step is shown: auto, plain or quiet")
    parser.addini("obuilder_pids_limit", "processes a step may have at once (-1: unlimited)")
    parser.addini("obuilder_memory", "memory a step may use, e.g. 512M")
    parser.addini("obuilder_step_timeout", "seconds a step may run, e.g. 600 or 10m")


@dataclass(frozen=True)
class Settings:
    """The options that every spec item builds with, resolved once per session."""

    store: str | None
    context: Path | None
    secrets: tuple[tuple[str, bytes], ...]
    fast_sync: bool
    registry_mirror: str | None
    use_cache: bool
    log_lines: int
    spec_files: tuple[str, ...]
    spec_paths: tuple[Path, ...] = ()
    rebuild: bool = False
    vary: tuple[str, ...] | None = None
    """What `--obuilder-rebuild` varies (None: the checker's default)."""
    check_mtimes: bool = False
    source_date_epoch: int | None = None
    """The mtime clamp of `--obuilder-check-mtimes`."""
    limits: Limits = DEFAULT_LIMITS
    progress: str = "auto"
    cache_from: tuple[str, ...] = ()
    cache_to: str | None = None
    insecure_registry: bool = False
    export_to: str | None = None


def read_settings(config: pytest.Config) -> Settings:
    """Resolve options (command line over ini) and read the secret files.

    Relative paths are taken from the invocation directory on the command line and from the
    ini file's directory in the ini file. Raises pytest.UsageError for unusable values.
    """
    here = config.invocation_params.dir
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    context = _path(config.getoption("obuilder_context"), here) or _path(
        config.getini("obuilder_context"), ini_dir
    )
    secret_args = [(s, here) for s in config.getoption("obuilder_secret")]
    secret_args += [(s, ini_dir) for s in config.getini("obuilder_secrets")]
    return Settings(
        store=_store(config),
        context=context,
        secrets=_read_secrets(secret_args),
        fast_sync=_flag(config, "obuilder_fast_sync"),
        registry_mirror=config.getoption("obuilder_registry_mirror")
        or config.getini("obuilder_registry_mirror")
        or None,
        use_cache=not _flag(config, "obuilder_no_cache"),
        log_lines=_log_lines(config),
        spec_files=tuple(config.getini("obuilder_spec_files")),
        spec_paths=tuple(config.getini("obuilder_paths")),
        rebuild=_flag(config, "obuilder_rebuild"),
        vary=_vary(config),
        check_mtimes=_flag(config, "obuilder_check_mtimes"),
        source_date_epoch=_source_date_epoch(config),
        limits=_limits(config),
        progress=_progress(config),
        cache_from=tuple(
            config.getoption("obuilder_cache_from") or config.getini("obuilder_cache_from")
        ),
        cache_to=config.getoption("obuilder_cache_to")
        or config.getini("obuilder_cache_to")
        or None,
        insecure_registry=_flag(config, "obuilder_insecure_registry"),
        export_to=_export_to(config),
    )


LIMITS_MARK = "obuilder_limits"
LIMITS_MARK_HELP = (
    "obuilder_limits(pids_limit=N, memory='SIZE', step_timeout=SECONDS): this spec's step "
    "limits, replacing --obuilder-pids-limit, --obuilder-memory, --obuilder-step-timeout"
)


def limits_from(
    base: Limits,
    pids_limit: int | str | None = None,
    memory: int | str | None = None,
    step_timeout: float | str | None = None,
) -> Limits:
    """`base` with the limits given (as options, ini values or mark arguments) replaced.

    Raises LimitError for an unusable value. A pids limit of -1 means unlimited.
    """
    changes: dict[str, int | float | None] = {}
    if pids_limit is not None:
        try:
            pids = int(str(pids_limit))
        except ValueError:
            raise LimitError(f"invalid pids limit {str(pids_limit)[:40]!r}") from None
        changes["pids"] = None if pids == -1 else pids
    if memory is not None:
        changes["memory"] = parse_size(str(memory))
    if step_timeout is not None:
        changes["timeout"] = parse_seconds(str(step_timeout))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _limits(config: pytest.Config) -> Limits:
    values = {}
    for name in ("pids_limit", "memory", "step_timeout"):
        value = config.getoption(f"obuilder_{name}")
        values[name] = value if value is not None else (config.getini(f"obuilder_{name}") or None)
    try:
        return limits_from(DEFAULT_LIMITS, **values)
    except LimitError as e:
        raise pytest.UsageError(f"obuilder limits: {e}") from None


def _store(config: pytest.Config) -> str | None:
    """The store named by the option or the ini file, checked (not opened) here."""
    option = config.getoption("obuilder_store")
    store = option or config.getini("obuilder_store") or None
    if store is not None:
        try:
            parse_store_spec(store)
        except ObuilderError as e:
            where = "--obuilder-store" if option else "ini obuilder_store"
            raise pytest.UsageError(f"{where}: {e}") from None
    return store


def _vary(config: pytest.Config) -> tuple[str, ...] | None:
    from obuilder_core.builder.verify import parse_vary

    return _parsed(config, "obuilder_vary", parse_vary)


def _source_date_epoch(config: pytest.Config) -> int | None:
    from obuilder_core.builder.verify import parse_source_date_epoch

    return _parsed(
        config, "obuilder_source_date_epoch", parse_source_date_epoch, "SOURCE_DATE_EPOCH"
    )


def _parsed(
    config: pytest.Config, name: str, parse: Callable[[str], T], env: str | None = None
) -> T | None:
    """The first of option `--NAME`, ini `NAME` and `$env` that is set, parsed (None if none
    is); a UsageError naming where a bad value came from."""
    sources = [(f"--{name.replace('_', '-')}", config.getoption(name)),
               (f"ini {name}", config.getini(name))]  # fmt: skip
    if env is not None:
        sources.append((f"${env}", os.environ.get(env)))
    for where, text in sources:
        if text:
            try:
                return parse(text)
            except ObuilderError as e:
                raise pytest.UsageError(f"{where}: {e}") from None
    return None


def _progress(config: pytest.Config) -> str:
    mode = config.getoption("obuilder_progress") or config.getini("obuilder_progress") or "auto"
    if mode not in PROGRESS_MODES:
        raise pytest.UsageError(f"ini obuilder_progress: {mode!r} is not one of auto, plain, quiet")
    return str(mode)


def _path(value: str | None, base: Path) -> Path | None:
    return base / value if value else None


def _export_to(config: pytest.Config) -> str | None:
    text = config.getoption("obuilder_export_to") or config.getini("obuilder_export_to")
    if not text:
        return None
    from obuilder_core.builder.export import check_export_repository

    try:
        return check_export_repository(text)
    except ObuilderError as e:
        raise pytest.UsageError(f"obuilder: {e}") from None


def _flag(config: pytest.Config, name: str) -> bool:
    value = config.getoption(name)
    return bool(config.getini(name)) if value is None else bool(value)


def _log_lines(config: pytest.Config) -> int:
    value = config.getoption("obuilder_log_lines")
    if value is None:
        raw = config.getini("obuilder_log_lines") or str(DEFAULT_LOG_LINES)
        try:
            value = int(raw)
        except ValueError:
            raise pytest.UsageError(f"ini obuilder_log_lines: not a number: {raw!r}") from None
    if value < 0:
        raise pytest.UsageError(f"--obuilder-log-lines must be 0 or more, got {value}")
    return int(value)


def _read_secrets(args: list[tuple[str, Path]]) -> tuple[tuple[str, bytes], ...]:
    secrets: dict[str, bytes] = {}
    for arg, base in args:
        sid, sep, path = arg.partition(":")
        if not sep or not sid or not path:
            raise pytest.UsageError(f"obuilder secret {arg!r}: expected ID:PATH")
        if sid in secrets:
            continue  # the command line comes first and wins over the ini file
        try:
            secrets[sid] = (base / path).read_bytes()
        except OSError as e:
            raise pytest.UsageError(
                f"obuilder secret {sid!r}: cannot read {base / path}: {e.strerror or e}"
            ) from None
    return tuple(secrets.items())
