"""The built-in store backends, registered as a plugin (see `obuilder_core.plugins`).

Each backend is one module defining `open_backend(arg) -> Store`, imported only when chosen.
"""

from __future__ import annotations

import importlib

from obuilder_core.plugins import hookimpl
from obuilder_core.stores.base import Store

BACKENDS = {
    "btrfs": "obuilder_core.stores.btrfs",
    "zfs": "obuilder_core.stores.zfs",
    "overlayfs": "obuilder_core.stores.overlayfs",
    "rsync": "obuilder_core.stores.rsync",
    "auto": "obuilder_core.stores.auto",
}


@hookimpl
def obuilder_store_kinds() -> list[str]:
    """btrfs, zfs, overlayfs, rsync and auto."""
    return list(BACKENDS)


@hookimpl
def obuilder_open_store(kind: str, arg: str) -> Store | None:
    """Open a built-in store, or None for another kind."""
    module = BACKENDS.get(kind)
    if module is None:
        return None
    store: Store = importlib.import_module(module).open_backend(arg)
    return store
