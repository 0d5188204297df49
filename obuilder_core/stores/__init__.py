"""Store backends, one module each, chosen by a `KIND:ARG` string.

The kinds come from the plugins (`obuilder_core.plugins`): the built-in backends
(`stores/builtin.py`) and any a third-party plugin adds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from obuilder_core.stores.base import CacheBusy, CacheLease, Store, StoreError

if TYPE_CHECKING:
    import pluggy

__all__ = [
    "CacheBusy",
    "CacheLease",
    "Store",
    "StoreError",
    "open_store",
    "parse_store_spec",
    "store_kinds",
]


def store_kinds(plugins: pluggy.PluginManager | None = None) -> list[str]:
    """Every store `KIND` the plugins provide, in registration order."""
    from obuilder_core.plugins import default_plugins

    manager = plugins or default_plugins()
    kinds: list[str] = []
    for group in reversed(manager.hook.obuilder_store_kinds()):  # pluggy calls last-in first
        kinds += [k for k in group if k not in kinds]
    return kinds


def parse_store_spec(spec: str, plugins: pluggy.PluginManager | None = None) -> tuple[str, str]:
    """`(KIND, ARG)` of a store spec; StoreError naming the kinds there are if it is not one.
    Opens nothing, so it can check a setting before anything is built."""
    kind, sep, arg = spec.partition(":")
    kinds = store_kinds(plugins)
    if not sep or kind not in kinds or not arg:
        listed = ", ".join(f"{k}:" for k in kinds)
        raise StoreError(f"invalid store {spec!r}: expected KIND:ARG with KIND one of {listed}")
    return kind, arg


def open_store(
    spec: str, *, sweep: bool = True, plugins: pluggy.PluginManager | None = None
) -> Store:
    """Open (creating if needed) the store named by `spec`, e.g. `btrfs:/var/cache/obuilder`,
    and sweep what dead processes left in it (unless `sweep` is False: see `Store.sweep`)."""
    from obuilder_core.plugins import default_plugins

    manager = plugins or default_plugins()
    kind, arg = parse_store_spec(spec, manager)
    store: Store | None = manager.hook.obuilder_open_store(kind=kind, arg=arg)
    if store is None:
        raise StoreError(f"invalid store {spec!r}: no plugin opens {kind}: stores")
    if sweep:
        store.sweep()
    return store
