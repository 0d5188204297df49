"""Resolve `(from IMAGE)`: try the image sources in order until one has the image."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from obuilder_core.images.base import ImageConfig, ImageNotFound, ImageSource
from obuilder_core.log import Emit, Progress

if TYPE_CHECKING:
    import pluggy


def default_sources(
    images_dir: Path,
    *,
    mirror: str | None = None,
    allow_http: bool = False,
    plugins: pluggy.PluginManager | None = None,
) -> list[ImageSource]:
    """The sources the plugins provide, by rank: the built-ins are the local images in
    `images_dir`, then the registry, then docker (see `obuilder_core.images.builtin`)."""
    from obuilder_core.plugins import default_plugins

    hook = (plugins or default_plugins()).hook
    ranked = hook.obuilder_image_sources(
        images_dir=images_dir, mirror=mirror, allow_http=allow_http
    )
    return [source for _, source in sorted((r for group in ranked for r in group), key=_rank)]


def _rank(ranked: tuple[int, ImageSource]) -> int:
    return ranked[0]


def fetch_image(
    name: str,
    rootfs: Path,
    log: Emit,
    *,
    sources: Sequence[ImageSource],
    progress: Progress | None = None,
) -> ImageConfig:
    """Write image `name` into the empty dir `rootfs` from the first source that has it.

    Raises ImageNotFound combining every source's reason when none has it, e.g.
    `image "foo": not found locally, registry registry-1.docker.io: ..., docker: no daemon`,
    and the first other ImageError as it is (a bad digest is not a reason to try elsewhere).
    """
    reasons = []
    for source in sources:
        try:
            return source.fetch(name, rootfs, log, progress)
        except ImageNotFound as e:
            reasons.append(str(e))
            _empty(rootfs)  # sources promise not to write before failing; make sure
    raise ImageNotFound(f'image "{name}": ' + (", ".join(reasons) or "no image sources"))


def _empty(rootfs: Path) -> None:
    for entry in os.scandir(rootfs):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
