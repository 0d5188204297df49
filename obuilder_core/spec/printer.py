"""Canonical printing of specs, in the layout of OBuilder's `Spec.pp`.

Layout (OCaml Format boxes emulated directly):
- the spec is a vertical box: one item per line after `(`, the closing `)` alone on the last line;
- `(build NAME SPEC)` puts the child spec on the line after NAME, aligned with NAME;
- `(run ...)` puts each field on its own line, aligned after `(run `;
- `(copy ...)` stays on one line if it ends within MARGIN columns, else one field per line;
- every other form is printed on one line; atoms are quoted sexplib-style when needed, and a
  string with inner newlines is split into `\\`-continued lines aligned on its opening quote.

Given the comments of the text a spec was parsed from (`comments.py`), each is printed next to
the form it was written next to: on its own lines above it, at the end of the line where it
ends, or before a closing `)`, which then gets a line of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from obuilder_core.spec.comments import BUILD_NAME, BUILD_SPEC, Comments, Key, key_of
from obuilder_core.spec.layout import SourceComment
from obuilder_core.spec.model import (
    Cache,
    Comment,
    Copy,
    Env,
    FromBuild,
    NamedUser,
    Op,
    Run,
    Secret,
    SetUser,
    Shell,
    Spec,
    UnixUser,
    Workdir,
)
from obuilder_core.spec.reader import Atom, Sexp, SList, escape, format_atom, head, needs_quotes

MARGIN = 80


def _atom_pieces(s: str) -> list[str]:
    """The lines of an atom as `Sexp.pp_hum` prints it: split at inner newlines with `\\`."""
    if not needs_quotes(s) or "\n" not in s[:-1]:
        return [format_atom(s)]
    lines = s.split("\n")
    pieces = [f'"{escape(lines[0])}\\']
    pieces += [f"\\n{escape(line)}\\" for line in lines[1:-1]]
    pieces.append(f'\\n{escape(lines[-1])}"')
    return pieces


# --- model -> S-expression -----------------------------------------------------------------


def _atoms(*values: str) -> list[Sexp]:
    return [Atom(v) for v in values]


def _field(name: str, *values: str) -> SList:
    return SList((Atom(name), *_atoms(*values)))


def _mount_to_sexp(m: Cache | Secret) -> SList:
    items: list[Sexp] = [Atom(m.id), _field("target", m.target)]
    if m.buildkit_options:
        pairs = SList(tuple(SList((Atom(k), Atom(v))) for k, v in m.buildkit_options))
        items.append(SList((Atom("buildkit_options"), pairs)))
    return SList(tuple(items))


def _run_to_sexp(op: Run) -> list[Sexp]:
    fields: list[Sexp] = []
    if op.cache:
        fields.append(SList((Atom("cache"), *map(_mount_to_sexp, op.cache))))
    if op.network:
        fields.append(_field("network", *op.network))
    if op.secrets:
        fields.append(SList((Atom("secrets"), *map(_mount_to_sexp, op.secrets))))
    if op.uncached:
        fields.append(SList((Atom("uncached"),)))
    fields.append(_field("shell", op.shell))
    return fields


def _copy_to_sexp(op: Copy) -> list[Sexp]:
    fields: list[Sexp] = []
    if isinstance(op.from_, FromBuild):
        fields.append(SList((Atom("from"), _field("build", op.from_.name))))
    fields += [_field("src", *op.src), _field("dst", op.dst)]
    if op.exclude:
        fields.append(_field("exclude", *op.exclude))
    return fields


def op_to_sexp(op: Op) -> SList:
    """The S-expression of one operation, fields in canonical order, defaults dropped."""
    args: list[Sexp]
    match op:
        case Comment(text=text):
            name, args = "comment", _atoms(text)
        case Workdir(path=path):
            name, args = "workdir", _atoms(path)
        case Shell(args=argv):
            name, args = "shell", _atoms(*argv)
        case Run():
            name, args = "run", _run_to_sexp(op)
        case Copy():
            name, args = "copy", _copy_to_sexp(op)
        case SetUser(user=NamedUser(name=user_name)):
            name, args = "user", [_field("name", user_name)]
        case SetUser(user=UnixUser(uid=uid, gid=gid)):
            name, args = "user", [_field("uid", str(uid)), _field("gid", str(gid))]
        case Env(name=key, value=value):
            name, args = "env", _atoms(key, value)
        case _:
            raise TypeError(f"not a spec operation: {op!r}")
    return SList((Atom(name), *args), op.pos)


def spec_to_sexp(spec: Spec) -> SList:
    """The S-expression of a spec: `(build ...)` stages, `(from IMAGE)`, then the operations.

    Lists keep the position of the form they were parsed from, where the printer looks up
    the comments written next to them.
    """
    items: list[Sexp] = [
        SList((Atom("build"), Atom(child.name), spec_to_sexp(child.spec)), child.pos)
        for child in spec.child_builds
    ]
    items.append(SList((Atom("from"), Atom(spec.from_)), spec.from_pos))
    items += [op_to_sexp(op) for op in spec.ops]
    return SList(tuple(items), spec.pos)


# --- layout --------------------------------------------------------------------------------


class _Out:
    """Text being laid out, with the current column, and the comments that end the line
    being written (they are written at the next line break, after any closing parens)."""

    def __init__(self, col: int = 0) -> None:
        self.parts: list[str] = []
        self.col = col
        self.pending: list[SourceComment] = []

    def write(self, s: str) -> None:
        self.parts.append(s)
        self.col += len(s)

    def trail(self, comments: Sequence[SourceComment]) -> None:
        self.pending += comments

    def end_line(self, indent: int) -> None:
        """Write the pending comments at the end of the line. A `;` comment runs to the end
        of its line, so whatever follows one goes on a line of its own at `indent`."""
        for i, c in enumerate(self.pending):
            ended = i > 0 and self.pending[i - 1].ends_line
            self.parts.append(("\n" + " " * indent if ended else " ") + c.text)
        self.pending = []

    def newline(self, indent: int) -> None:
        self.end_line(indent)
        self.parts.append("\n" + " " * indent)
        self.col = indent

    def text(self) -> str:
        self.end_line(0)
        return "".join(self.parts)


def _write_atom(out: _Out, value: str) -> None:
    pieces = _atom_pieces(value)
    quote_col = out.col
    out.write(pieces[0])
    for piece in pieces[1:]:
        out.newline(quote_col)
        out.write(piece)


def _write_one_line(out: _Out, form: Sexp) -> None:
    if isinstance(form, Atom):
        _write_atom(out, form.value)
        return
    out.write("(")
    for i, item in enumerate(form.items):
        if i:
            out.write(" ")
        _write_one_line(out, item)
    out.write(")")


def one_line(form: Sexp) -> str:
    """`form` on a single line, atoms quoted and escaped as needed (no line breaks at all)."""
    if isinstance(form, Atom):
        return format_atom(form.value)
    return "(" + " ".join(one_line(item) for item in form.items) + ")"


def _fits(out: _Out, fields: tuple[Sexp, ...]) -> bool:
    """Whether `fields` fit on the current line, closing paren included, within MARGIN."""
    rendered = [one_line(f) for f in fields]
    width = sum(map(len, rendered)) + len(rendered) - 1
    return out.col + width + 1 <= MARGIN and not any(map(_has_multiline_atom, fields))


def _has_multiline_atom(form: Sexp) -> bool:
    stack = [form]
    while stack:
        f = stack.pop()
        if isinstance(f, SList):
            stack.extend(f.items)
        elif len(_atom_pieces(f.value)) > 1:
            return True
    return False


class _Printer:
    """Lays out spec forms, with the source's comments where `Comments` places them."""

    def __init__(self, out: _Out, comments: Comments) -> None:
        self.out = out
        self.comments = comments

    def own_lines(self, comments: Sequence[SourceComment], col: int, first: bool) -> None:
        """Each comment on its own line at `col`, then a line break to `col` for what follows.
        Comments above the `first` item of a list start on the line after its `(`."""
        if first and comments:
            self.out.newline(col)
        for c in comments:
            self.out.write(c.text)
            self.out.newline(col)

    def close(self, closing: Sequence[SourceComment], inner_col: int, open_col: int) -> None:
        """The `)` of a list, after its closing comments (each on a line at `inner_col`):
        after a comment the `)` needs a line of its own, at the column of the `(`."""
        for c in closing:
            self.out.newline(inner_col)
            self.out.write(c.text)
        if closing:
            self.out.newline(open_col)
        self.out.write(")")

    def items(self, spec: SList, *, top: bool = False) -> None:
        """A spec list: one item per line; the top-level spec closes on a line of its own."""
        out = self.out
        open_col = out.col
        out.write("(")
        col = out.col
        for i, item in enumerate(spec.items):
            if i:
                out.newline(col)
            self.item(item, col, first=i == 0)
        closing = self.comments.at(self.comments.closing, key_of(spec.pos))
        if top and not closing:
            out.newline(open_col)
        self.close(closing, col, open_col)

    def item(self, form: Sexp, col: int, first: bool = False) -> None:
        """One spec item: a child build, an op with its special layout, or a one-line form."""
        out = self.out
        k = key_of(form.pos)
        name = head(form)
        before = self.comments.at(self.comments.before, k)
        if not isinstance(form, SList) or name not in ("build", "run", "copy"):
            self.own_lines(before, col, first)
            _write_one_line(out, form)
        elif name == "build":
            self.own_lines(before, col, first)
            out.write("(build ")
            name_col = out.col
            _write_one_line(out, form.items[1])
            out.trail(self.comments.at(self.comments.after, _with_field(k, BUILD_NAME)))
            out.newline(name_col)
            self.own_lines(
                self.comments.at(self.comments.before, _with_field(k, BUILD_SPEC)), name_col, False
            )
            child = form.items[2]
            assert isinstance(child, SList)  # spec_to_sexp builds (build NAME (SPEC...))
            self.items(child)
            out.write(")")
        else:
            fields = form.items[1:]
            vertical = name == "run" or not _fits_after(out, f"({name} ", fields)
            if not vertical:  # no line for a field's comments: they go above the operation
                before = sorted([*before, *self.comments.at(self.comments.inside, k)], key=_start)
            self.own_lines(before, col, first)
            self.record(name, fields, vertical, k)
        out.trail(self.comments.at(self.comments.after, k))

    def record(self, name: str, fields: tuple[Sexp, ...], vertical: bool, k: Key | None) -> None:
        """`(run ...)` or `(copy ...)`: fields on one line, or one per line with comments."""
        out = self.out
        open_col = out.col
        out.write(f"({name}")
        col = out.col + 1
        for i, f in enumerate(fields):
            fk = _with_field(k, head(f) or "") if vertical else None
            before = self.comments.at(self.comments.before, fk)
            if (i and vertical) or before:
                out.newline(col)  # comments above the first field start on the next line
            else:
                out.write(" ")
            self.own_lines(before, col, False)
            _write_one_line(out, f)
            out.trail(self.comments.at(self.comments.after, fk))
        self.close(self.comments.at(self.comments.closing, k) if vertical else [], col, open_col)


def _with_field(k: Key | None, field_name: str) -> Key | None:
    return None if k is None else (k[0], k[1], field_name)


def _start(c: SourceComment) -> int:
    return c.start


def _fits_after(out: _Out, prefix: str, fields: tuple[Sexp, ...]) -> bool:
    """Whether `fields` fit on one line after `prefix` written at the current column."""
    probe = _Out(out.col + len(prefix))
    return _fits(probe, fields)


def _header(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def print_spec(spec: Spec, comments: Comments | None = None) -> str:
    """The canonical text of `spec` (OBuilder's `Spec.pp` layout), ending with a newline.

    With the `comments` of the text `spec` was parsed from, they are printed too, each next
    to the form it was written next to (see `comments.py`).
    """
    comments = comments or Comments()
    out = _Out()
    _Printer(out, comments).items(spec_to_sexp(spec), top=True)
    out.trail(comments.trailer)
    return _header(comments.header) + out.text() + "\n" + _header(comments.footer)


def print_op(op: Op, col: int = 0) -> str:
    """One operation in the canonical layout, as if printed starting at column `col`."""
    out = _Out(col)
    _Printer(out, Comments()).item(op_to_sexp(op), col)
    return out.text()


def heading(workdir: str, op: Op) -> str:
    """The build-log heading of a step: `WORKDIR: OP`, continuation lines aligned under OP."""
    prefix = f"{workdir}: "
    return prefix + print_op(op, len(prefix))
