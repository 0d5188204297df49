"""Incremental copies: a copy that misses starts from the previous result of the same copy.

Two copies are of one *family* when they differ only in their files' contents: same parent,
user, destination, shape, digest algorithm and source names (`family`). Every copy saves in
its step dir the listing of what it wrote (`copy_tar.Listing`, file `copied.json`), and the
index remembers the step each family last built. When a copy misses, it is built on a clone
of that step instead of its parent: the members the previous copy wrote that this one does not
(or writes as another kind) are removed, and the tar stream carries only the files and
symlinks whose digest, size, mode or mtime changed, and every directory entry. The result is
the full copy's, member for member (tests/builder/test_incremental.py compares them).

Only where a clone does not depend on its source (`Store.independent_clones`: btrfs, rsync),
never for a fresh step (`--no-cache`, the determinism checker's rebuilds), and not when a
member to remove is also in the parent (the previous copy had replaced it; a full copy
restores it): those copies are full.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obuilder_core import keys
from obuilder_core.copy_tar import Listing, member_kinds, missing_dirs
from obuilder_core.in_root import exists_in_root
from obuilder_core.manifest import Manifest
from obuilder_core.paths import CopyShape

log = logging.getLogger(__name__)

LISTING = "copied.json"
"""The file of a copy's step dir listing what the copy wrote."""
_FORMAT = 1


@dataclass(frozen=True)
class Edit:
    """How to make a copy from the previous result of its family instead of from scratch."""

    base: str
    """The previous result, which the build clones instead of the parent."""
    previous: Listing
    """What the previous copy wrote (members whose record is unchanged are not sent)."""
    remove: tuple[str, ...]
    """Members to remove first: written before, and gone or of another kind now."""
    create_dirs: tuple[str, ...]
    """The destination's directories missing from the parent (`copy_tar.missing_dirs`)."""


def family(material: Mapping[str, Any]) -> str:
    """The family of the copy whose key has `material` (`keys.material` of a CopyKey)."""
    step = {k: v for k, v in material.items() if k != "manifests"}
    step["kind"] = "copy-family"
    step["sources"] = [m[1] for m in material["manifests"]]
    return keys.material_id(step)


def save_listing(step_dir: Path, listing: Listing) -> None:
    """Write `listing` as the copy's `copied.json` in `step_dir` (committed with the step)."""
    doc = {"format": _FORMAT, "members": listing}
    (step_dir / LISTING).write_text(json.dumps(doc, separators=(",", ":")))


def load_listing(step_dir: Path) -> Listing | None:
    """The listing saved in `step_dir`, or None (none saved, or unreadable)."""
    try:
        doc = json.loads((step_dir / LISTING).read_text())
        if doc.get("format") != _FORMAT:
            return None
        members = doc["members"].items()
        return {str(m): (str(k), str(a), int(n), int(o), int(t)) for m, (k, a, n, o, t) in members}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, AttributeError) as e:
        log.warning("ignoring the unreadable copy listing in %s: %s", step_dir, e)
        return None


def plan_edit(
    base: str,
    base_dir: Path,
    parent_rootfs: Path,
    items: tuple[Manifest, ...],
    dst: str,
    shape: CopyShape,
) -> Edit | None:
    """The Edit that makes the copy of `items` to `dst` from result `base` (its step dir
    `base_dir`) of the same family, or None if the copy must be full. `parent_rootfs`: the
    whole rootfs of the copy's parent. OSError if the parent cannot be looked at."""
    previous = load_listing(base_dir)
    if previous is None:
        return None
    create = missing_dirs(parent_rootfs, dst, shape)
    wanted = {d.strip("/"): "d" for d in create} | member_kinds(items, dst, shape)
    remove = stale_members(previous, wanted)
    if any(exists_in_root(parent_rootfs, m) for m in remove):
        return None
    return Edit(base, previous, tuple(remove), tuple(create))


def stale_members(previous: Listing, wanted: Mapping[str, str]) -> list[str]:
    """The members of `previous` to remove before writing `wanted` ({member: kind}): those
    not wanted or wanted as another kind, outermost only (a removed directory takes its
    contents with it), sorted."""
    stale: set[str] = set()
    for member in sorted(previous):
        if wanted.get(member) == previous[member][0]:
            continue
        if not any(a in stale for a in _ancestors(member)):
            stale.add(member)
    return sorted(stale)


def _ancestors(member: str) -> list[str]:
    parts = member.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
