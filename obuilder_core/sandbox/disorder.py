"""A Sandbox wrapper that shows commands their rootfs through disorderfs, so directory entries
come back in reverse order: the `fileorder` variation of `obuilder verify` (reprotest's
`fileordering`). Writes land in the real rootfs, which the store then commits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from obuilder_core.log import Emit
from obuilder_core.process import run_cmd
from obuilder_core.sandbox.base import RunConfig, Sandbox
from obuilder_core.sandbox.errors import SandboxError
from obuilder_core.sandbox.limits import Limits
from obuilder_core.spec.model import User

DISORDERFS_ARGS = (
    "-q",
    "--multi-user=yes",  # every uid in the container acts as itself (needs allow_other)
    # Reversed, not shuffled: a shuffle may return the original order by chance, a reversal of
    # two or more entries never does, so a step that depends on the order is always caught.
    "--reverse-dirents=yes",
    "--shuffle-dirents=no",
    "--pad-blocks=0",  # the default pads st_blocks, which would change `du` output
    # use_ino: real inode numbers, so hard links stay recognisable (tar, cp -a); suid,dev: the
    # same mount flags as the real rootfs, not FUSE's nosuid,nodev.
    "-o",
    "allow_other,use_ino,readdir_ino,suid,dev",
)


def disorderfs_missing() -> str | None:
    """Why the `fileorder` variation cannot run here (None if it can)."""
    for tool in ("disorderfs", "fusermount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install disorderfs)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (FUSE is not available)"
    return None


TMP_CANDIDATES = ("/tmp", "/var/tmp", "/dev/shm")
"""Where a view's directory goes when the temporary directory is private (pam_tmpdir's
/tmp/user/0, a TMPDIR of 0700)."""


def searchable_tmpdir() -> str:
    """A temporary directory that every user can reach (every directory down to it has the
    other-users search bit): disorderfs reaches files by path with the caller's uid, so a
    step run as uid 1000 would otherwise get "permission denied" for /bin/sh."""
    for candidate in (tempfile.gettempdir(), *TMP_CANDIDATES):
        path = Path(candidate).resolve()
        try:
            if all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents)):
                return str(path)
        except OSError:
            continue
    tried = ", ".join((tempfile.gettempdir(), *TMP_CANDIDATES))
    raise SandboxError(f"fileorder: no temporary directory every user can reach (tried {tried})")


@contextlib.contextmanager
def disordered(rootfs: Path) -> Iterator[Path]:
    """`rootfs` mounted through disorderfs (entries listed in reverse order) at a temporary
    mount point, which is yielded; writes land in `rootfs`. Unmounted (lazily if busy) and
    removed on exit, however the body ends."""
    base = Path(tempfile.mkdtemp(prefix="obuilder-disorderfs-", dir=searchable_tmpdir()))
    source, view = base / "rootfs", base / "view"
    try:
        # disorderfs reaches files by path with the caller's uid, so every directory above the
        # rootfs must be searchable by all: bind it below a 0755 dir (store dirs may be 0700).
        base.chmod(0o755)
        source.mkdir()
        view.mkdir()
        run_cmd(["mount", "--bind", str(rootfs), str(source)])
        try:
            run_cmd(["disorderfs", *DISORDERFS_ARGS, str(source), str(view)], timeout=60)
            try:
                yield view
            finally:
                _unmount(["fusermount", "-u"], view)
        finally:
            _unmount(["umount"], source)
    finally:
        for path in (view, source, base):
            with contextlib.suppress(OSError):
                path.rmdir()


def _unmount(argv: list[str], path: Path) -> None:
    # A process of the container may still hold a file open: detach lazily then.
    if run_cmd([*argv, str(path)], check=False).returncode != 0:
        run_cmd([*argv, "-z", str(path)])


@dataclass(frozen=True)
class DisorderedSandbox:
    """A Sandbox that runs each command in its rootfs seen through `disordered`; its rules
    are the inner sandbox's."""

    inner: Sandbox

    @property
    def default_shell(self) -> tuple[str, ...]:
        """The inner sandbox's."""
        return self.inner.default_shell

    def unpack_config(self, limits: Limits) -> RunConfig:
        """The inner sandbox's."""
        return self.inner.unpack_config(limits)

    def describe(self) -> str:
        """The inner sandbox's."""
        return self.inner.describe()

    def check_user(self, user: User) -> None:
        """The inner sandbox's."""
        self.inner.check_user(user)

    def run(
        self,
        config: RunConfig,
        rootfs: Path,
        *,
        log: Emit,
        stdin: bytes | BinaryIO | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """`inner.run` on the disorderfs view of `rootfs` (see `Sandbox.run`)."""
        with disordered(rootfs) as view:
            self.inner.run(config, view, log=log, stdin=stdin, cancel=cancel)
