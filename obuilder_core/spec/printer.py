"""Canonical printing of specs, in the layout of OBuilder's `Spec.pp`.

Layout (OCaml Format boxes emulated directly):
- the spec is a vertical box: one item per line after `(`, the closing `)` alone on the last line;
- `(build NAME SPEC)` puts the child spec on the line after NAME, aligned with NAME;
- `(run ...)` puts each field on its own line, aligned after `(run `;
- `(copy ...)` stays on one line if it ends within MARGIN columns, else one field per line;
- every other form is printed on one line; atoms are quoted sexplib-style when needed, and a
  string with inner newlines is split into `\\`-continued lines aligned on its opening quote.
"""

from __future__ import annotations

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
    return SList((Atom(name), *args))


def spec_to_sexp(spec: Spec) -> SList:
    """The S-expression of a spec: `(build ...)` stages, `(from IMAGE)`, then the operations."""
    items: list[Sexp] = [
        SList((Atom("build"), Atom(child.name), spec_to_sexp(child.spec)))
        for child in spec.child_builds
    ]
    items.append(_field("from", spec.from_))
    items += [op_to_sexp(op) for op in spec.ops]
    return SList(tuple(items))


# --- layout --------------------------------------------------------------------------------


class _Out:
    """Text being laid out, with the current column."""

    def __init__(self, col: int = 0) -> None:
        self.parts: list[str] = []
        self.col = col

    def write(self, s: str) -> None:
        self.parts.append(s)
        self.col += len(s)

    def newline(self, indent: int) -> None:
        self.parts.append("\n" + " " * indent)
        self.col = indent

    def text(self) -> str:
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


def _write_item(out: _Out, form: Sexp) -> None:
    """One spec item: a child build, an op with its special layout, or a one-line form."""
    name = head(form)
    if not isinstance(form, SList) or name not in ("build", "run", "copy"):
        _write_one_line(out, form)
    elif name == "build":
        out.write("(build ")
        col = out.col
        _write_one_line(out, form.items[1])
        out.newline(col)
        child = form.items[2]
        assert isinstance(child, SList)  # spec_to_sexp builds (build NAME (SPEC...))
        _write_items(out, child)
        out.write(")")
    else:
        out.write(f"({name} ")
        col = out.col
        fields = form.items[1:]
        vertical = name == "run" or not _fits(out, fields)
        for i, f in enumerate(fields):
            if i:
                if vertical:
                    out.newline(col)
                else:
                    out.write(" ")
            _write_one_line(out, f)
        out.write(")")


def _write_items(out: _Out, spec: SList) -> None:
    out.write("(")
    col = out.col
    for i, item in enumerate(spec.items):
        if i:
            out.newline(col)
        _write_item(out, item)
    out.write(")")


def print_spec(spec: Spec) -> str:
    """The canonical text of `spec` (OBuilder's `Spec.pp` layout), ending with a newline."""
    out = _Out()
    _write_items(out, spec_to_sexp(spec))
    # Spec.pp's closing paren sits alone on the last line; nested specs close inline.
    parts = out.text()
    return parts[:-1] + "\n)\n"


def print_op(op: Op, col: int = 0) -> str:
    """One operation in the canonical layout, as if printed starting at column `col`."""
    out = _Out(col)
    _write_item(out, op_to_sexp(op))
    return out.text()


def heading(workdir: str, op: Op) -> str:
    """The build-log heading of a step: `WORKDIR: OP`, continuation lines aligned under OP."""
    prefix = f"{workdir}: "
    return prefix + print_op(op, len(prefix))
