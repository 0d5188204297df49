"""Image references: `busybox`, `debian:12`, `ghcr.io/x/y:tag`, `name@sha256:<hex>`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from obuilder_core.images.base import ImageError

DOCKER_HUB = "docker.io"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference; `registry` is `docker.io` for Docker Hub names."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def familiar(self) -> str:
        """The short, canonical spelling: Docker Hub prefixes dropped, `:latest` made explicit.

        `busybox`, `busybox:latest` and `docker.io/library/busybox` all give `busybox:latest`.
        """
        repo = self.repository
        if self.registry == DOCKER_HUB:
            repo = repo.removeprefix("library/")
        else:
            repo = f"{self.registry}/{repo}"
        tag = self.tag if self.tag or self.digest else "latest"
        return repo + (f":{tag}" if tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.familiar()


def parse_image_ref(name: str) -> ImageRef:
    """Parse an image name as docker does; raises ImageError naming the bad part."""
    rest, digest = name, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise ImageError(f"invalid image name {name!r}: digest must be sha256:<64 hex digits>")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ImageError(f"invalid image name {name!r}: bad tag {tag!r}")
    parts = rest.split("/")
    registry = DOCKER_HUB
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN.fullmatch(first):
            raise ImageError(f"invalid image name {name!r}: bad registry host {first!r}")
        registry = first
        parts = parts[1:]
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if not parts or not all(_COMPONENT.fullmatch(p) for p in parts):
        raise ImageError(
            f"invalid image name {name!r}: repository must be lowercase letters, digits and"
            " separators (., _, -) between slashes"
        )
    if registry == DOCKER_HUB and len(parts) == 1:
        parts = ["library", *parts]
    return ImageRef(registry=registry, repository="/".join(parts), tag=tag, digest=digest)
