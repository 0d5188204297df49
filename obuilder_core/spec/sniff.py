"""Is this file an OBuilder spec? Asked of every `*.spec` file pytest finds, most of which may
be other tools' specs (RPM, PyInstaller), so it reads only the file's start and parses nothing.
"""

from __future__ import annotations

import re

from obuilder_core.spec.parser import OPS

HEAD_BYTES = 4096
"""How much of a file `looks_like_spec` needs: its first form's first element is near the top."""

_BLANKS_AND_COMMENTS = re.compile(rb"(?:\s+|;[^\n]*|#\|.*?\|#)*", re.S)
_ATOM = re.compile(rb"[^\s()\";]+")
_FIRST_OPS = frozenset({"from", "build", *OPS})


def looks_like_spec(head: bytes) -> bool:
    """Whether a file starting with `head` is an OBuilder spec: after comments, its first form
    is a list of operations, `((from ...) ...)` or `((build ...) ...)`. A form that starts
    with an operation's name (`(from busybox) ...`, a spec missing its outer parentheses)
    counts too, so that the parser reports the mistake at its line instead of the file being
    passed over."""
    text = head.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
    at = _skip(text, 0)
    if text[at : at + 1] != b"(":
        return False
    at = _skip(text, at + 1)
    if text[at : at + 1] == b"(":
        return True
    atom = _ATOM.match(text, at)
    return atom is not None and atom.group().decode("ascii", "replace") in _FIRST_OPS


def _skip(text: bytes, at: int) -> int:
    match = _BLANKS_AND_COMMENTS.match(text, at)
    return match.end() if match else at
