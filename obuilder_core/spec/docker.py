"""Spec -> Dockerfile conversion (`obuilder dockerfile`), safe against hostile spec strings.

The layout is OBuilder's `Docker.dockerfile_of_spec` (reference §1.7): child builds first as
named stages, each followed by an empty line, then `FROM`, one instruction per operation.

Unlike the reference (§7 item 9), no spec string can add an instruction or a flag: every value
is checked against what the Dockerfile parser (moby/buildkit `frontend/dockerfile/parser`) would
make of it. Plain values are written as the reference writes them; others are quoted (double
quotes for WORKDIR/USER/ENV, JSON arrays for COPY and SHELL, one `#` per comment line); a value
that no Dockerfile syntax can carry raises `DockerfileError` naming the value and the operation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from obuilder_core.errors import ObuilderError
from obuilder_core.spec.model import (
    ROOT,
    Cache,
    Comment,
    Copy,
    Env,
    FromBuild,
    NamedUser,
    Op,
    Pos,
    Run,
    Secret,
    SetUser,
    Shell,
    Spec,
    UnixUser,
    User,
    Workdir,
)

Escape = Literal["unix", "windows"]

WINDOWS_ROOT = NamedUser("ContainerAdministrator")

# Characters some reader of the text (Python's splitlines, editors, Go's bufio) may take as the
# end of a line. A raw one inside an instruction would end it early.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
# Docker stage names: `^[a-z][a-z0-9-_.]*$` after lower-casing.
_STAGE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z")
# Docker image references; anything else in FROM could carry a flag, an `AS` or an expansion.
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*\Z")
# Keys a buildkit option may not set: they would turn the mount into another kind of mount.
_FIXED_MOUNT_KEYS = frozenset({"type", "id", "target", "dst", "destination"})
_OPTION_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z")
# Inside a `--mount=` or `--chown=` flag: the flag parser splits on bytes it takes for blanks
# (so ASCII only), strips quotes and backslashes, the mount parser splits at commas, and the
# value is expanded (`$`).
_FLAG_VALUE = re.compile(r"[A-Za-z0-9_./:@+%~^=!?*&;|<>()\[\]{}#-]+\Z")


class DockerfileError(ObuilderError):
    """A spec value that no Dockerfile syntax can carry; `str(e)` is one line naming it."""

    def __init__(self, message: str, pos: Pos | None = None) -> None:
        super().__init__(message, pos)
        self.message = message
        self.pos = pos

    def __str__(self) -> str:
        where = f"{self.pos}: " if self.pos is not None else ""
        return f"{where}{self.message}"


def json_string(value: str) -> str:
    """A JSON string literal for `value` that is printable on one line and reads back exactly.

    Unlike `json.dumps(ensure_ascii=False)`, characters that some reader could take as a line
    break or that do not print (U+0085, U+2028, ...) are written as `\\uXXXX` escapes.
    """
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable() and ch not in _LINE_BREAKS:
            out.append(ch)
        else:
            out.append(json.dumps(ch))  # ensure_ascii: `\n`, `\u0085`, surrogate pairs ...
            out[-1] = out[-1][1:-1]
    out.append('"')
    return "".join(out)


def _q(value: str) -> str:
    """`value` quoted for an error message: one line, every control character escaped."""
    return json_string(value)


@dataclass
class _Converter:
    """One conversion: the output lines and the stage names emitted so far."""

    buildkit: bool
    windows: bool
    lines: list[str] = field(default_factory=list)
    stages: set[str] = field(default_factory=set)

    @property
    def esc(self) -> str:
        return "`" if self.windows else "\\"

    def fail(self, pos: Pos | None, message: str) -> DockerfileError:
        return DockerfileError(f"cannot convert to a Dockerfile: {message}", pos)

    # --- values ------------------------------------------------------------------------

    def no_line_breaks(self, value: str, what: str, pos: Pos | None) -> None:
        if any(ch in _LINE_BREAKS for ch in value):
            raise self.fail(pos, f"{what} {_q(value)} contains a line break")

    def plain(self, value: str) -> bool:
        """Whether the Dockerfile lexer reads `value` back unchanged when written bare."""
        return (
            value != ""
            and not value.startswith("--")
            and all(ch.isprintable() and not ch.isspace() for ch in value)
            and not any(ch in "\"'$" or ch == self.esc for ch in value)
        )

    def lex_escaped(self, value: str) -> str:
        """`value` with the lexer's special characters (quotes, `$`, escape) escaped."""
        return "".join(self.esc + ch if ch in "\"'$" or ch == self.esc else ch for ch in value)

    def word(self, value: str, what: str, pos: Pos | None) -> str:
        """`value` as one expanded Dockerfile word: bare if plain, else double-quoted."""
        if value == "":
            raise self.fail(pos, f"{what} is empty")
        if self.plain(value):
            return value
        self.no_line_breaks(value, what, pos)
        return '"' + self.quoted_body(value) + '"'

    def quoted_body(self, value: str) -> str:
        # Inside double quotes the lexer honours the escape only before `"`, `$` and itself.
        return "".join(self.esc + ch if ch in '"$' or ch == self.esc else ch for ch in value)

    def flag_value(self, value: str, what: str, pos: Pos | None) -> str:
        if not _FLAG_VALUE.match(value) or self.esc in value:
            raise self.flag_error(value, what, pos)
        return value

    def flag_error(self, value: str, what: str, pos: Pos | None) -> DockerfileError:
        return self.fail(
            pos,
            f"{what} {_q(value)} cannot be written in a Dockerfile flag "
            "(use letters, digits and /._:@+-)",
        )

    def mount_value(self, value: str, what: str, pos: Pos | None) -> str:
        """`value` written inside `--mount=`, backslashes included (`c:\\opam\\cache`).

        A backslash goes through two readers: BuildKit's flag parser takes it as an escape
        whatever the escape directive says, and then the mount's values are expanded with
        the Dockerfile's escape character. So each one is written twice with the Windows
        escape (a backtick) and four times with the Unix one (where it is the escape).
        """
        others = value.replace("\\", "_")  # every other character as in any flag
        if not _FLAG_VALUE.match(others) or self.esc in others:
            raise self.flag_error(value, what, pos)
        return value.replace("\\", "\\" * (2 if self.windows else 4))

    # --- stages ------------------------------------------------------------------------

    def stage(self, spec: Spec, name: str | None, pos: Pos | None) -> None:
        for child in spec.child_builds:
            self.stage(child.spec, child.name, child.pos)
            self.lines.append("")
        image = spec.from_
        if not _IMAGE.match(image):
            raise self.fail(spec.from_pos, f"base image {_q(image)} is not an image reference")
        if image.lower() in self.stages:
            raise self.fail(
                spec.from_pos,
                f"base image {_q(image)} has the name of a build stage, "
                "which Docker would use instead of the image",
            )
        line = f"FROM {image}"
        if name is not None:
            if not _STAGE_NAME.match(name):
                raise self.fail(pos, f"build name {_q(name)} is not a valid Docker stage name")
            if name.lower() in self.stages:
                raise self.fail(pos, f"build name {_q(name)} is used by two stages")
            self.stages.add(name.lower())
            line += f" as {name}"
        self.lines.append(line)
        user: User = WINDOWS_ROOT if self.windows else ROOT
        for op in spec.ops:
            user = self.op(op, user)

    def op(self, op: Op, user: User) -> User:
        """Emit `op`; return the user in effect after it."""
        match op:
            case Comment(text=text):
                self.lines += [f"# {line}" for line in text.splitlines() or [""]]
            case Workdir(path=path):
                self.lines.append(f"WORKDIR {self.word(path, 'workdir path', op.pos)}")
            case Shell(args=args):
                if not args:
                    raise self.fail(op.pos, "(shell) with no arguments has no SHELL equivalent")
                self.lines.append(f"SHELL [ {', '.join(json_string(a) for a in args)} ]")
            case Run():
                self.run(op, user)
            case Copy():
                self.copy(op, user)
            case SetUser(user=UnixUser(uid=uid, gid=gid) as new):
                self.lines.append(f"USER {uid}:{gid}")
                return new
            case SetUser(user=NamedUser(name=name) as new):
                if ":" in name:
                    raise self.fail(op.pos, f"user name {_q(name)} contains ':' (user:group)")
                self.lines.append(f"USER {self.word(name, 'user name', op.pos)}")
                return new
            case Env(name=key, value=value):
                self.env(op, key, value)
            case _:
                raise TypeError(f"not a spec operation: {op!r}")
        return user

    # --- instructions ------------------------------------------------------------------

    def env(self, op: Env, key: str, value: str) -> None:
        if not self.plain(key) or "=" in key:
            raise self.fail(op.pos, f"env name {_q(key)} is not a valid Dockerfile ENV name")
        self.no_line_breaks(value, f"env {key} value", op.pos)
        self.lines.append(f'ENV {key}="{self.quoted_body(value)}"')

    def mount(self, kind: str, m: Cache | Secret, user: User, pos: Pos | None) -> str:
        if not isinstance(user, UnixUser):
            raise self.fail(
                m.pos or pos,
                f"{kind} mount {_q(m.id)} needs a numeric user, but the user is "
                f"{_q(user.name)}: add (user (uid U) (gid G)) or convert without --buildkit",
            )
        opts = [("type", kind), ("id", m.id), ("target", m.target), ("uid", str(user.uid))]
        for key, value in m.buildkit_options:
            if not _OPTION_KEY.match(key) or key.lower() in _FIXED_MOUNT_KEYS:
                raise self.fail(m.pos or pos, f"buildkit option {_q(key)} is not allowed")
            opts.append((key, value))
        written = [(k, self.mount_value(v, f"{kind} mount {k}", m.pos or pos)) for k, v in opts]
        return "--mount=" + ",".join(f"{k}={v}" for k, v in written) + " "

    def run(self, op: Run, user: User) -> None:
        mounts = ""
        if self.buildkit:
            mounts += "".join(self.mount("secret", s, user, op.pos) for s in op.secrets)
            mounts += "".join(self.mount("cache", c, user, op.pos) for c in op.cache)
        lines = self.command_lines(op)
        sep = f" {self.esc}\n    "
        if op.uncached:
            # Docker has no per-step opt-out of its cache; say so where the step is.
            self.lines.append("# (uncached): obuilder re-runs this step on every build")
        self.lines.append(f"RUN {mounts}{sep.join(lines)}")

    def command_lines(self, op: Run) -> list[str]:
        """The command's lines as the reference writes them, minus the ones that break parsing.

        Continuation lines that are blank or start with `#` are dropped: the Dockerfile parser
        skips them, and as the last line they would make it swallow the next instruction.
        """
        lines = [line.strip(" \t\n\r\f") for line in op.shell.split("\n")]
        lines = lines[:1] + [ln for ln in lines[1:] if ln.strip() and ln.lstrip()[:1] != "#"]
        for line in lines:
            self.no_line_breaks(line, "run command", op.pos)
        seen = "     ".join(lines).strip()  # what the parser sees once the lines are joined
        if not seen:
            raise self.fail(op.pos, "run command is empty")
        if seen.startswith("--"):
            raise self.fail(op.pos, f"run command {_q(seen)} would be read as a RUN flag")
        if seen.startswith("[") and _is_json(seen):
            raise self.fail(op.pos, f"run command {_q(seen)} would be read as a JSON argv")
        if lines[-1].endswith(self.esc):
            raise self.fail(
                op.pos,
                f"run command {_q(lines[-1])} ends with {self.esc!r}, "
                "which a Dockerfile reads as a line continuation",
            )
        return lines

    def copy(self, op: Copy, user: User) -> None:
        if not op.src:
            raise self.fail(op.pos, "copy has no source paths")
        for src in op.src:
            if any(ch in "*?[" for ch in src):
                raise self.fail(
                    op.pos, f"copy source {_q(src)} contains a wildcard that Docker would expand"
                )
        flags = ""
        chown = _chown(user, self.windows)
        if chown is not None:
            flags += f"--chown={self.flag_value(chown, 'copy owner', op.pos)} "
        if isinstance(op.from_, FromBuild):
            name = op.from_.name
            if name.lower() not in self.stages:
                raise self.fail(op.pos, f"copy from unknown build {_q(name)}")
            flags += f"--from={name} "
        words = [*op.src, op.dst]
        if all(self.plain(w) for w in words) and not words[0].startswith("["):
            self.lines.append(f"COPY {flags}{' '.join(words)}")
            return
        # JSON form: no word splitting, no flag or comment parsing; words are still expanded.
        items = ", ".join(json_string(self.lex_escaped(w)) for w in words)
        self.lines.append(f"COPY {flags}[{items}]")


def _chown(user: User, windows: bool) -> str | None:
    """The owner of copied files: none for root, else `U:G`, or the name on Unix.

    The reference writes no `--chown` for a named user: its copy step leaves such files
    owned by root. Ours makes them the user's (the tar entries carry the name), and the
    Dockerfile says the same; Windows containers take no `--chown`.
    """
    if user in (ROOT, WINDOWS_ROOT):
        return None
    if isinstance(user, UnixUser):
        return f"{user.uid}:{user.gid}"
    return None if windows else user.name


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def dockerfile(spec: Spec, *, buildkit: bool = False, escape: Escape = "unix") -> str:
    """The Dockerfile equivalent of `spec`, one instruction per emitting operation.

    `buildkit` adds `RUN --mount=` flags for secrets and caches (otherwise they are dropped);
    `escape="windows"` adds the `#escape=`` directive and uses the backtick as escape character
    (and ContainerAdministrator as each stage's initial user). Raises `DockerfileError` for a
    value that cannot be written safely: no spec string can add an instruction or a flag.
    """
    if escape not in ("unix", "windows"):
        raise ObuilderError(f"unknown Dockerfile escape style {escape!r} (use unix or windows)")
    conv = _Converter(buildkit=buildkit, windows=escape == "windows")
    if conv.windows:
        conv.lines.append("#escape=`")
    conv.stage(spec, None, spec.pos)
    return "".join(line + "\n" for line in conv.lines)
