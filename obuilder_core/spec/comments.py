"""The comments of a spec file, each tied to the form that `fmt` prints it next to.

`fmt` prints a spec from its model, in which comments have no place; this module finds, for
every comment of the text, the printed form it belongs with, by the position (line, column)
of that form's `(` — which the model keeps. The places:

- `header` / `footer`: lines before and after the spec (blank lines between groups kept);
- `before[key]`: comments on their own lines above an item of a spec (an operation, a stage,
  `(from ...)`), or above a field of `(run ...)` / `(copy ...)`;
- `after[key]`: a comment after the code on the line where that item or field ends (or
  where `(build NAME` ends, before the stage's spec on the next line);
- `closing[key]`: comments on their own lines after the last item of a spec or field of an
  operation, printed before its closing `)`.

A comment anywhere else (inside a one-line form such as `(env ...)`, inside a field) moves to
the lines above the item that holds it: every comment is kept, and printing the result again
puts each in the same place, so `fmt` is idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from obuilder_core.spec.layout import Form, SourceComment, scan
from obuilder_core.spec.model import Pos

Key = tuple[int, int, str]
"""Where a comment goes: the (line, column) of a form's `(`, and a field name ("" for the
form itself)."""

RECORD_OPS = ("run", "copy")
BUILD_NAME = "name"
"""The field part of the key of `(build NAME`, whose line a comment may end."""
BUILD_SPEC = "spec"
"""The field part of the key of the lines between `(build NAME` and the stage's spec."""


def key_of(pos: Pos | None, field_name: str = "") -> Key | None:
    """The key of the form at `pos` (or of its field `field_name`); None for forms made by
    code, which have no comments."""
    return None if pos is None else (pos.line, pos.col, field_name)


def _form_key(form: Form, field_name: str = "") -> Key:
    return (form.line, form.col, field_name)


@dataclass
class Comments:
    """The comments of one spec text by place (see the module docstring). Empty for a spec
    built in code."""

    header: list[str] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)
    trailer: list[SourceComment] = field(default_factory=list)  # after the spec's last `)`
    before: dict[Key, list[SourceComment]] = field(default_factory=dict)
    after: dict[Key, list[SourceComment]] = field(default_factory=dict)
    closing: dict[Key, list[SourceComment]] = field(default_factory=dict)
    # Every comment placed inside an operation (at a field or before its `)`), by the
    # operation's key: what moves above a `(copy ...)` that is printed on one line.
    inside: dict[Key, list[SourceComment]] = field(default_factory=dict)

    def add(self, place: dict[Key, list[SourceComment]], k: Key, c: SourceComment) -> None:
        """Put `c` at `k` in `place` (one of `before`, `after`, `closing`)."""
        place.setdefault(k, []).append(c)

    def add_inside(self, place: dict[Key, list[SourceComment]], k: Key, c: SourceComment) -> None:
        """Put `c` at `k`, which is a field of (or the closing of) an operation."""
        self.add(place, k, c)
        self.add(self.inside, (k[0], k[1], ""), c)

    @staticmethod
    def at(place: dict[Key, list[SourceComment]], k: Key | None) -> list[SourceComment]:
        """The comments at `k` in `place` (none for None)."""
        return place.get(k, []) if k is not None else []


def _blank_between(first_end_line: int, next_line: int) -> bool:
    return next_line > first_end_line + 1


def _lines(
    comments: Sequence[SourceComment], start_gap: bool, end_gap_line: int | None
) -> list[str]:
    """Comments as printed lines, "" for a blank line where the text had one or more."""
    out: list[str] = [""] if start_gap and comments else []
    for i, c in enumerate(comments):
        if i and _blank_between(comments[i - 1].end_line, c.line):
            out.append("")
        out.append(c.text)
    if (
        comments
        and end_gap_line is not None
        and _blank_between(comments[-1].end_line, end_gap_line)
    ):
        out.append("")
    return out


class _Collector:
    """Places each comment inside the spec list (see the module docstring)."""

    def __init__(self, comments: Comments) -> None:
        self.comments = comments

    def in_spec(self, c: SourceComment, spec: Form) -> None:
        """Place `c`, which is inside the spec list `spec`."""
        i = spec.item_before(c.start)
        inner = spec.items[i] if i >= 0 and spec.items[i].contains(c.start) else None
        if inner is None or not inner.is_list:
            self.between(c, spec.items, i, _form_key(spec), inside=False)
            return
        if inner.head == "build" and len(inner.items) == 3 and inner.items[2].is_list:
            child = inner.items[2]
            if child.contains(c.start):
                self.in_spec(c, child)
                return
            self.in_build(c, inner, child)
            return
        if inner.head in RECORD_OPS:
            self.in_record(c, inner)
            return
        self.comments.add(self.comments.before, _form_key(inner), c)

    def in_build(self, c: SourceComment, build: Form, child: Form) -> None:
        """Place `c`, which is inside `(build NAME SPEC)` but not inside SPEC."""
        if c.end <= child.start:
            if not c.own_line and c.line == build.items[1].end_line:
                self.comments.add(self.comments.after, _form_key(build, BUILD_NAME), c)
            else:  # on the lines between `(build NAME` and the stage's spec
                self.comments.add(self.comments.before, _form_key(build, BUILD_SPEC), c)
        elif c.own_line:
            self.comments.add(self.comments.closing, _form_key(child), c)
        else:
            self.comments.add(self.comments.after, _form_key(build), c)

    def in_record(self, c: SourceComment, op: Form) -> None:
        """Place `c`, which is inside `(run ...)` or `(copy ...)`: next to a field if it is
        between fields, else above the field that holds it."""
        fields = [f for f in op.items[1:] if f.is_list and f.head]
        holder = next((f for f in fields if f.contains(c.start)), None)
        if holder is None and fields and c.start < fields[0].start:
            holder = fields[0]  # `(run ; why` or a line above the first field
        if holder is not None:
            self.comments.add_inside(self.comments.before, _form_key(op, holder.head or ""), c)
            return
        last = max((i for i, f in enumerate(fields) if f.start < c.start), default=-1)
        self.between(c, fields, last, _form_key(op), inside=True)

    def between(
        self, c: SourceComment, items: list[Form], last: int, owner: Key, *, inside: bool
    ) -> None:
        """Place `c`, which is between the `items` of a list, after `items[last]` (the items
        of a spec, or the fields of the operation `owner` when `inside`): after the item
        that ends on its line, else above the next item, else before the list's `)`."""
        prev = items[last] if last >= 0 else None
        nxt = items[last + 1] if last + 1 < len(items) else None
        add = self.comments.add_inside if inside else self.comments.add

        def item_key(f: Form) -> Key:
            return (owner[0], owner[1], f.head or "") if inside else _form_key(f)

        if prev is not None and not c.own_line and prev.end_line == c.line:
            add(self.comments.after, item_key(prev), c)
        elif nxt is not None:
            add(self.comments.before, item_key(nxt), c)
        else:
            add(self.comments.closing, owner, c)


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _may_have_comments(text: str) -> bool:
    """False when no comment can start outside a string (a quick test: `;` is common in
    shell commands, and scanning a big spec's layout takes a while)."""
    if ";" not in text and "#|" not in text:
        return False
    outside = _STRINGS.sub('""', text)
    return ";" in outside or "#|" in outside


def collect_comments(text: str) -> Comments:
    """The comments of the spec `text` (decoded, as `parse_spec` read it), by place."""
    out = Comments()
    if not _may_have_comments(text):
        return out  # the usual spec: nothing to scan for
    layout = scan(text)
    spec = next((f for f in layout.forms if f.is_list), None)
    if spec is None:
        out.header = _lines(layout.comments, False, None)
        return out
    head = [c for c in layout.comments if c.end <= spec.start]
    tail = [c for c in layout.comments if c.start >= spec.end]
    out.header = _lines(head, False, spec.line)
    trailer = [c for c in tail if not c.own_line and c.line == spec.end_line]
    last = spec.items[-1] if spec.items else None
    for c in trailer:
        if last is not None and last.end_line == c.line:
            out.add(out.after, _form_key(last), c)  # `... (run (shell x))) ; note`
        else:
            out.trailer.append(c)
    rest = [c for c in tail if c not in trailer]
    out.footer = _lines(rest, bool(rest) and _blank_between(spec.end_line, rest[0].line), None)
    collector = _Collector(out)
    for c in layout.comments:
        if spec.contains(c.start):
            collector.in_spec(c, spec)
    return out
