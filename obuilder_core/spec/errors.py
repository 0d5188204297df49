"""SpecError: a problem in a spec file, located at file:line:col, with an optional hint."""

from __future__ import annotations

from collections.abc import Iterable

from obuilder_core.errors import ObuilderError
from obuilder_core.spec.model import Pos


class SpecError(ObuilderError):
    """A spec that cannot be read, parsed or validated.

    `str(e)` is always one line: `file:line:col: message; hint` (position and hint when known).
    """

    def __init__(self, message: str, pos: Pos | None = None, hint: str | None = None) -> None:
        # All three go to Exception.args so the error pickles (pytest-xdist ships it across).
        super().__init__(message, pos, hint)
        self.message = message
        self.pos = pos
        self.hint = hint

    def __str__(self) -> str:
        where = f"{self.pos}: " if self.pos is not None else ""
        tail = f"; {self.hint}" if self.hint else ""
        return f"{where}{self.message}{tail}"


CLIP = 60
"""Characters of the user's own text that a message repeats, at most."""


def clip(text: str, limit: int = CLIP) -> str:
    """`text` cut to `limit` characters (ending in `...`), so that a message stays one
    readable line whatever the input (a 100,000-digit uid, say)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quoted_list(names: Iterable[str], conj: str = "or") -> str:
    """`a`, `a or b`, `a, b or c`: names joined for a message."""
    items = list(names)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conj} {items[-1]}"


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A `did you mean X?` hint naming the candidates closest to `word`, or None."""
    pool = sorted(set(candidates))
    same_case = [c for c in pool if c.lower() == word.lower() and c != word]
    if same_case:
        return f"did you mean {same_case[0]}?"
    import difflib  # only for a misspelt word: not every parse needs it

    close = difflib.get_close_matches(word, pool, n=3, cutoff=0.6)
    if not close:
        return None
    return f"did you mean {quoted_list(close)}?"
