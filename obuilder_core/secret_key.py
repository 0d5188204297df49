"""The per-store secret key: a secret's value enters a step's key only as an HMAC under it, so
ids leak nothing and a rotated secret still rebuilds."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from obuilder_core.errors import ObuilderError

STORE_KEY_BYTES = 32


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
