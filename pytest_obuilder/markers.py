"""Pytest marks written in a spec file itself.

Two spellings, both `pytest: mark.NAME` or `pytest: mark.NAME(ARGS)` with literal arguments:

- a leading comment line, before the spec's opening parenthesis:
  `; pytest: mark.xfail(reason="the test step fails on purpose")`
- a top-level comment operation, which survives `obuilder fmt --write`:
  `(comment "pytest: mark.skip(reason=\\"not today\\")")`

Arguments must be Python literals (strings, numbers, booleans, None, tuples, lists, dicts), so
reading a spec never runs code; a string condition such as `mark.skipif("sys.platform != 'linux'")`
is evaluated by pytest itself, as for any test.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

import pytest

from obuilder_core.spec import SpecError
from obuilder_core.spec.model import Comment, Pos, Spec

PREFIX = "pytest:"
_LEADING = re.compile(r"(?P<indent>\s*;+\s*)(?P<rest>.*)")


@dataclass(frozen=True)
class SpecMark:
    """One mark read from a spec: `pytest.mark.<name>(*args, **kwargs)`."""

    name: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    pos: Pos

    def mark(self) -> pytest.MarkDecorator:
        """The pytest mark this stands for, ready for `item.add_marker`."""
        decorator: pytest.MarkDecorator = getattr(pytest.mark, self.name)
        marked: pytest.MarkDecorator = decorator(*self.args, **dict(self.kwargs))
        return marked


def parse_mark(text: str, pos: Pos) -> SpecMark:
    """The mark in `text` (`mark.NAME` or `mark.NAME(LITERALS)`); SpecError at `pos` if not."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise _bad(text, pos) from None
    call = tree if isinstance(tree, ast.Call) else None
    target = call.func if call else tree
    if not (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "mark"
    ):
        raise _bad(text, pos)
    if call is None:
        return SpecMark(target.attr, (), (), pos)
    try:
        args = tuple(ast.literal_eval(a) for a in call.args)
        kwargs = tuple((k.arg, ast.literal_eval(k.value)) for k in call.keywords if k.arg)
    except ValueError:
        raise SpecError(
            f"arguments of mark.{target.attr} must be literals (strings, numbers, ...)", pos
        ) from None
    if len(kwargs) != len(call.keywords):
        raise SpecError(f"mark.{target.attr}: **kwargs are not allowed", pos)
    return SpecMark(target.attr, args, kwargs, pos)


def _bad(text: str, pos: Pos) -> SpecError:
    return SpecError(
        f"cannot read the pytest mark {text.strip()!r}",
        pos,
        'write `pytest: mark.NAME` or `pytest: mark.NAME(reason="...")`',
    )


def leading_marks(text: str, filename: str) -> list[SpecMark]:
    """Marks in the `; pytest: ...` comment lines that come before the spec's first form."""
    marks = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LEADING.fullmatch(line)
        if match is None:
            break  # the spec itself starts: later comments are not marks
        rest = match["rest"]
        if rest.startswith(PREFIX):
            expr = rest[len(PREFIX) :]
            col = len(match["indent"]) + len(PREFIX) + len(expr) - len(expr.lstrip()) + 1
            marks.append(parse_mark(expr, Pos(filename, lineno, col)))
    return marks


def comment_marks(spec: Spec) -> list[SpecMark]:
    """Marks in the spec's top-level `(comment "pytest: ...")` operations."""
    marks = []
    for op in spec.ops:
        if isinstance(op, Comment) and op.text.startswith(PREFIX):
            pos = op.pos or Pos("<spec>", 0, 0)
            marks.append(parse_mark(op.text[len(PREFIX) :], pos))
    return marks
