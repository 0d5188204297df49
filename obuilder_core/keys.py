"""Step ids: SHA-256 over a canonical, versioned encoding of each step's inputs.

One frozen dataclass per step kind holds exactly the inputs that decide the step's result; the
id is `sha256_hex(encode(key))`. The encoding is canonical JSON (sorted keys, no whitespace,
ASCII only) of a value tree that tags every variant, so distinct keys never share an encoding.
It starts with KEY_FORMAT: changing the encoding means bumping it (old results are then never
reused, which is safe). Unlike OBuilder (reference §1.6): copy manifests carry file modes and
the digest algorithm; secret values appear only as an HMAC under a per-store random key.
Cache mounts are not in the key, as in OBuilder: a cache is an optimisation a step must not
depend on.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obuilder_core.errors import ObuilderError
from obuilder_core.manifest import Dir, Entry, File, Manifest, Symlink
from obuilder_core.spec.model import NamedUser, Run, UnixUser, User

KEY_FORMAT = "pytest-obuilder/step-key/1"
STORE_KEY_BYTES = 32


class CopySpecError(ObuilderError):
    """A copy's sources and destination do not fit together."""


class CopyShape(enum.Enum):
    """OBuilder's Copy_item (one source written as dst) or Copy_items (sources into dst dir)."""

    SINGLE = "single"
    MULTI = "multi"


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


# --- encoding ------------------------------------------------------------------------------


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


def encode(key: StepKey) -> bytes:
    """The canonical bytes of `key`: equal keys give equal bytes, distinct keys distinct bytes."""
    value = {"format": KEY_FORMAT, "step": _value(key)}
    # ensure_ascii escapes everything non-ASCII, including the lone surrogates that stand for
    # non-UTF-8 file name bytes, so the text is well defined for any str.
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def step_id(key: StepKey) -> str:
    """The step id: 64 lowercase hex digits of SHA-256 over `encode(key)`."""
    return hashlib.sha256(encode(key)).hexdigest()


# --- secrets -------------------------------------------------------------------------------


def secret_digest(store_key: bytes, value: bytes) -> str:
    """HMAC-SHA256 of a secret value under the store's key: stands for the value in run keys.

    Ids then reveal nothing about the value (no offline guessing without the store key), and a
    changed value still changes the id.
    """
    return hmac.new(store_key, value, hashlib.sha256).hexdigest()


def load_or_create_key(path: Path) -> bytes:
    """The store's secret-HMAC key at `path`, created (32 random bytes, mode 0600) if absent.

    Creation is atomic and race-free: the key is written to a private temporary file and linked
    into place, so concurrent callers all end up with the same key. Raises ObuilderError if the
    file is unreadable, has the wrong size, or is readable by group or others.
    """
    path = Path(path)
    if not path.exists():
        _create_key(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise ObuilderError(f"Can't read secret key file {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        data = f.read(STORE_KEY_BYTES + 1)
    if stat.S_IMODE(mode) & 0o077:
        raise ObuilderError(
            f"Secret key file {path} is accessible by others (mode {stat.S_IMODE(mode):04o});"
            f" run: chmod 600 {path}"
        )
    if len(data) != STORE_KEY_BYTES:
        raise ObuilderError(
            f"Secret key file {path} is corrupt ({len(data)} bytes, expected {STORE_KEY_BYTES})"
        )
    return data


def _create_key(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, secrets.token_bytes(STORE_KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        # link() never replaces: if another process won the race, its key stays.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    except OSError as e:
        raise ObuilderError(f"Can't create secret key file {path}: {e.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# --- paths ---------------------------------------------------------------------------------


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
