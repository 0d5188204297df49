"""Extension points (pluggy): store backends, sandboxes, image sources and build events.

A plugin is a module (or object) with `@hookimpl` functions named after the hooks of
`HookSpecs`. The built-in backends are plugins like any other (`obuilder_core.stores.builtin`,
`obuilder_core.sandbox.builtin`, `obuilder_core.images.builtin`); third-party ones are found
through the `obuilder` entry-point group, so a new store backend needs no edit of the core:

    # pyproject.toml of a plugin
    [project.entry-points.obuilder]
    mystore = "mystore.plugin"

    # mystore/plugin.py
    from obuilder_core.plugins import hookimpl
    @hookimpl
    def obuilder_store_kinds(): return ["mystore"]
    @hookimpl
    def obuilder_open_store(kind, arg): return MyStore(arg) if kind == "mystore" else None

`default_plugins()` is the manager a process uses: made once, on first use, holding the
built-ins and whatever the installed distributions declare.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from obuilder_core.builder.result import StepRecord
    from obuilder_core.images.base import ImageSource
    from obuilder_core.sandbox.base import Sandbox
    from obuilder_core.stores.base import Store

PROJECT = "obuilder"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

BUILTINS = (
    "obuilder_core.stores.builtin",
    "obuilder_core.sandbox.builtin",
    "obuilder_core.images.builtin",
)


class HookSpecs:
    """The hooks a plugin may implement (all optional)."""

    @hookspec
    def obuilder_store_kinds(self) -> list[str]:  # type: ignore[empty-body]
        """The `KIND`s of `KIND:ARG` store specs this plugin opens."""

    @hookspec(firstresult=True)
    def obuilder_open_store(self, kind: str, arg: str) -> Store | None:
        """Open (creating if needed) the store `KIND:ARG` without sweeping it, or return None
        if `kind` is not this plugin's. Raise StoreError for a bad `arg`."""

    @hookspec(firstresult=True)
    def obuilder_sandbox(self, state_dir: Path, fast_sync: bool) -> Sandbox | None:
        """The sandbox a builder runs steps in, keeping its state in `state_dir`; the first
        plugin to return one wins. Raise SandboxError if it cannot run here."""

    @hookspec
    def obuilder_image_sources(  # type: ignore[empty-body]
        self, images_dir: Path, mirror: str | None, allow_http: bool
    ) -> list[tuple[int, ImageSource]]:
        """Image sources, each with its rank: `(from IMAGE)` tries them lowest rank first
        (the local images are 10, a registry 20, the docker daemon 30)."""

    @hookspec
    def obuilder_step_finished(self, step: StepRecord) -> None:
        """A build event: a step was saved or came from the cache (called in the thread of
        the build that asked for it)."""


def make_plugins(*, entry_points: bool = True, extra: tuple[Any, ...] = ()) -> pluggy.PluginManager:
    """A plugin manager with the built-ins, `extra` plugins and (if `entry_points`) those the
    installed distributions declare in the `obuilder` entry-point group."""
    import importlib

    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(HookSpecs)
    for name in BUILTINS:
        manager.register(importlib.import_module(name), name)
    for plugin in extra:
        manager.register(plugin)
    if entry_points and _may_declare(PROJECT):
        manager.load_setuptools_entrypoints(PROJECT)
    return manager


def _may_declare(group: str) -> bool:
    """Whether an installed distribution may declare entry points in `group`.

    A look at each `*.dist-info` / `*.egg-info` directory's `entry_points.txt` on `sys.path`
    (what importlib.metadata reads too), so that a process without such plugins does not spend
    ~40 ms importing importlib.metadata and reading every distribution to find none. Whatever
    it cannot look at (a zip archive on the path, an unreadable file) counts as a yes.
    """
    header = f"[{group}]"
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as found:
                infos = [e.path for e in found if e.name.endswith((".dist-info", ".egg-info"))]
        except NotADirectoryError:
            return True
        except OSError:
            continue  # a path entry that does not exist
        for info in infos:
            try:
                with open(os.path.join(info, "entry_points.txt")) as f:
                    if any(line.strip() == header for line in f):
                        return True
            except (FileNotFoundError, NotADirectoryError):
                continue  # no entry points, or an egg-info file
            except OSError:
                return True
    return False


@functools.cache
def default_plugins() -> pluggy.PluginManager:
    """This process's plugin manager (made on first use; see the module docstring)."""
    return make_plugins()
