"""Base images: resolve `(from IMAGE)` to a rootfs plus its config (Env, WorkingDir, User).

Sources, tried in order by `fetch_image`: the local images (`LocalImages`, filled by `obuilder
image import`), a registry over the HTTP API v2 (`Registry`), the docker daemon (`DockerCLI`).
"""

from typing import TYPE_CHECKING

from obuilder_core.images.base import ImageConfig, ImageError, ImageNotFound, ImageSource
from obuilder_core.images.docker import DockerCLI
from obuilder_core.images.local import ImageInfo, LocalImages
from obuilder_core.images.resolve import default_sources, fetch_image

if TYPE_CHECKING:
    from obuilder_core.images.registry import Registry


def __getattr__(name: str) -> object:
    # The registry client (urllib, http.client: ~40 ms) loads only when a pull needs it.
    if name == "Registry":
        from obuilder_core.images.registry import Registry

        return Registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DockerCLI",
    "ImageConfig",
    "ImageError",
    "ImageInfo",
    "ImageNotFound",
    "ImageSource",
    "LocalImages",
    "Registry",
    "default_sources",
    "fetch_image",
]
