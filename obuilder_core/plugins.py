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
    if entry_points:
        manager.load_setuptools_entrypoints(PROJECT)
    return manager


@functools.cache
def default_plugins() -> pluggy.PluginManager:
    """This process's plugin manager (made on first use; see the module docstring)."""
    return make_plugins()
