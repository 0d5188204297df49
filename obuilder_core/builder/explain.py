"""Why a step missed the cache, in one line: what changed in its key since the most recent
build of the same spec at the same step position.

Keys are compared as the value trees `keys.material` gives (what the step id hashes), so every
reason is a real difference of inputs: `env FOO changed`, `copy: 1 of 5,000 files changed:
src/a.c`, `parent changed (step 3)`, `secret /run/secrets/tok rotated` (secrets appear only as
HMACs under the store's key). None of OBuilder, BuildKit or buildah says why a step missed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_REASONS = 3
MAX_NAMES = 3

Material = dict[str, Any]


def why_missed(
    old: Material | None,
    new: Material,
    *,
    same_id: bool,
    step_of: Callable[[str], int | None] = lambda id: None,
) -> str:
    """The reason step `new` was not in the cache, given the key `old` that the same spec
    step had the last time (None: never built here). `same_id`: the old key gave the same id
    (the inputs are unchanged: the result was never saved, or was removed). `step_of(id)`:
    the number of the step with that id in this build, to name a changed parent."""
    if old is None:
        return "new step (not built from this spec here before)"
    if same_id:
        return (
            "same inputs as the last build, which did not save it (it failed or was"
            " cancelled), or its result was deleted or pruned since"
        )
    if old.get("kind") != new.get("kind"):
        return f"new step (this position held a {old.get('kind', '?')} step before)"
    reasons = _own_changes(old, new)
    if old.get("parent") != new.get("parent"):
        n = step_of(str(new.get("parent")))
        reasons.append(f"parent changed (step {n})" if n is not None else "parent changed")
    if not reasons:
        return "its key changed (the key format changed since the last build)"
    more = len(reasons) - MAX_REASONS
    return "; ".join(reasons[:MAX_REASONS]) + (f"; {more} more" if more > 0 else "")


def _own_changes(old: Material, new: Material) -> list[str]:
    kind = new.get("kind")
    if kind == "base":
        return [f"base image changed: {old.get('image')} -> {new.get('image')}"]
    reasons = []
    if kind == "run":
        if old.get("cmd") != new.get("cmd"):
            reasons.append("command changed")
        reasons += _env_changes(old.get("env", []), new.get("env", []))
        reasons += _secret_changes(old.get("secrets", []), new.get("secrets", []))
        for field, what in (("network", "network"), ("shell", "shell")):
            if old.get(field) != new.get(field):
                reasons.append(
                    f"{what} changed: {_show(old.get(field))} -> {_show(new.get(field))}"
                )
    if kind == "copy":
        reasons += _copy_changes(old, new)
        for field in ("dst", "shape", "algorithm"):
            if old.get(field) != new.get(field):
                reasons.append(f"{field} changed: {old.get(field)} -> {new.get(field)}")
    if old.get("workdir") != new.get("workdir"):
        reasons.append(f"workdir changed: {old.get('workdir')} -> {new.get('workdir')}")
    if old.get("user") != new.get("user"):
        reasons.append(f"user changed: {_user(old.get('user'))} -> {_user(new.get('user'))}")
    return reasons


def _env_changes(old: list[list[str]], new: list[list[str]]) -> list[str]:
    a, b = _pairs(old), _pairs(new)
    changed = [k for k in b if k in a and a[k] != b[k]]
    added = [k for k in b if k not in a]
    removed = [k for k in a if k not in b]
    reasons = []
    for names, what in ((changed, "changed"), (added, "added"), (removed, "removed")):
        if names:
            reasons.append(f"env {_names(names)} {what}")
    if not reasons and [k for k, _ in old] != [k for k, _ in new]:
        reasons.append("env order changed")
    return reasons


def _secret_changes(old: list[list[str]], new: list[list[str]]) -> list[str]:
    a, b = _pairs(old), _pairs(new)
    rotated = [t for t in b if t in a and a[t] != b[t]]
    reasons = [f"secret {_names(rotated)} rotated"] if rotated else []
    if a.keys() != b.keys():
        reasons.append(f"secrets changed: {_names(list(a))} -> {_names(list(b))}")
    return reasons


def _copy_changes(old: Material, new: Material) -> list[str]:
    a, b = _files(old.get("manifests", [])), _files(new.get("manifests", []))
    reasons = _path_changes(a, b, files_only=True) or _path_changes(a, b, files_only=False)
    return reasons


def _path_changes(a: dict[str, Any], b: dict[str, Any], *, files_only: bool) -> list[str]:
    """`copy: N of TOTAL files changed|added|removed: PATHS`; counting only files and links
    if `files_only` (a new directory is seen through its new files), else directories too."""

    def wanted(entry: Any) -> bool:
        return not files_only or entry[0] != "dir"

    def count(tree: dict[str, Any]) -> int:
        return sum(1 for e in tree.values() if e[0] != "dir")

    changed = [p for p in b if p in a and a[p] != b[p] and (wanted(a[p]) or wanted(b[p]))]
    added = [p for p in b if p not in a and wanted(b[p])]
    removed = [p for p in a if p not in b and wanted(a[p])]
    reasons = []
    # Out of the files there are now; removed ones out of those there were.
    for paths, what, total in (
        (changed, "changed", count(b)),
        (added, "added", count(b)),
        (removed, "removed", count(a)),
    ):
        if paths:
            noun = "file" if total == 1 else "files"
            reasons.append(f"copy: {len(paths):,} of {total:,} {noun} {what}: {_names(paths)}")
    return reasons


def _files(manifests: list[Any]) -> dict[str, Any]:
    """Path -> entry for every file, symlink and directory of a copy's manifests."""
    out: dict[str, Any] = {}

    def visit(entry: list[Any]) -> None:
        kind, path = entry[0], entry[1]
        if kind == "dir":
            for child in entry[2]:
                visit(child)
            if path in out:
                return
            out[path] = ["dir"]  # a directory is its children: compared through them
        else:
            out[path] = entry

    for root in manifests:
        visit(root)
    return out


def _pairs(pairs: list[list[str]]) -> dict[str, str]:
    return {k: v for k, v in pairs}


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES])
    return shown + (f" (+{len(names) - MAX_NAMES} more)" if len(names) > MAX_NAMES else "")


def _user(user: Any) -> str:
    if isinstance(user, list) and user and user[0] == "unix":
        return f"{user[1]}:{user[2]}"
    if isinstance(user, list) and len(user) > 1:
        return str(user[1])
    return str(user)


def _show(value: Any) -> str:
    return " ".join(value) if isinstance(value, list) and value else "(none)"
