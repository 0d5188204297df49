"""OCI and docker image formats: manifests, indexes, platforms, layouts and archives.

Shared by the local image store (which reads OCI layouts, OCI archives, `docker save` archives
and plain rootfs tarballs) and the registry client (which reads the same manifests over HTTP).
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obuilder_core.images.base import ImageError
from obuilder_core.images.layers import open_tar

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
REF_NAME = "org.opencontainers.image.ref.name"

_ARCHES = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", None),
    "i386": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


@dataclass(frozen=True)
class Platform:
    """An OCI platform; `variant` is only compared when both sides name one."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, other: Platform) -> bool:
        """True if an image built for `other` runs on this platform."""
        same = (self.os, self.architecture) == (other.os, other.architecture)
        return same and (not self.variant or not other.variant or self.variant == other.variant)


def host_platform() -> Platform:
    """The platform of this machine, named as OCI indexes name it (linux/amd64, ...)."""
    machine = platform.machine().lower()
    arch, variant = _ARCHES.get(machine, (machine, None))
    return Platform("linux", arch, variant)


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest or index says about one blob."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] | None = None

    @classmethod
    def parse(cls, d: Any, where: str) -> Descriptor:
        """Read a descriptor JSON object; raises ImageError if fields are missing or bad."""
        try:
            digest, size = d["digest"], int(d["size"])
            plat = d.get("platform")
            return cls(
                media_type=d.get("mediaType", ""),
                digest=check_digest(digest, where),
                size=size,
                platform=Platform(plat["os"], plat["architecture"], plat.get("variant"))
                if plat
                else None,
                annotations=d.get("annotations"),
            )
        except (KeyError, TypeError, ValueError):
            raise ImageError(f"{where}: malformed descriptor {json.dumps(d)[:200]}") from None


@dataclass(frozen=True)
class Manifest:
    """An image manifest: one config blob and the layer blobs, lowest layer first."""

    config: Descriptor
    layers: tuple[Descriptor, ...]


def check_digest(digest: Any, where: str) -> str:
    """Only sha256 digests are accepted (so every blob can be verified)."""
    hexpart = digest.removeprefix("sha256:") if isinstance(digest, str) else ""
    if len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise ImageError(f"{where}: unsupported or malformed digest {digest!r}")
    return str(digest)


def sha256_digest(data: bytes) -> str:
    """The OCI digest string of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def load_json(data: bytes, where: str, what: str) -> Any:
    """Parse JSON, turning syntax errors into ImageError naming `what`."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"{where}: {what} is not valid JSON: {e}") from None


def media_type_of(doc: Any, fallback: str | None) -> str:
    """The media type of a manifest/index document (body field first, then the header)."""
    mt = doc.get("mediaType") if isinstance(doc, dict) else None
    if mt:
        return str(mt)
    if fallback:
        return fallback.split(";")[0].strip()
    # OCI allows omitting mediaType: an index has `manifests`, a manifest has `layers`.
    return OCI_INDEX if isinstance(doc, dict) and "manifests" in doc else OCI_MANIFEST


def choose_manifest(index: Any, where: str, want: Platform | None = None) -> Descriptor:
    """Pick the manifest for `want` (default: this host) from an OCI index / docker list.

    Raises ImageError listing the platforms the index offers when none matches.
    """
    want = want or host_platform()
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise ImageError(f"{where}: image index has no manifests list")
    descs = [Descriptor.parse(e, where) for e in entries]
    # Build attestations (buildx) sit in indexes as platform unknown/unknown: never images.
    descs = [d for d in descs if not d.platform or d.platform.os != "unknown"]
    if len(descs) == 1 and descs[0].platform is None:
        return descs[0]
    for d in descs:
        if d.platform and d.platform.matches(want):
            return d
    offered = ", ".join(str(d.platform) for d in descs if d.platform) or "none"
    raise ImageError(f"{where}: no image for platform {want} (available: {offered})")


def parse_manifest(doc: Any, where: str) -> Manifest:
    """Read a docker schema2 or OCI image manifest."""
    if not isinstance(doc, dict):
        raise ImageError(f"{where}: manifest is not a JSON object")
    if doc.get("schemaVersion") == 1:
        raise ImageError(f"{where}: docker schema 1 manifests are not supported")
    if "config" not in doc or not isinstance(doc.get("layers"), list):
        raise ImageError(f"{where}: manifest lacks config or layers")
    return Manifest(
        config=Descriptor.parse(doc["config"], where),
        layers=tuple(Descriptor.parse(d, where) for d in doc["layers"]),
    )


@dataclass(frozen=True)
class LocalImage:
    """An image found on disk: its manifest digest, the config and the layer files in order.

    `descriptors` holds the manifest's layer descriptors when there is a manifest (OCI layout),
    and is empty for docker archives and rootfs tarballs; `manifest` holds its bytes then.
    """

    digest: str
    config: bytes
    layers: tuple[Path, ...]
    descriptors: tuple[Descriptor, ...] = ()
    manifest: bytes = b""
    manifest_type: str = ""


class OCILayout:
    """An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`)."""

    def __init__(self, root: Path, where: str) -> None:
        self.root = root
        self.where = where

    def blob_path(self, digest: str) -> Path:
        """Where blob `digest` lives in the layout."""
        algo, _, hexpart = check_digest(digest, self.where).partition(":")
        return self.root / "blobs" / algo / hexpart

    def read_blob(self, desc: Descriptor, what: str) -> bytes:
        """A small blob's bytes (manifest, config), checked against `desc`'s digest."""
        try:
            data = self.blob_path(desc.digest).read_bytes()
        except OSError:
            raise ImageError(f"{self.where}: {what} blob {desc.digest} is missing") from None
        if sha256_digest(data) != desc.digest:
            raise ImageError(f"{self.where}: {what} blob {desc.digest} digest mismatch")
        return data

    def image(self, want: Platform | None = None) -> LocalImage:
        """The image of `index.json` (the host platform's one if it lists several)."""
        try:
            index = load_json((self.root / "index.json").read_bytes(), self.where, "index.json")
        except OSError:
            raise ImageError(f"{self.where}: not an OCI image layout (no index.json)") from None
        desc = choose_manifest(index, self.where, want)
        for _ in range(4):  # nested indexes, bounded so a cycle cannot loop forever
            data = self.read_blob(desc, "manifest")
            doc = load_json(data, self.where, "manifest")
            if media_type_of(doc, desc.media_type) not in INDEX_TYPES:
                break
            desc = choose_manifest(doc, self.where, want)
        manifest = parse_manifest(doc, self.where)
        layers = tuple(self.blob_path(d.digest) for d in manifest.layers)
        for d, path in zip(manifest.layers, layers, strict=True):
            if not path.is_file():
                raise ImageError(f"{self.where}: layer blob {d.digest} is missing")
        return LocalImage(
            digest=desc.digest,
            config=self.read_blob(manifest.config, "config"),
            layers=layers,
            descriptors=manifest.layers,
            manifest=data,
            manifest_type=media_type_of(doc, desc.media_type),
        )


def read_docker_archive(root: Path, where: str) -> LocalImage:
    """The (first) image of an unpacked `docker save` archive (`manifest.json`)."""
    try:
        entries = load_json((root / "manifest.json").read_bytes(), where, "manifest.json")
        entry = entries[0]
        config_path, layer_names = root / entry["Config"], list(entry["Layers"])
        if not config_path.resolve().is_relative_to(root.resolve()):
            raise ImageError(f"{where}: docker archive config path {entry['Config']!r} escapes it")
        config = config_path.read_bytes()
    except OSError as e:
        missing = Path(e.filename or "?").name
        raise ImageError(f"{where}: incomplete docker archive: {missing}: {e.strerror}") from None
    except (LookupError, TypeError):
        raise ImageError(f"{where}: malformed manifest.json in docker archive") from None
    layers = tuple(root / name for name in layer_names)
    for path in (config_path, *layers):
        if not path.resolve().is_relative_to(root.resolve()) or not path.is_file():
            raise ImageError(f"{where}: docker archive file {path.name} is missing")
    return LocalImage(digest=sha256_digest(config), config=config, layers=layers)


def archive_kind(source: Path, where: str) -> str:
    """What a source is: "oci-layout", "docker-archive" (both also as tar files) or "rootfs"."""
    if source.is_dir():
        names: Sequence[str] = [p.name for p in source.iterdir()]
    else:
        with open_tar(source, where=where) as tar:
            names = [_top(m.name) for m in tar]
    if "index.json" in names and "oci-layout" in names:
        return "oci-layout"
    if "manifest.json" in names:
        return "docker-archive"
    if source.is_dir():
        raise ImageError(
            f"{where}: directory is neither an OCI image layout (index.json, oci-layout) nor an"
            " unpacked docker archive (manifest.json)"
        )
    return "rootfs"


def _top(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return parts[0] if len(parts) == 1 else ""
