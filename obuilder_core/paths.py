"""Paths of the build context: `workdir` joining, and where a copy's sources land (a single item
as the destination itself, several into it)."""

from __future__ import annotations

import enum

from obuilder_core.errors import ObuilderError


class CopySpecError(ObuilderError):
    """A copy's sources and destination do not fit together."""


class CopyShape(enum.Enum):
    """OBuilder's Copy_item (one source written as dst) or Copy_items (sources into dst dir)."""

    SINGLE = "single"
    MULTI = "multi"


def normalize_path(path: str) -> str:
    """An absolute container path with '//' and '.' collapsed and '..' resolved lexically.

    '..' never climbs above '/' (as inside a chroot). Used for workdirs and copy destinations
    so that equivalent spellings (`/src/..` and `/`) give the same step id (reference §7.36).
    """
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    return "/" + "/".join(out)


def copy_destination(workdir: str, dst: str, n_items: int) -> tuple[str, CopyShape]:
    """Resolve a copy's `dst` against `workdir` and pick its shape (reference §2.7 step 4).

    A dst ending in '/' (or '/.', '/..', or naming '/') is a directory the items go into
    (MULTI); otherwise exactly one item is written as dst (SINGLE).
    """
    if n_items == 0:
        raise CopySpecError("No source items for copy!")
    full = dst if dst.startswith("/") else f"{workdir.rstrip('/')}/{dst}"
    path = normalize_path(full)
    last = full.rsplit("/", 1)[-1]
    if full.endswith("/") or last in (".", "..") or path == "/":
        return path, CopyShape.MULTI
    if n_items > 1:
        raise CopySpecError("When copying multiple items, the destination must end with '/'")
    return path, CopyShape.SINGLE
