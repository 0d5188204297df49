"""`rsync:/path`: steps as plain directory copies. Works on any filesystem, needs no root.

Layout: see `DirStore`. A child step starts as `cp -a --reflink=auto` of its parent (a cheap
reflink clone on xfs/btrfs, a full copy elsewhere); commit is one `rename`.
"""

from __future__ import annotations

from pathlib import Path

from obuilder_core.process import run_cmd
from obuilder_core.stores.base import StoreError
from obuilder_core.stores.dirstore import DirStore
from obuilder_core.stores.disk import remove_tree, seal_root, statvfs_free_pct


class RsyncStore(DirStore):
    """A store of plain directories (reference "rsync" store in copy mode)."""

    kind = "rsync"

    def _create_empty(self, path: Path) -> None:
        path.mkdir(mode=0o755)

    def _clone(self, src: Path, dst: Path) -> None:
        # `cp -a SRC/. DST` copies the contents (dot files included), hard links, xattrs and the
        # top directory's own mode/owner; symlinks stay links.
        dst.mkdir(mode=0o755)
        run_cmd(["cp", "-a", "--reflink=auto", "--", f"{src}/.", str(dst)])

    def _remove(self, path: Path) -> None:
        remove_tree(path)

    def df(self) -> float:
        """Free space of the store's filesystem (statvfs), in percent."""
        return statvfs_free_pct(self.root)


def open_backend(arg: str) -> RsyncStore:
    """Open (creating if needed) the rsync store at directory `arg`."""
    root = Path(arg)
    if not root.is_absolute():
        root = root.absolute()
    try:
        seal_root(root)
        return RsyncStore(root)
    except OSError as e:
        raise StoreError(f"rsync:{arg}: cannot open store: {e.strerror or e}") from None
