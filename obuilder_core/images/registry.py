"""Pull images from an OCI registry over the Distribution HTTP API v2 (urllib only).

Docker Hub is the default (`busybox` means registry-1.docker.io/library/busybox); a mirror URL
may replace it; `distribution.py` makes the calls and authenticates (anonymously or with
Docker's credentials). Every blob is downloaded to a temporary file and checked against its
digest (and size) before a single byte of it is unpacked; manifests fetched by digest are
checked too.
"""

from __future__ import annotations

import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from obuilder_core.images.base import ImageConfig, ImageError
from obuilder_core.images.layers import apply_layers
from obuilder_core.images.oci import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    Platform,
    choose_manifest,
    load_json,
    media_type_of,
    parse_manifest,
    sha256_digest,
)
from obuilder_core.images.ref import DOCKER_HUB, ImageRef, parse_image_ref
from obuilder_core.log import ByteCounter, Emit, Progress

if TYPE_CHECKING:
    from obuilder_core.images.distribution import RegistryClient

DOCKER_HUB_URL = "https://registry-1.docker.io"
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))


@dataclass(frozen=True)
class Registry:
    """An ImageSource pulling from registries (see the module docstring).

    `mirror` (a URL such as `https://mirror.gcr.io`) replaces Docker Hub; `allow_http` permits
    plain http to any host (it is always allowed for loopback hosts, as docker does).
    `platform` overrides the host platform when choosing from multi-platform indexes.
    """

    mirror: str | None = None
    allow_http: bool = False
    platform: Platform | None = None
    timeout: float = 60.0
    label: str = field(default="registry", init=False)

    def endpoint(self, ref: ImageRef) -> str:
        """The base URL (`scheme://host[:port]`) to ask for `ref`."""
        # Imported here: the HTTP client (http.client, urllib: ~40 ms) only when a pull needs
        # it, not on every build that lists this source.
        from obuilder_core.images.distribution import check_url, registry_url

        if ref.registry == DOCKER_HUB:
            url = (self.mirror or DOCKER_HUB_URL).rstrip("/")
        else:
            url = registry_url(ref.registry, allow_http=self.allow_http)
        check_url(url, "registry", allow_http=self.allow_http)
        return url

    def fetch(
        self, name: str, rootfs: Path, log: Emit, progress: Progress | None = None
    ) -> ImageConfig:
        """ImageSource.fetch from the image's registry (or the mirror, for Docker Hub names);
        `progress` gets the bytes of layers downloaded so far, after each MiB."""
        from obuilder_core.images.distribution import RegistryClient  # see `endpoint`

        ref = parse_image_ref(name)
        base = self.endpoint(ref)
        host = urllib.parse.urlsplit(base).netloc
        client = RegistryClient(
            base, ref.repository, timeout=self.timeout, allow_http=self.allow_http
        )
        log(f"pulling {ref.familiar()} from {host}\n".encode())
        manifest = _resolve(client, ref, self.platform, log)
        config = client.small_blob(manifest.config, "config")
        total = sum(d.size for d in manifest.layers)
        log(f"{len(manifest.layers)} layers, {total / 1e6:.1f} MB\n".encode())
        # Layers are downloaded next to the rootfs (same filesystem, discarded with it).
        with tempfile.TemporaryDirectory(prefix=".pull-", dir=rootfs.parent) as tmp:
            paths = []
            counter = ByteCounter(progress)
            for i, desc in enumerate(manifest.layers, 1):
                log(f"layer {i}/{len(manifest.layers)} {desc.digest[:19]} {desc.size} B\n".encode())
                paths.append(client.download(desc, Path(tmp) / f"layer{i}", counter.add))
            apply_layers(rootfs, paths, log, where=f"image {ref.familiar()}")
        where = f"image {ref.familiar()}"
        return ImageConfig.from_oci(load_json(config, where, "config"), where)


def _resolve(client: RegistryClient, ref: ImageRef, want: Platform | None, log: Emit) -> Manifest:
    """Fetch the image manifest for `ref`, going through an index if there is one."""
    data, ctype = client.manifest(ref.reference, pinned=ref.digest, accept=ACCEPT)
    # Logged so that users can pin the tag they got (`name@sha256:...`).
    log(f"digest {sha256_digest(data)}\n".encode())
    doc = load_json(data, client.where, "manifest")
    media_type = media_type_of(doc, ctype)
    if media_type in INDEX_TYPES:
        desc = choose_manifest(doc, client.where, want)
        log(f"index: chose {desc.platform or 'the only manifest'} {desc.digest}\n".encode())
        data, ctype = client.manifest(desc.digest, pinned=desc.digest, accept=ACCEPT)
        doc = load_json(data, client.where, "manifest")
        media_type = media_type_of(doc, ctype)
    if media_type not in MANIFEST_TYPES:
        raise ImageError(f"{client.where}: unsupported manifest type {media_type}")
    return parse_manifest(doc, client.where)
