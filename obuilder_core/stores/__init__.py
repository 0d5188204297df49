"""Store backends, one module each, chosen by a `KIND:ARG` string."""

from __future__ import annotations

import importlib

from obuilder_core.stores.base import CacheBusy, CacheLease, Store, StoreError

__all__ = ["CacheBusy", "CacheLease", "Store", "StoreError", "open_store"]

# kind -> module defining `open(arg: str) -> Store`; imported only when chosen.
_BACKENDS = {
    "btrfs": "obuilder_core.stores.btrfs",
    "zfs": "obuilder_core.stores.zfs",
    "overlayfs": "obuilder_core.stores.overlayfs",
    "rsync": "obuilder_core.stores.rsync",
    "auto": "obuilder_core.stores.auto",
}


def open_store(spec: str, *, sweep: bool = True) -> Store:
    """Open (creating if needed) the store named by `spec`, e.g. `btrfs:/var/cache/obuilder`,
    and sweep what dead processes left in it (unless `sweep` is False: see `Store.sweep`)."""
    kind, sep, arg = spec.partition(":")
    if not sep or kind not in _BACKENDS or not arg:
        kinds = ", ".join(f"{k}:" for k in _BACKENDS)
        raise StoreError(f"invalid store {spec!r}: expected KIND:ARG with KIND one of {kinds}")
    module = importlib.import_module(_BACKENDS[kind])
    store: Store = module.open(arg)
    if sweep:
        store.sweep()
    return store
