"""Step ids: SHA-256 over a canonical, versioned encoding of each step's inputs.

One frozen dataclass per step kind holds exactly the inputs that decide the step's result; the
id is `sha256_hex(encode(key))`. The encoding is canonical JSON (sorted keys, no whitespace,
ASCII only) of a value tree that tags every variant, so distinct keys never share an encoding.
It starts with KEY_FORMAT: changing the encoding means bumping it (old results are then never
reused, which is safe). Unlike OBuilder (reference §1.6): copy manifests carry file modes and
the digest algorithm; secret values appear only as an HMAC under a per-store random key
(`secret_key.py`). Cache mounts are not in the key, as in OBuilder: a cache is an optimisation
a step must not depend on.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from obuilder_core.manifest import Dir, Entry, File, Manifest, Symlink
from obuilder_core.paths import CopyShape
from obuilder_core.spec.model import NamedUser, Run, UnixUser, User

KEY_FORMAT = "pytest-obuilder/step-key/1"


@dataclass(frozen=True)
class BaseKey:
    """The base image step: identified by the `(from IMAGE)` string alone (reference §1.6)."""

    image: str


@dataclass(frozen=True)
class RunKey:
    """A `run` step: parent id, the context it runs in, the command and its secrets.

    `secrets` are (target, secret_digest) pairs in spec order; `env` is the whole context env in
    context order.
    """

    parent: str
    workdir: str
    user: User
    env: tuple[tuple[str, str], ...]
    cmd: str
    shell: tuple[str, ...]
    network: tuple[str, ...]
    secrets: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CopyKey:
    """A `copy` step: parent id, the user files land as, destination, shape and contents."""

    parent: str
    user: User
    dst: str
    shape: CopyShape
    manifests: tuple[Manifest, ...]
    algorithm: str

    def __post_init__(self) -> None:
        for m in self.manifests:
            if m.algorithm != self.algorithm:
                raise ValueError(f"manifest uses {m.algorithm}, key says {self.algorithm}")


StepKey = BaseKey | RunKey | CopyKey


def run_key(
    parent: str,
    *,
    workdir: str,
    user: User,
    env: Sequence[tuple[str, str]],
    shell: Sequence[str],
    op: Run,
    secret_digests: Sequence[str],
) -> RunKey:
    """The key of `op` run in this context; `secret_digests[i]` is for `op.secrets[i]`.

    Cache mounts, buildkit options and secret ids do not enter the key.
    """
    if len(secret_digests) != len(op.secrets):
        raise ValueError("one secret digest per secret is needed")
    return RunKey(
        parent=parent,
        workdir=workdir,
        user=user,
        env=tuple((k, v) for k, v in env),
        cmd=op.shell,
        shell=tuple(shell),
        network=tuple(op.network),
        secrets=tuple((s.target, d) for s, d in zip(op.secrets, secret_digests, strict=True)),
    )


def _user(u: User) -> list[Any]:
    if isinstance(u, UnixUser):
        return ["unix", u.uid, u.gid]
    if isinstance(u, NamedUser):
        return ["named", u.name]
    raise TypeError(f"not a user: {u!r}")


def _entry(e: Entry) -> list[Any]:
    if isinstance(e, File):
        return ["file", e.path, e.digest, e.size, e.mode]
    if isinstance(e, Symlink):
        return ["symlink", e.path, e.target]
    if isinstance(e, Dir):
        return ["dir", e.path, [_entry(c) for c in e.entries]]
    raise TypeError(f"not a manifest entry: {e!r}")


def _value(key: StepKey) -> dict[str, Any]:
    if isinstance(key, BaseKey):
        return {"kind": "base", "image": key.image}
    if isinstance(key, RunKey):
        return {
            "kind": "run",
            "parent": key.parent,
            "workdir": key.workdir,
            "user": _user(key.user),
            "env": [[k, v] for k, v in key.env],
            "cmd": key.cmd,
            "shell": list(key.shell),
            "network": list(key.network),
            "secrets": [[t, d] for t, d in key.secrets],
        }
    if isinstance(key, CopyKey):
        return {
            "kind": "copy",
            "parent": key.parent,
            "user": _user(key.user),
            "dst": key.dst,
            "shape": key.shape.value,
            "algorithm": key.algorithm,
            "manifests": [_entry(m.root) for m in key.manifests],
        }
    raise TypeError(f"not a step key: {key!r}")


def material(key: StepKey) -> dict[str, Any]:
    """The value tree the id of `key` hashes (JSON-able): what `builder/explain.py` compares to
    say why a step missed. Secret values appear only as their HMACs."""
    return _value(key)


def encode(key: StepKey) -> bytes:
    """The canonical bytes of `key`: equal keys give equal bytes, distinct keys distinct bytes."""
    return _encode(_value(key))


def _encode(step: dict[str, Any]) -> bytes:
    value = {"format": KEY_FORMAT, "step": step}
    # ensure_ascii escapes everything non-ASCII, including the lone surrogates that stand for
    # non-UTF-8 file name bytes, so the text is well defined for any str.
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def step_id(key: StepKey) -> str:
    """The step id: 64 lowercase hex digits of SHA-256 over `encode(key)`."""
    return hashlib.sha256(encode(key)).hexdigest()


def material_id(step: dict[str, Any]) -> str:
    """`step_id` of the key whose `material` is `step` (computed once for both)."""
    return hashlib.sha256(_encode(step)).hexdigest()


def scratch_id(id: str, purpose: str) -> str:
    """A new id, never seen before, for a step that must not come from the cache: `--no-cache`
    and `(uncached)` steps ("fresh"; their descendants get new ids too), the determinism
    checker's rebuilds ("verify"). `purpose` is only for whoever reads the derivation."""
    return hashlib.sha256(f"{id}:{purpose}:{secrets.token_hex(16)}".encode()).hexdigest()
