"""Names in a store: cache names escaped injectively to file names, step ids checked, unique
temporary names (no in-memory counter, so several processes can share a store)."""

from __future__ import annotations

import hashlib
import os
import re
import secrets

from obuilder_core.stores.base import StoreError

_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


_MAX_ESCAPED = 200


_STEP_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")


def escape_cache_name(name: str) -> str:
    """Map a cache name to a file name, injectively: `c-` + `[A-Za-z0-9._-]` kept + `%02x`.

    Unlike OBuilder's `Escape.cache` (reference §7 item 14) every escape has two hex digits, so
    distinct names never collide; `/`, `%`, spaces and NUL are escaped, so the result is always
    one path component, and the `c-` prefix means it is never `.` or `..`. A name whose escape
    would exceed 200 characters becomes `h-` + its SHA-256 (hex) instead.
    """
    raw = name.encode("utf-8", errors="surrogateescape")
    out = "c-" + "".join(chr(b) if b in _SAFE_BYTES else f"%{b:02x}" for b in raw)
    if len(out) > _MAX_ESCAPED:
        # Too long for one file name: a digest of the name instead. The `h-` prefix keeps these
        # apart from short names (always `c-`), and they are valid zfs dataset names too.
        out = "h-" + hashlib.sha256(raw).hexdigest()
    return out


def is_step_id(name: str) -> bool:
    """Whether `name` could be a step id (a single safe path component)."""
    return _STEP_ID.fullmatch(name) is not None


def check_step_id(id: str) -> str:
    """Return `id` if it is usable as one file name (`[A-Za-z0-9._-]`, no leading dot).

    Raises StoreError otherwise, so that an id can never name a path outside the store.
    """
    if not _STEP_ID.fullmatch(id):
        raise StoreError(f"invalid step id {id!r}: expected letters, digits, '.', '_' or '-'")
    return id


def unique_name(suffix: str = "") -> str:
    """A name unique across processes and threads without any in-memory counter.

    `<pid>-<64 random bits>[-suffix]`; the suffix (for humans reading the directory) is cut to
    100 characters so the name always fits in one path component.
    """
    name = f"{os.getpid()}-{secrets.token_hex(8)}"
    return f"{name}-{suffix[:100]}" if suffix else name
