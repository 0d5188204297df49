"""The `obuilder` fixture: build a spec from a Python test and assert on what it built.

    def test_hello_is_installed(obuilder):
        built = obuilder.build("examples/hello.spec")
        assert built.exists("/usr/bin/hello")
        assert built.run("hello --version", check=True).stdout.startswith("hello 2")

Builds go through the session's builder (the one the spec items use), so they share its store
and cache, and pytest-xdist workers share steps as the spec items do.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from obuilder_core.spec import parse_spec
from obuilder_core.spec.model import UnixUser
from obuilder_core.spec.sniff import looks_like_spec
from pytest_obuilder.report import failure_text

if TYPE_CHECKING:
    from obuilder_core.builder import Builder, BuildFailure, FinalSettings
    from pytest_obuilder.items import BuilderSession

MAX_SYMLINKS = 40  # as Linux's path resolution allows


class BuildFailed(Exception):
    """`obuilder.build` of a spec whose build failed: the message is the failed step, its
    message and the end of its log, as a failing spec item shows them."""

    def __init__(self, failure: BuildFailure, log_lines: int) -> None:
        super().__init__(failure_text(failure, log_lines))
        self.failure = failure


@dataclass
class Obuilder:
    """The `obuilder` fixture's value (session-scoped)."""

    session: BuilderSession
    _views: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def build(
        self, spec: str | os.PathLike[str], context: str | os.PathLike[str] | None = None
    ) -> Built:
        """Build `spec` — a spec file's path, or the text of a spec — and return its result.

        `context` is the directory `(copy ...)` reads (default: the spec file's directory, or
        the current directory for spec text). Relative paths are taken from the current
        directory, as Python takes them. Raises BuildFailed if a step fails.
        """
        text, name, default_context = self._load(spec)
        parsed = parse_spec(text, name)
        settings = self.session.settings
        builder = self.session.builder()
        result = builder.build(
            parsed,
            Path(context) if context is not None else default_context,
            secrets=dict(settings.secrets),
            use_cache=settings.use_cache,
            limits=settings.limits,
        )
        if result.failure is not None:
            raise BuildFailed(result.failure, settings.log_lines)
        assert result.id is not None and result.settings is not None  # a successful build
        rootfs = self._views.enter_context(builder.view(result.id))
        return Built(result.id, rootfs, result.settings, builder)

    def close(self) -> None:
        """Let go of the results handed out (the end of the session)."""
        self._views.close()

    def _load(self, spec: str | os.PathLike[str]) -> tuple[str, str, Path]:
        if isinstance(spec, str) and looks_like_spec(spec.encode()):
            return spec, "<spec>", Path.cwd()
        path = Path(spec)
        try:
            return path.read_text(), str(spec), path.parent
        except OSError as e:
            raise FileNotFoundError(f"spec {spec}: cannot read: {e.strerror or e}") from None


@dataclass(frozen=True)
class Built:
    """The result of a build: its id, its filesystem, and commands run on a copy of it."""

    id: str
    rootfs: Path
    """The result's filesystem, to read; do not write (btrfs and zfs enforce it)."""
    settings: FinalSettings
    """The env, workdir, user and shell the spec ends with: what `run` starts with."""
    _builder: Builder = field(repr=False)

    def run(
        self,
        command: str | Sequence[str],
        *,
        user: tuple[int, int] | None = None,
        env: Mapping[str, str] | None = None,
        network: bool = False,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` (a string for the spec's final shell, or an argv) in a throwaway
        sandbox on top of the result, as `(uid, gid)` `user` (default: the spec's), with
        `env` added to the spec's environment and, if `network`, the host's network.

        Nothing it writes is kept; nothing is cached. `stdout` holds stdout and stderr
        merged, as a step's log does (`stderr` is empty). `check`: raise
        subprocess.CalledProcessError for a non-zero exit status.
        """
        from obuilder_core.builder import HOST_NETWORK, RunConfig

        argv = (*self.settings.shell, command) if isinstance(command, str) else tuple(command)
        extra = dict(env or {})
        config = RunConfig(
            argv=argv,
            cwd=self.settings.workdir,
            env=(*extra.items(), *((k, v) for k, v in self.settings.env if k not in extra)),
            user=user or _uid_gid(self.settings),
            network=HOST_NETWORK if network else (),
        )
        status, output = self._builder.run_on(self.id, config)
        done = subprocess.CompletedProcess(list(argv), status, output.decode(errors="replace"), "")
        if check:
            done.check_returncode()
        return done

    def read_text(self, path: str) -> str:
        """The text of file `path` of the result (symlinks followed inside the result)."""
        return self.path(path).read_text()

    def exists(self, path: str) -> bool:
        """Whether `path` exists in the result (symlinks followed inside the result)."""
        try:
            return self.path(path).exists()
        except OSError:  # a symlink loop
            return False

    def path(self, path: str) -> Path:
        """Where `path` (absolute, or relative to `/`) of the result is on the host, with
        symlinks resolved as inside the result: an absolute link target is taken from the
        result's root, so nothing leads out of it."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            here = self.rootfs.joinpath(*done, part)
            if not here.is_symlink():
                done.append(part)
                continue
            hops += 1
            if hops > MAX_SYMLINKS:
                raise OSError(f"{path}: too many levels of symbolic links")
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
        return self.rootfs.joinpath(*done)


def _uid_gid(settings: FinalSettings) -> tuple[int, int]:
    user = settings.user
    if not isinstance(user, UnixUser):
        raise ValueError(f"the spec ends as user {user!r}: pass run(..., user=(uid, gid))")
    return user.uid, user.gid


@pytest.fixture(scope="session")
def obuilder(request: pytest.FixtureRequest) -> Iterator[Obuilder]:
    """Build specs from Python tests: `obuilder.build(spec, context=None) -> Built`."""
    from pytest_obuilder.items import session_key

    value = Obuilder(request.config.stash[session_key])
    yield value
    value.close()
