"""Base images: resolve `(from IMAGE)` to a rootfs plus its config (Env, WorkingDir, User).

Sources, tried in order by `fetch_image`: the local images (`LocalImages`, filled by `obuilder
image import`), a registry over the HTTP API v2 (`Registry`), the docker daemon (`DockerCLI`).

The sources are imported on first use (`obuilder_core.lazy`): a build whose base image is in
the store opens none, and the registry client (urllib, http.client: ~40 ms) loads only when a
pull needs it.
"""

from typing import TYPE_CHECKING

from obuilder_core.images.base import ImageConfig, ImageError, ImageNotFound, ImageSource
from obuilder_core.images.resolve import default_sources, fetch_image
from obuilder_core.lazy import lazy_getattr

__getattr__ = lazy_getattr(
    globals(),
    {
        "DockerCLI": "obuilder_core.images.docker",
        "ImageInfo": "obuilder_core.images.local",
        "LocalImages": "obuilder_core.images.local",
        "Registry": "obuilder_core.images.registry",
    },
)

if TYPE_CHECKING:
    from obuilder_core.images.docker import DockerCLI
    from obuilder_core.images.local import ImageInfo, LocalImages
    from obuilder_core.images.registry import Registry

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
