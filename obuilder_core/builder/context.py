"""The build context (reference §2.2): what `workdir`, `user`, `shell` and `env` ops change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from obuilder_core.paths import normalize_path
from obuilder_core.sandbox.rules import POSIX_SHELL
from obuilder_core.spec.model import ROOT, Comment, Env, Op, SetUser, Shell, User, Workdir


@dataclass(frozen=True)
class Context:
    """The state a step runs in. Immutable: each op gives a new context.

    `scope` maps the names of finished child builds to their result ids; `secrets` are the
    values a `run` may request by id; `shell` starts as the sandbox's `default_shell`.
    """

    src_dir: Path
    env: tuple[tuple[str, str], ...] = ()
    user: User = ROOT
    workdir: str = "/"
    shell: tuple[str, ...] = POSIX_SHELL
    scope: tuple[tuple[str, str], ...] = ()
    secrets: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def apply(self, op: Op) -> Context:
        """The context after a context-only op (`comment`, `workdir`, `user`, `shell`, `env`).

        `(workdir P)` joins a relative P to the current workdir (normalised lexically, so
        equivalent spellings give the same step ids); `(env K V)` puts the new binding first
        and drops the first old binding of K, as OBuilder's `List.remove_assoc`.
        """
        match op:
            case Comment():
                return self
            case Workdir(path=path):
                joined = path if path.startswith("/") else f"{self.workdir.rstrip('/')}/{path}"
                return replace(self, workdir=normalize_path(joined))
            case SetUser(user=user):
                return replace(self, user=user)
            case Shell(args=args):
                return replace(self, shell=tuple(args))
            case Env(name=name, value=value):
                rest = list(self.env)
                for i, (k, _) in enumerate(rest):
                    if k == name:
                        del rest[i]
                        break
                return replace(self, env=((name, value), *rest))
        raise TypeError(f"not a context op: {op!r}")

    def with_build(self, name: str, id: str) -> Context:
        """This context with child build `name` resolved to `id`."""
        return replace(self, scope=((name, id), *((k, v) for k, v in self.scope if k != name)))

    def build_id(self, name: str) -> str | None:
        """The result id of child build `name`, or None if it is not in scope."""
        return next((v for k, v in self.scope if k == name), None)
