"""Write an image (gzip'd OCI layers, a config) where other tools read images: an OCI image
layout directory, a `docker save` archive, or a registry.

Targets are named as skopeo names them, so a user can hand the same string to both:

- `oci:DIR[:TAG]`: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`); the
  image is added to a layout already there (replacing the one of the same tag), and is found by
  its `org.opencontainers.image.ref.name` annotation (TAG, default `latest`);
- `docker-archive:FILE[:NAME[:TAG]]`: a `docker save` tar (`manifest.json`, the config, one
  uncompressed tar per layer, as `docker save` writes them), written to a temporary file and
  renamed, so a reader never sees half an archive;
- `HOST[:PORT]/REPO[:TAG]`: pushed to a registry, blobs first and the manifest last (an
  interrupted push leaves no tag). HOST must be explicit (`docker.io/user/app` for Docker Hub):
  a bare `app:1` pushing to Docker Hub would surprise.

A writer takes the layers one at a time as they are made (`add_layer`), so an image needs at
most one layer's worth of scratch space beside the target, then `finish(config, manifest)`.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from obuilder_core.images.base import ImageError
from obuilder_core.images.distribution import RegistryClient, registry_url
from obuilder_core.images.oci import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    REF_NAME,
    Descriptor,
    load_json,
    sha256_digest,
)
from obuilder_core.images.ref import DOCKER_HUB, ImageRef, parse_image_ref

OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
DEFAULT_TAG = "latest"
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DOCKER_HUB_HOST = "registry-1.docker.io"
_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
TARGET_FORMS = "oci:DIR[:TAG], docker-archive:FILE[:NAME:TAG] or HOST[:PORT]/REPO[:TAG]"


# -- targets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OCILayoutTarget:
    """An OCI image layout directory and the tag (ref.name) of the image in it."""

    dir: Path
    tag: str

    def __str__(self) -> str:
        return f"oci:{self.dir}:{self.tag}"


@dataclass(frozen=True)
class DockerArchiveTarget:
    """A `docker save` archive file and the name it gives the image (`RepoTags`), if any."""

    file: Path
    name: str | None

    def __str__(self) -> str:
        return f"docker-archive:{self.file}" + (f":{self.name}" if self.name else "")


@dataclass(frozen=True)
class RegistryTarget:
    """`HOST/REPO:TAG` in a registry."""

    host: str
    repository: str
    tag: str

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"


Target = OCILayoutTarget | DockerArchiveTarget | RegistryTarget


def parse_target(text: str) -> Target:
    """Parse an export target (see the module docstring); ImageError naming the bad part."""
    kind, sep, rest = text.partition(":")
    if sep and kind == "oci":
        path, _, tag = rest.partition(":")
        return OCILayoutTarget(Path(_nonempty(path, text, "DIR")), _tag(tag or DEFAULT_TAG, text))
    if sep and kind == "docker-archive":
        path, _, name = rest.partition(":")
        file = Path(_nonempty(path, text, "FILE"))
        return DockerArchiveTarget(file, _image_name(name, text) if name else None)
    return _registry_target(text)


def _nonempty(part: str, text: str, what: str) -> str:
    if not part:
        raise ImageError(f"export target {text!r}: {what} is empty; expected {TARGET_FORMS}")
    return part


def _tag(tag: str, text: str) -> str:
    if not _TAG.fullmatch(tag):
        raise ImageError(
            f"export target {text!r}: bad tag {tag!r} (letters, digits, _ . -, at most 128,"
            " not starting with . or -)"
        )
    return tag


def _image_name(name: str, text: str) -> str:
    """`NAME[:TAG]` as docker's RepoTags hold it (`:latest` made explicit)."""
    ref = _parsed(name, text)
    if ref.digest:
        raise ImageError(f"export target {text!r}: a digest cannot be written, only a tag")
    return ref.familiar()


def _parsed(name: str, text: str) -> ImageRef:
    """`parse_image_ref(name)`, its error naming the export target."""
    try:
        return parse_image_ref(name)
    except ImageError as e:
        reason = str(e).split(": ", 1)[-1]  # after "invalid image name 'NAME'"
        raise ImageError(f"export target {text!r}: {reason}") from None


def _registry_target(text: str) -> RegistryTarget:
    first = text.split("/", 1)[0]
    if "/" not in text or not ("." in first or ":" in first or first == "localhost"):
        raise ImageError(f"export target {text!r}: expected {TARGET_FORMS}")
    ref = _parsed(text, text)
    if ref.digest:
        raise ImageError(f"export target {text!r}: a digest cannot be pushed, only a tag")
    host = _DOCKER_HUB_HOST if ref.registry == DOCKER_HUB else ref.registry
    return RegistryTarget(host, ref.repository, ref.tag or DEFAULT_TAG)


# -- what is written --------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """A gzip'd layer file and its descriptor fields (`diff_id`: of the uncompressed tar)."""

    path: Path
    digest: str
    size: int
    diff_id: str

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(OCI_LAYER_GZIP, self.digest, self.size)


def image_manifest(
    config: bytes, layers: list[Layer], annotations: dict[str, str] | None = None
) -> bytes:
    """The OCI image manifest of `config` and `layers` (lowest first)."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _desc(Descriptor(OCI_CONFIG, sha256_digest(config), len(config))),
        "layers": [_desc(layer.descriptor) for layer in layers],
    }
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _desc(desc: Descriptor, **extra: Any) -> dict[str, Any]:
    return {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size, **extra}


class ImageWriter(Protocol):
    """Receives an image's layers as they are made, then its config and manifest."""

    def add_layer(self, layer: Layer) -> None:
        """Take layer `layer` (lowest first); its file is the writer's to move or delete."""
        ...

    def finish(self, config: bytes, manifest: bytes) -> None:
        """Write the config and the manifest: only now does the image appear at the target."""
        ...


@contextlib.contextmanager
def open_writer(
    target: Target, scratch: Path, *, allow_http: bool = False
) -> Iterator[ImageWriter]:
    """A writer for `target`; `scratch` is a directory for temporary files. If the block
    raises, nothing appears at the target (blobs already added to a layout or a registry stay:
    they are unreferenced, as an interrupted `skopeo copy` leaves them)."""
    if isinstance(target, OCILayoutTarget):
        yield _OCILayoutWriter(target)
    elif isinstance(target, DockerArchiveTarget):
        with _DockerArchiveWriter(target, scratch) as writer:
            yield writer
    else:
        yield _RegistryWriter(target, allow_http)


class _OCILayoutWriter:
    """Adds blobs to an OCI layout (creating it), then points index.json at the manifest."""

    def __init__(self, target: OCILayoutTarget) -> None:
        self.target = target
        self.root = target.dir
        self.where = f"OCI layout {self.root}"
        self._index = self._open()

    def _open(self) -> dict[str, Any]:
        """The layout's index (an empty one for a new layout), after checking DIR is one."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise ImageError(f"{self.where}: exists and is not a directory")
        if root.is_dir() and any(root.iterdir()) and not (root / "oci-layout").is_file():
            raise ImageError(f"{self.where}: directory is not empty and not an OCI image layout")
        try:
            (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            index_path = root / "index.json"
            if not index_path.exists():
                _write_atomically(root / "oci-layout", _LAYOUT)
                return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
            index = load_json(index_path.read_bytes(), self.where, "index.json")
        except OSError as e:
            raise ImageError(f"{self.where}: {e.strerror or e}") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise ImageError(f"{self.where}: index.json has no manifests list")
        return index

    def _blob(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def add_layer(self, layer: Layer) -> None:
        dest = self._blob(layer.digest)
        try:
            if not dest.is_file():
                _move_into(layer.path, dest)
        except OSError as e:
            raise ImageError(f"{self.where}: cannot write blob {layer.digest}: {e}") from None

    def finish(self, config: bytes, manifest: bytes) -> None:
        mine = _desc(
            Descriptor(OCI_MANIFEST, sha256_digest(manifest), len(manifest)),
            annotations={REF_NAME: self.target.tag},
        )
        others = [
            m
            for m in self._index["manifests"]
            if not (
                isinstance(m, dict)
                and (m.get("annotations") or {}).get(REF_NAME) == self.target.tag
            )
        ]
        index = {**self._index, "manifests": [*others, mine]}
        try:
            for data in (config, manifest):
                if not self._blob(sha256_digest(data)).is_file():
                    _write_atomically(self._blob(sha256_digest(data)), data)
            _write_atomically(self.root / "index.json", json.dumps(index, indent=1).encode())
        except OSError as e:
            raise ImageError(f"{self.where}: {e.strerror or e}") from None


class _DockerArchiveWriter:
    """A `docker save` tar, layers uncompressed (`<diff_id hex>.tar`), renamed into place."""

    def __init__(self, target: DockerArchiveTarget, scratch: Path) -> None:
        self.target = target
        self.scratch = scratch
        self.where = f"docker archive {target.file}"
        self.layers: list[str] = []
        self._tmp: IO[bytes] | None = None
        self._tar: tarfile.TarFile | None = None

    def __enter__(self) -> _DockerArchiveWriter:
        file = self.target.file
        try:
            if file.is_dir():
                raise ImageError(f"{self.where}: is a directory")
            self._tmp = tempfile.NamedTemporaryFile(  # renamed or removed by __exit__
                dir=file.parent, prefix=f".{file.name}.", suffix=".tmp", delete=False
            )
        except OSError as e:
            raise ImageError(f"{self.where}: {e.strerror or e}") from None
        self._tar = tarfile.open(fileobj=self._tmp, mode="w", format=tarfile.PAX_FORMAT)
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        assert self._tmp is not None and self._tar is not None
        tmp = Path(self._tmp.name)
        try:
            self._tar.close()
            self._tmp.close()
            if kind is None:
                os.replace(tmp, self.target.file)
        except OSError as e:
            raise ImageError(f"{self.where}: {e.strerror or e}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def add_layer(self, layer: Layer) -> None:
        name = f"{layer.diff_id.removeprefix('sha256:')}.tar"
        if name not in self.layers:
            plain = self.scratch / name
            with gzip.open(layer.path, "rb") as src, open(plain, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            layer.path.unlink()
            with open(plain, "rb") as f:
                self._add(name, f, plain.stat().st_size)
            plain.unlink()
        self.layers.append(name)

    def finish(self, config: bytes, manifest: bytes) -> None:
        config_name = f"{sha256_digest(config).removeprefix('sha256:')}.json"
        tags = [self.target.name] if self.target.name else []
        entry = [{"Config": config_name, "RepoTags": tags, "Layers": self.layers}]
        for name, data in ((config_name, config), ("manifest.json", json.dumps(entry).encode())):
            self._add(name, io.BytesIO(data), len(data))

    def _add(self, name: str, data: IO[bytes], size: int) -> None:
        """A member with fixed metadata: the same image gives the same archive."""
        assert self._tar is not None
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0
        try:
            self._tar.addfile(info, data)
        except OSError as e:
            raise ImageError(f"{self.where}: {e.strerror or e}") from None


class _RegistryWriter:
    """Uploads each blob the registry lacks, then puts the manifest under the tag."""

    def __init__(self, target: RegistryTarget, allow_http: bool) -> None:
        self.target = target
        self.client = RegistryClient(
            registry_url(target.host, allow_http=allow_http),
            target.repository,
            where=f"registry {target.host}",
            allow_http=allow_http,
            push=True,
        )

    def add_layer(self, layer: Layer) -> None:
        # urllib reads and closes the file it is given as a body.
        self.client.upload_blob(layer.descriptor, lambda: open(layer.path, "rb"))  # noqa: SIM115
        layer.path.unlink()

    def finish(self, config: bytes, manifest: bytes) -> None:
        desc = Descriptor(OCI_CONFIG, sha256_digest(config), len(config))
        self.client.upload_blob(desc, lambda: config)
        self.client.put_manifest(self.target.tag, manifest, OCI_MANIFEST)


def _ref_name(entry: Any) -> str | None:
    """The tag an index entry is annotated with, if any."""
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    return annotations.get(REF_NAME) if isinstance(annotations, dict) else None


def _move_into(src: Path, dest: Path) -> None:
    """Move `src` to `dest` atomically (a copy first when they are on different filesystems)."""
    try:
        os.replace(src, dest)
    except OSError:
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        src.unlink()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
