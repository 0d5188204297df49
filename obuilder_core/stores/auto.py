"""`auto:/path`: the best backend this machine offers for `/path`, remembered once chosen.

btrfs if `/path` is on btrfs, else overlayfs if an overlay can really be mounted there (probed
with a tiny mount), else rsync, which works anywhere. The choice is written to `/path/kind` so a
store is always reopened with the backend that created it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from pathlib import Path

from obuilder_core.process import run_cmd
from obuilder_core.stores.base import Store, StoreError
from obuilder_core.stores.disk import fs_type, remove_tree, seal_root
from obuilder_core.stores.names import unique_name

_KINDS = ("btrfs", "overlayfs", "rsync")


def default_store_spec() -> str:
    """The default store: `auto:` + $XDG_CACHE_HOME/obuilder (or ~/.cache/obuilder)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return f"auto:{Path(cache).absolute() / 'obuilder'}"


def can_mount_overlay(dir: Path) -> bool:
    """True if an overlay filesystem with its upper layer in `dir` can be mounted here."""
    probe = dir / f".overlay-probe-{unique_name()}"
    try:
        for sub in ("lower", "upper", "work", "merged"):
            (probe / sub).mkdir(parents=True)
        (probe / "lower" / "f").write_text("probe\n")
        opts = f"lowerdir={probe}/lower,upperdir={probe}/upper,workdir={probe}/work"
        mount = run_cmd(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(probe / "merged")], check=False
        )
        if mount.returncode != 0:
            return False
        try:
            (probe / "merged" / "g").write_text("probe\n")
            return (probe / "merged" / "f").exists() and (probe / "upper" / "g").exists()
        finally:
            run_cmd(["umount", str(probe / "merged")], check=False)
    except (OSError, StoreError):
        return False
    finally:
        with contextlib.suppress(OSError):
            remove_tree(probe)


def choose_kind(root: Path) -> str:
    """The backend `auto` picks for a new store at `root` (which must exist)."""
    if fs_type(root) == "btrfs":
        return "btrfs"
    if importlib.util.find_spec("obuilder_core.stores.overlayfs") and can_mount_overlay(root):
        return "overlayfs"
    return "rsync"


def open_backend(arg: str) -> Store:
    """Open the store at `arg` with its recorded backend, choosing one for a new store."""
    root = Path(arg).absolute()
    try:
        seal_root(root)
        marker = root / "kind"
        kind = marker.read_text().strip() if marker.exists() else None
        if kind is None:
            kind = choose_kind(root)
            tmp = root / f".kind-{unique_name()}"
            tmp.write_text(f"{kind}\n")
            os.replace(tmp, marker)
    except OSError as e:
        raise StoreError(f"auto:{arg}: cannot open store: {e.strerror or e}") from None
    if kind not in _KINDS:
        raise StoreError(f"auto:{arg}: {marker} names unknown backend {kind!r}")
    module = importlib.import_module(f"obuilder_core.stores.{kind}")
    store: Store = module.open_backend(str(root / kind))
    return store
