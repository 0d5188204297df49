"""The RemoteCache contract: step results found elsewhere than in the store, and sent there.

A remote cache keeps, for a step id, the step's change against its parent (a layer), its log
and its metadata. The step runner asks it on a local miss, before executing (`pull`), and sends
it each step a build used (`push`). Whatever a remote cache answers, a bad entry never enters
the store: `pull` verifies everything before it returns, and the runner applies what it got
inside `Store.build`, which commits nothing if applying fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from obuilder_core.errors import ObuilderError


class RemoteError(ObuilderError):
    """A remote cache could not be used for one step (unreachable, bad entry): a warning, never
    a failed build; the step is then built locally."""


class RemoteUnreachable(RemoteError):
    """The remote cache did not answer at all: the runner stops asking it (one warning)."""


@dataclass(frozen=True)
class Pulled:
    """A verified entry, downloaded: `apply(step_dir)` writes it onto a clone of its parent."""

    source: str
    """Where it came from, for the report: `registry cache HOST/REPO`."""
    apply: Callable[[Path], None]


class RemoteCache(Protocol):
    label: str
    """`registry cache HOST/REPO`: names the cache in reports and warnings."""

    def pull(self, id: str, parent: str | None, scratch: Path) -> Pulled | None:
        """Step `id` (built on `parent`) downloaded into `scratch` and verified, or None if
        the cache does not have it. Raises RemoteError for an entry it cannot trust or read."""
        ...

    def push(
        self,
        id: str,
        parent: str | None,
        files: Path,
        rootfs: Path,
        parent_rootfs: Path | None,
        scratch: Path,
    ) -> bool:
        """Send committed step `id` unless the cache has it; True if it was sent. `files` is
        its own dir (`Store.result`: its `log`, a base image's config), `rootfs` and
        `parent_rootfs` (None for a base image) its and its parent's whole trees; `scratch` a
        temporary dir on the store's filesystem. The entry becomes visible only once complete.
        Raises RemoteError."""
        ...
