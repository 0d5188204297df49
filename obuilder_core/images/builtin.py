"""The built-in image sources, registered as a plugin (see `obuilder_core.plugins`)."""

from __future__ import annotations

from pathlib import Path

from obuilder_core.images.base import ImageSource
from obuilder_core.plugins import hookimpl


@hookimpl
def obuilder_image_sources(
    images_dir: Path, mirror: str | None, allow_http: bool
) -> list[tuple[int, ImageSource]]:
    """The local images (rank 10), a registry (20), the docker daemon (30)."""
    from obuilder_core.images.docker import DockerCLI
    from obuilder_core.images.local import LocalImages
    from obuilder_core.images.registry import Registry

    return [
        (10, LocalImages(images_dir)),
        (20, Registry(mirror=mirror, allow_http=allow_http)),
        (30, DockerCLI()),
    ]
