"""The spec language's data model: small, immutable records, one per construct.

Every record may carry the source position it was parsed from (`pos`). Positions never take
part in equality, so a spec parsed from its canonical printing compares equal to the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Pos(NamedTuple):
    """Where a form starts in a spec file (1-based line and column). A named tuple: a big
    spec has one per form, and a tuple is much cheaper to make than a frozen dataclass."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


# Every `pos` field is spelled out in full: a helper returning field() would hide from
# dataclass-aware linters that the default is a Field, not a shared call result.


# --- users ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnixUser:
    """`(user (uid U) (gid G))`."""

    uid: int
    gid: int


@dataclass(frozen=True)
class NamedUser:
    """`(user (name N))`: the Windows / FreeBSD form."""

    name: str


User = UnixUser | NamedUser

ROOT = UnixUser(0, 0)


# --- run fields ----------------------------------------------------------------------------

BuildkitOptions = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Cache:
    """`(ID (target PATH) [(buildkit_options ((K V)...))])` inside `(run (cache ...))`."""

    id: str
    target: str
    buildkit_options: BuildkitOptions = ()
    pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Secret:
    """`(ID (target PATH) [(buildkit_options ((K V)...))])` inside `(run (secrets ...))`."""

    id: str
    target: str
    buildkit_options: BuildkitOptions = ()
    pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)


# --- copy sources --------------------------------------------------------------------------


@dataclass(frozen=True)
class FromContext:
    """`(from context)`: copy from the build context directory (the default)."""


@dataclass(frozen=True)
class FromBuild:
    """`(from (build NAME))`: copy from the result of a child build."""

    name: str


CopySource = FromContext | FromBuild


# --- operations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Comment:
    """`(comment TEXT)`: no effect on the build."""

    text: str
    pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Workdir:
    """`(workdir PATH)`: relative paths are joined to the current workdir."""

    path: str
    pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Shell:
    """`(shell ARG...)`: the argv prefix later `run` commands are appended to."""

    args: tuple[str, ...]
    pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Run:
    """`(run (cache ...) (network ...) (secrets ...) (uncached) (shell CMD))`.

    `uncached` (an extension): the step is never taken from the cache; it runs on every build.
    """

    shell: str
    cache: tuple[Cache, ...] = ()
    network: tuple[str, ...] = ()
    secrets: tuple[Secret, ...] = ()
    uncached: bool = False
    pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Copy:
    """`(copy (from ...) (src PATH...) (dst PATH) (exclude NAME...))`."""

    src: tuple[str, ...]
    dst: str
    from_: CopySource = FromContext()
    exclude: tuple[str, ...] = ()
    pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class SetUser:
    """`(user (uid U) (gid G))` or `(user (name N))`."""

    user: User
    pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Env:
    """`(env NAME VALUE)`."""

    name: str
    value: str
    pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)


Op = Comment | Workdir | Shell | Run | Copy | SetUser | Env


# --- whole specs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildBuild:
    """`(build NAME SPEC)`: a stage whose result later copies can read."""

    name: str
    spec: Spec
    pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Spec:
    """A whole build: child stages, then the base image, then the operations."""

    from_: str
    ops: tuple[Op, ...] = ()
    child_builds: tuple[ChildBuild, ...] = ()
    pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)
    from_pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)
