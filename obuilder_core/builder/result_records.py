"""What each successful build records for its result id, for `export`: the spec's final
settings (the store keeps a step's files, not the env/workdir/user a spec ends with) and the
chain of (step id, heading) from the base image up, in `state/results/ID.json`. Light: every
build writes one; only `export` reads them (builder/export.py)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obuilder_core.builder.result import BuildResult, FinalSettings
from obuilder_core.spec.model import NamedUser, UnixUser, User

logger = logging.getLogger(__name__)

RESULTS = "results"
"""The directory of `state_dir()` holding what builds recorded for their results."""
FORMAT = 1


@dataclass(frozen=True)
class Recorded:
    """What a build recorded for its result: the final settings and the chain of (step id,
    heading) from the base image up."""

    settings: FinalSettings
    chain: tuple[tuple[str, str], ...]


def remember(state_dir: Path, result: BuildResult) -> None:
    """Record `result`'s final settings and chain for `export` (a no-op for a failed build).
    Never fails the build: a write error is a warning, and exporting that id later falls back
    to the base image's settings."""
    if result.id is None or result.settings is None:
        return
    chain = _chain_of(result)
    if chain is None:
        return
    s = result.settings
    doc = {
        "format": FORMAT,
        "env": [list(kv) for kv in s.env],
        "workdir": s.workdir,
        "user": _user_json(s.user),
        "shell": list(s.shell),
        "chain": [list(step) for step in chain],
    }
    path = state_dir / RESULTS / f"{result.id}.json"
    data = json.dumps(doc, indent=1).encode()
    try:
        if _unchanged(path, data):  # a cached build again: a read, not a write per build
            return
        path.parent.mkdir(exist_ok=True)
        _write_atomically(path, data)
    except OSError as e:
        logger.warning("cannot record the final settings of %s for export: %s", result.id, e)


def _chain_of(result: BuildResult) -> tuple[tuple[str, str], ...] | None:
    """(id, heading) from the base image up to the result, from the build's own steps."""
    by_id = {step.id: step for step in result.steps}
    chain: list[tuple[str, str]] = []
    id: str | None = result.id
    while id is not None and len(chain) <= len(by_id):
        step = by_id.get(id)
        if step is None:
            return None
        chain.append((id, step.heading))
        id = step.parent
    return tuple(reversed(chain)) if id is None else None


def recorded(state_dir: Path, id: str) -> Recorded | None:
    """What a build recorded for result `id`, if any (None for a malformed record too: the
    caller falls back and warns)."""
    try:
        doc = json.loads((state_dir / RESULTS / f"{id}.json").read_bytes())
        if doc.get("format") != FORMAT:
            return None
        settings = FinalSettings(
            env=tuple((str(k), str(v)) for k, v in doc["env"]),
            workdir=str(doc["workdir"]),
            user=_user_of(doc["user"]),
            shell=tuple(str(a) for a in doc["shell"]),
        )
        chain = tuple((str(i), str(h)) for i, h in doc["chain"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, LookupError, TypeError, AttributeError) as e:
        logger.warning("ignoring the unreadable record of %s: %s", id, e)
        return None
    return Recorded(settings, chain) if chain and chain[-1][0] == id else None


def _user_json(user: User) -> dict[str, Any]:
    return {"uid": user.uid, "gid": user.gid} if isinstance(user, UnixUser) else {"name": user.name}


def _user_of(doc: dict[str, Any]) -> User:
    return UnixUser(int(doc["uid"]), int(doc["gid"])) if "uid" in doc else NamedUser(doc["name"])


def _unchanged(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
