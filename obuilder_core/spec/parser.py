"""Parsing specs: S-expression -> model, with located errors, and build-scope validation.

The grammar is OBuilder's (reference §1.2) with two relaxations: `(user (gid G) (uid U))` is
accepted in either order, and `(build NAME)` stage names are checked for duplicates. Every
error is a SpecError at the offending form; `check_spec` keeps going past bad operations and
fields so that one run reports everything wrong in a file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from obuilder_core.spec.errors import SpecError, clip, did_you_mean, quoted_list
from obuilder_core.spec.model import (
    BuildkitOptions,
    Cache,
    ChildBuild,
    Comment,
    Copy,
    CopySource,
    Env,
    FromBuild,
    FromContext,
    NamedUser,
    Op,
    Pos,
    Run,
    Secret,
    SetUser,
    Shell,
    Spec,
    UnixUser,
    Workdir,
)
from obuilder_core.spec.printer import one_line, op_to_sexp
from obuilder_core.spec.reader import (
    Atom,
    Sexp,
    SList,
    escape,
    format_atom,
    head,
    many_objects,
    ocaml_string,
    read_sexp,
)

OPS = ("comment", "workdir", "shell", "run", "copy", "user", "env")
RUN_FIELDS = ("cache", "network", "secrets", "uncached", "shell")
COPY_FIELDS = ("from", "src", "dst", "exclude")
MOUNT_FIELDS = ("target", "buildkit_options")
USER_FIELDS = ("uid", "gid", "name")
MAX_ID = 2**32 - 1
SHOW_LIMIT = 60
_UINT = re.compile(r"[0-9]{1,10}")

T = TypeVar("T")
M = TypeVar("M", Cache, Secret)


class _Recorded(Exception):
    """Errors for this form were already recorded; give up on the form itself."""


def show(form: Sexp) -> str:
    """`form` on one line for a message, shortened to `(run ...)` when long."""
    text = one_line(form)
    if len(text) <= SHOW_LIMIT:
        return text
    name = head(form)
    if name is not None and len(name) < SHOW_LIMIT:
        return f"({format_atom(name)} ...)"
    return text[: SHOW_LIMIT - 3] + "..."


def _fail(form: Sexp, message: str, hint: str | None = None) -> NoReturn:
    raise SpecError(message, form.pos, hint)


def _quote_name(name: str) -> str:
    return clip(f'"{escape(name)}"')


def quote(value: str) -> str:
    """`value` as the spec would write it, clipped for a message."""
    return clip(format_atom(value))


def _where(pos: Pos | None) -> str:
    return f"line {pos.line}, column {pos.col}" if pos else "earlier"


def unknown_build_error(name: str, scope: Sequence[str], op: Sexp, pos: Pos | None) -> SpecError:
    """The error for `(copy (from (build NAME)) ...)` naming a build that is not in scope."""
    message = f"unknown build {_quote_name(name)} in {show(op)}"
    names = sorted(set(scope))
    if not names:
        return SpecError(message, pos, "no (build NAME SPEC) stage is in scope here")
    close = [n for n in names if did_you_mean(name, [n])]
    shown = [_quote_name(n) for n in (close or names)]
    if len(shown) == 1:
        return SpecError(message, pos, f"did you mean {shown[0]}?")
    return SpecError(message, pos, f"did you mean one of {quoted_list(shown)}?")


def _pair(form: Sexp) -> tuple[str, str]:
    assert isinstance(form, SList)
    key, value = form.items
    assert isinstance(key, Atom) and isinstance(value, Atom)
    return key.value, value.value


class _Parser:
    """Converts forms to model objects, collecting errors as it goes."""

    def __init__(self) -> None:
        self.errors: list[SpecError] = []
        self.handlers: dict[str, Callable[[SList], Op]] = {
            "comment": self.comment,
            "workdir": self.workdir,
            "shell": self.shell,
            "run": self.run,
            "user": self.user,
            "env": self.env,
        }

    def attempt(self, fn: Callable[..., T], *args: object) -> T | None:
        """`fn(*args)`, or None after recording why it failed."""
        try:
            return fn(*args)
        except SpecError as e:
            self.errors.append(e)
        except _Recorded:
            pass
        return None

    # --- specs and stages ------------------------------------------------------------------

    def spec(self, form: Sexp, scope: tuple[str, ...]) -> Spec:
        if isinstance(form, Atom):
            _fail(form, f"expected a spec ((from IMAGE) OP...), found the atom {show(form)}")
        before = len(self.errors)
        children: list[ChildBuild] = []
        names: dict[str, Pos | None] = {}
        from_form: SList | None = None
        image: str | None = None
        ops: list[Op] = []
        visible = scope
        stray = False  # an operation before (from): its error already says (from) is missing
        for item in form.items:
            name = head(item)
            if from_form is None and name == "build":
                child = self.attempt(self.child, item, scope + tuple(names))
                self.attempt(self.add_name, item, names)
                if child is not None:
                    children.append(child)
            elif from_form is None and name == "from":
                assert isinstance(item, SList)
                from_form = item
                image = self.attempt(self.from_image, item)
                visible = scope + tuple(names)  # the stages an operation's copy may name
            elif from_form is None:
                stray = True
                has_from = any(head(x) == "from" for x in form.items)  # only for the hint
                self.attempt(self.before_from, item, has_from)
            else:
                op = self.attempt(self.op, item, visible)
                if op is not None:
                    ops.append(op)
        if from_form is None and not stray:
            _fail(form, "this spec has no (from IMAGE)", "e.g. ((from busybox) (run (shell ...)))")
        if len(self.errors) > before or image is None or from_form is None:
            raise _Recorded
        return Spec(image, tuple(ops), tuple(children), pos=form.pos, from_pos=from_form.pos)

    def child(self, form: SList, scope: tuple[str, ...]) -> ChildBuild:
        items = form.items
        if len(items) != 3 or not isinstance(items[1], Atom):
            hint = "e.g. (build tools ((from busybox) (run (shell ...))))"
            if len(items) == 2 and isinstance(items[1], SList):
                hint = "the stage needs a name: (build NAME ((from IMAGE) ...))"
            _fail(form, f"expected (build NAME SPEC), found {show(form)}", hint)
        spec = self.spec(items[2], scope)
        return ChildBuild(items[1].value, spec, pos=form.pos)

    def add_name(self, form: SList, names: dict[str, Pos | None]) -> None:
        if len(form.items) < 2 or not isinstance(form.items[1], Atom):
            return  # already reported by child()
        name = form.items[1].value
        if name in names:
            _fail(
                form,
                f"build {_quote_name(name)} is defined twice in this spec",
                f"the first one is at {_where(names[name])}; give each stage its own name",
            )
        names[name] = form.pos

    def from_image(self, form: SList) -> str:
        args = form.items[1:]
        if len(args) != 1 or not isinstance(args[0], Atom):
            _fail(
                form,
                f"expected (from IMAGE) naming one image, found {show(form)}",
                'e.g. (from busybox) or (from "debian:12")',
            )
        return args[0].value

    def before_from(self, form: Sexp, has_from: bool) -> NoReturn:
        name = head(form)
        if name in OPS:
            hint = "a spec lists its (build ...) stages, then (from IMAGE), then its operations"
            if not has_from:
                hint = "this spec has no (from IMAGE): add one before its operations"
            _fail(form, f"{show(form)} comes before (from IMAGE)", hint)
        found = f"the atom {show(form)}" if isinstance(form, Atom) else show(form)
        suggestion = did_you_mean(name, ("build", "from")) if name else None
        _fail(form, f"expected (build NAME SPEC) or (from IMAGE), found {found}", suggestion)

    # --- operations --------------------------------------------------------------------------

    def op(self, form: Sexp, scope: tuple[str, ...]) -> Op:
        if isinstance(form, Atom):
            if form.value in OPS:
                _fail(
                    form,
                    f"operation {form.value} must be in parentheses",
                    f"write ({form.value} ...)",
                )
            _fail(form, f"expected an operation (NAME ...), found the atom {show(form)}")
        name = head(form)
        if name is None:
            _fail(
                form,
                f"expected an operation (NAME ...), found {show(form)}",
                f"operations are {quoted_list(OPS)}",
            )
        if name == "build":
            _fail(
                form,
                f"{show(form)} comes after (from IMAGE)",
                "(build ...) stages go before the spec's (from IMAGE)",
            )
        if name == "from":
            _fail(
                form,
                f"second (from ...) in one spec: {show(form)}",
                "a spec has one (from IMAGE); put other stages in (build NAME SPEC) before it",
            )
        assert isinstance(form, SList)
        if name == "copy":
            return self.copy(form, scope)
        handler = self.handlers.get(name)
        if handler is not None:
            return handler(form)
        if name.lower() in OPS:
            hint = f"did you mean {name.lower()}? operation names are lower case"
        else:
            hint = did_you_mean(name, OPS) or f"operations are {quoted_list(OPS)}"
        _fail(form, f"unknown operation {quote(name)} in {show(form)}", hint)

    def one_atom(self, form: SList, what: str, example: str) -> str:
        """The single atom argument of `(NAME X)`."""
        args = form.items[1:]
        if len(args) == 1 and isinstance(args[0], Atom):
            return args[0].value
        name = quote(head(form) or "")
        hint = f"e.g. {example}"
        if len(args) > 1 and all(isinstance(a, Atom) for a in args):
            joined = " ".join(a.value for a in args if isinstance(a, Atom))
            hint = f"quote it: ({name} {quote(joined)})"
        _fail(form, f"{show(form)}: expected exactly one {what}", hint)

    def atoms(self, form: SList) -> tuple[str, ...]:
        """The arguments of `(NAME X...)`, all of which must be atoms."""
        fast = form.values(1)
        if fast is not None:
            return tuple(fast)
        values = []
        for arg in form.items[1:]:
            if not isinstance(arg, Atom):
                _fail(
                    arg,
                    f"expected an atom in {show(form)}, found {show(arg)}",
                    "quote values that contain spaces or parentheses",
                )
            values.append(arg.value)
        return tuple(values)

    def comment(self, form: SList) -> Comment:
        return Comment(self.one_atom(form, "TEXT", '(comment "some text")'), pos=form.pos)

    def workdir(self, form: SList) -> Workdir:
        return Workdir(self.one_atom(form, "PATH", "(workdir /src)"), pos=form.pos)

    def shell(self, form: SList) -> Shell:
        return Shell(self.atoms(form), pos=form.pos)

    def env(self, form: SList) -> Env:
        args = form.items[1:]
        if len(args) == 2 and isinstance(args[0], Atom) and isinstance(args[1], Atom):
            return Env(args[0].value, args[1].value, pos=form.pos)
        hint = "e.g. (env PATH /usr/local/bin:/usr/bin:/bin)"
        if len(args) > 2 and all(isinstance(a, Atom) for a in args):
            key, *rest = (a.value for a in args if isinstance(a, Atom))
            hint = f"quote the value: (env {quote(key)} {quote(' '.join(rest))})"
        _fail(form, f"{show(form)}: expected (env NAME VALUE)", hint)

    # --- record-like forms -------------------------------------------------------------------

    def fields(
        self, items: Sequence[Sexp], label: str, allowed: tuple[str, ...]
    ) -> dict[str, SList]:
        """Fields `(NAME ...)` by name, each at most once, any order.

        Bad fields are recorded as errors and left out; the caller, which compares the error
        count before and after, decides that the whole form failed.
        """
        seen: dict[str, SList] = {}
        shapes = quoted_list([f"({f} ...)" for f in allowed])
        for item in items:
            name = head(item)
            if name is None or not isinstance(item, SList):
                self.errors.append(
                    SpecError(
                        f"expected a field of {label}, found {show(item)}",
                        item.pos,
                        f"its fields are {shapes}",
                    )
                )
            elif name not in allowed:
                self.errors.append(
                    SpecError(
                        f"unknown field {quote(name)} in {label}",
                        item.pos,
                        did_you_mean(name, allowed) or f"its fields are {shapes}",
                    )
                )
            elif name in seen:
                self.errors.append(
                    SpecError(
                        f"duplicate field ({quote(name)} ...) in {label}",
                        item.pos,
                        f"it is already given at {_where(seen[name].pos)}",
                    )
                )
            else:
                seen[name] = item
        return seen

    def run(self, form: SList) -> Run:
        before = len(self.errors)
        fields = self.fields(form.items[1:], "(run ...)", RUN_FIELDS)
        cache = self.attempt(self.mounts, fields.get("cache"), "cache", Cache)
        network = self.attempt(self.atoms, fields["network"]) if "network" in fields else ()
        secrets = self.attempt(self.mounts, fields.get("secrets"), "secret", Secret)
        uncached = "uncached" in fields
        if uncached and len(fields["uncached"].items) > 1:
            self.errors.append(
                SpecError(
                    f"{show(fields['uncached'])}: (uncached) takes no arguments",
                    fields["uncached"].pos,
                    "write just (uncached)",
                )
            )
        shell = None
        if "shell" in fields:
            shell = self.attempt(self.command, fields["shell"])
        else:
            self.errors.append(
                SpecError(
                    f"{show(form)} is missing its (shell COMMAND) field",
                    form.pos,
                    'e.g. (run (shell "make install"))',
                )
            )
        if len(self.errors) > before or shell is None:
            raise _Recorded
        return Run(
            shell,
            tuple(cache or ()),
            tuple(network or ()),
            tuple(secrets or ()),
            uncached,
            pos=form.pos,
        )

    def command(self, form: SList) -> str:
        return self.one_atom(form, "command string", '(shell "make install")')

    def mounts(self, form: SList | None, kind: str, cls: type[M]) -> tuple[M, ...]:
        if form is None:
            return ()
        found = [self.attempt(self.mount, m, kind, cls) for m in form.items[1:]]
        mounts = tuple(m for m in found if m is not None)
        if len(mounts) != len(found):
            raise _Recorded
        return mounts

    def mount(self, form: Sexp, kind: str, cls: type[M]) -> M:
        if isinstance(form, Atom):
            _fail(
                form,
                f"expected a {kind} mount (ID (target PATH)), found the atom {show(form)}",
                f"write ({quote(form.value)} (target /path))",
            )
        if not form.items or not isinstance(form.items[0], Atom):
            _fail(
                form,
                f"a {kind} mount starts with its ID, found {show(form)}",
                "e.g. (my-id (target /path))",
            )
        ident = form.items[0].value
        label = f"{kind} {quote(ident)}"
        before = len(self.errors)
        fields = self.fields(form.items[1:], label, MOUNT_FIELDS)
        target = None
        if "target" in fields:
            target = self.attempt(self.one_atom, fields["target"], "PATH", "(target /path)")
        else:
            self.errors.append(
                SpecError(
                    f"{label} is missing its (target PATH) field",
                    form.pos,
                    f"e.g. ({quote(ident)} (target /path))",
                )
            )
        options = self.attempt(self.buildkit_options, fields.get("buildkit_options"))
        if len(self.errors) > before or target is None or options is None:
            raise _Recorded
        return cls(ident, target, options, pos=form.pos)

    def buildkit_options(self, form: SList | None) -> BuildkitOptions:
        if form is None:
            return ()
        args = form.items[1:]

        def is_pair(x: Sexp) -> bool:
            return (
                isinstance(x, SList)
                and len(x.items) == 2
                and all(isinstance(a, Atom) for a in x.items)
            )

        if len(args) == 1 and isinstance(args[0], SList) and all(map(is_pair, args[0].items)):
            return tuple(_pair(p) for p in args[0].items)
        hint = "e.g. (buildkit_options ((sharing locked)))"
        if args and all(map(is_pair, args)):
            pairs = " ".join(one_line(a) for a in args)
            hint = f"the pairs need their own parentheses: (buildkit_options ({pairs}))"
        _fail(form, f"expected (buildkit_options ((KEY VALUE)...)), found {show(form)}", hint)

    def copy(self, form: SList, scope: tuple[str, ...]) -> Copy:
        before = len(self.errors)
        fields = self.fields(form.items[1:], "(copy ...)", COPY_FIELDS)
        source = self.attempt(self.source, fields["from"]) if "from" in fields else FromContext()
        src = self.attempt(self.atoms, fields["src"]) if "src" in fields else None
        dst = None
        if "dst" in fields:
            dst = self.attempt(self.one_atom, fields["dst"], "destination PATH", "(dst /usr/bin/)")
        for name, example in (("src", "(src PATH...)"), ("dst", "(dst PATH)")):
            if name not in fields:
                self.errors.append(
                    SpecError(
                        f"{show(form)} is missing its {example} field",
                        form.pos,
                        "e.g. (copy (src main.c Makefile) (dst /src/))",
                    )
                )
        exclude = self.attempt(self.atoms, fields["exclude"]) if "exclude" in fields else ()
        for i, path in enumerate(src or ()):
            # The build would stop at this copy (the manifest refuses it): say so, and where.
            if ".." in path.split("/"):
                self.errors.append(
                    SpecError(
                        f"Can't use .. in source paths! (in {ocaml_string(path)})",
                        fields["src"].items[i + 1].pos,
                        "a copy reads only what is inside its source directory",
                    )
                )
        if isinstance(source, FromBuild) and source.name not in scope:
            self.errors.append(unknown_build_error(source.name, scope, form, form.pos))
        if len(self.errors) > before or source is None or src is None or dst is None:
            raise _Recorded
        return Copy(src, dst, source, tuple(exclude or ()), pos=form.pos)

    def source(self, form: SList) -> CopySource:
        args = form.items[1:]
        if len(args) == 1 and isinstance(args[0], Atom) and args[0].value == "context":
            return FromContext()
        if len(args) == 1 and head(args[0]) == "build":
            build = args[0]
            assert isinstance(build, SList)
            if len(build.items) == 2 and isinstance(build.items[1], Atom):
                return FromBuild(build.items[1].value)
        hint = None
        if len(args) == 1 and isinstance(args[0], Atom):
            hint = f"to copy from a stage, write (from (build {quote(args[0].value)}))"
        elif len(args) == 2 and isinstance(args[1], Atom) and Atom("build") == args[0]:
            hint = f"write (from (build {quote(args[1].value)}))"
        _fail(form, f"expected (from context) or (from (build NAME)), found {show(form)}", hint)

    def user(self, form: SList) -> SetUser:
        before = len(self.errors)
        fields = self.fields(form.items[1:], "(user ...)", USER_FIELDS)
        user: UnixUser | NamedUser | None = None
        if "name" in fields:
            if "uid" in fields or "gid" in fields:
                _fail(form, f"{show(form)}: give either (name NAME) or (uid U) (gid G), not both")
            name = self.one_atom(fields["name"], "user NAME", "(user (name builder))")
            user = NamedUser(name)
        else:
            missing = [f"({f} N)" for f in ("uid", "gid") if f not in fields]
            if missing:
                _fail(
                    form,
                    f"{show(form)} is missing {' and '.join(missing)}",
                    "e.g. (user (uid 1000) (gid 1000))",
                )
            uid = self.attempt(self.number, fields["uid"])
            gid = self.attempt(self.number, fields["gid"])
            if uid is not None and gid is not None:
                user = UnixUser(uid, gid)
        if len(self.errors) > before or user is None:
            raise _Recorded
        return SetUser(user, pos=form.pos)

    def number(self, form: SList) -> int:
        name = head(form) or ""
        value = self.one_atom(form, "number", f"({name} 1000)")
        if _UINT.fullmatch(value) and int(value) <= MAX_ID:
            return int(value)
        arg = form.items[1]
        _fail(arg, f"{name} must be a whole number from 0 to {MAX_ID}, found {quote(value)}")


# --- entry points --------------------------------------------------------------------------


def check_spec(text: str | bytes, filename: str = "<spec>") -> list[SpecError]:
    """Every error found in the spec `text` (empty when it is valid), in document order.

    A syntax error in the S-expression itself ends the search; past a well-formed but invalid
    operation or field, checking carries on.
    """
    try:
        form = read_sexp(text, filename)
    except SpecError as e:
        return [e]
    parser = _Parser()
    parser.attempt(parser.spec, form, ())
    return _in_document_order(parser.errors)


def _in_document_order(errors: list[SpecError]) -> list[SpecError]:
    return sorted(errors, key=lambda e: (e.pos.line, e.pos.col) if e.pos else (0, 0))


def parse_spec(text: str | bytes, filename: str = "<spec>") -> Spec:
    """The spec written in `text`; raises SpecError (only) for its first problem."""
    form = read_sexp(text, filename)
    parser = _Parser()
    with many_objects():
        spec = parser.attempt(parser.spec, form, ())
    if parser.errors:
        raise _in_document_order(parser.errors)[0]
    if spec is None:  # every failure path records an error; this guards the promise
        raise SpecError("invalid spec", form.pos)
    return spec


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read and parse the spec file at `path`; positions name the path as given."""
    filename = os.fsdecode(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SpecError(f"cannot read spec file {filename}: {e.strerror or e}") from None
    return parse_spec(data, filename)


def validate_spec(spec: Spec) -> list[SpecError]:
    """Scope errors of a spec built in code: each `(copy (from (build NAME)))` must name an
    earlier sibling stage or a stage in an enclosing spec's scope (never a grandchild)."""
    errors: list[SpecError] = []
    todo: list[tuple[Spec, tuple[str, ...]]] = [(spec, ())]
    while todo:
        current, scope = todo.pop()
        for child in current.child_builds:
            todo.append((child.spec, scope))
            scope += (child.name,)
        for op in current.ops:
            source = op.from_ if isinstance(op, Copy) else None
            if isinstance(source, FromBuild) and source.name not in scope:
                errors.append(unknown_build_error(source.name, scope, op_to_sexp(op), op.pos))
    return errors
