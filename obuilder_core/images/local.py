"""The local image store: images imported with `obuilder image import`, kept as OCI layouts.

Each image lives in `ROOT/<escaped name>/`, a normal single-image OCI layout (so `skopeo copy
oci:ROOT/busybox%3alatest ...` also reads it). Imports are built in a temporary directory and
renamed into place under an exclusive lock; fetches hold a shared lock, so a re-import never
pulls an image out from under a running fetch.
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from obuilder_core.images.base import ImageConfig, ImageError, ImageNotFound
from obuilder_core.images.layers import apply_layer, apply_layers
from obuilder_core.images.oci import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    REF_NAME,
    LocalImage,
    OCILayout,
    archive_kind,
    host_platform,
    load_json,
    read_docker_archive,
    sha256_digest,
)
from obuilder_core.images.ref import parse_image_ref
from obuilder_core.log import Emit, Progress

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.")
_TMP = ".tmp-"


@dataclass(frozen=True)
class ImageInfo:
    """One local image as `obuilder image ls` shows it; `size` is in bytes (all blobs)."""

    name: str
    digest: str
    size: int


def escape_name(name: str) -> str:
    """An injective, filesystem-safe directory name for an image name (`debian%3a12`)."""
    out = []
    for i, ch in enumerate(name):
        if ch in _SAFE and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.extend(f"%{b:02x}" for b in ch.encode())
    return "".join(out)


class LocalImages:
    """Images imported into a directory (usually `<store state dir>/images`)."""

    label = "local images"

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()

    def path(self, name: str) -> Path:
        """The layout directory image `name` has (or would have) in this store."""
        return self.root / escape_name(parse_image_ref(name).familiar())

    def import_(self, name: str, source: Path, log: Emit | None = None) -> ImageInfo:
        """Import `source` as `name`, replacing any image of that name; returns what was stored.

        `source` is an OCI image layout directory, an OCI archive (a tar of one), a `docker
        save` archive, or a plain rootfs tarball (optionally gzip/zstd/xz/bzip2-compressed).
        """
        ref = parse_image_ref(name)
        key = ref.familiar()
        where = f"image import {source}"
        if not source.exists():
            raise ImageError(f"{where}: no such file or directory")
        kind = archive_kind(source, where)
        if log:
            log(f"importing {source} ({kind}) as {key}\n".encode())
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP}{os.getpid()}-", dir=self.root))
        try:
            image = self._read_source(kind, source, tmp / "src", where)
            # Apply the layers once, with the code and checks every build uses: a layer with
            # `..`, an absolute path or a write through a symlink is refused now, naming its
            # entry, not at the first build of an image that was accepted.
            (tmp / "check").mkdir()
            apply_layers(tmp / "check", image.layers, lambda _: None, where=where)
            dest = tmp / "layout"
            info = _write_layout(dest, key, image, where)
            if ref.digest and info.digest != ref.digest:
                raise ImageError(f"{where}: image digest is {info.digest}, not {ref.digest}")
            with self._lock(exclusive=True):
                final = self.root / escape_name(key)
                if final.exists():
                    final.rename(tmp / "old")
                dest.rename(final)
            return info
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def ls(self) -> list[ImageInfo]:
        """All local images, sorted by name."""
        out = []
        with self._lock(exclusive=False):
            for entry in sorted(self.root.iterdir()):
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                with contextlib.suppress(OSError, ImageError, LookupError, TypeError):
                    out.append(_info(entry))
        return sorted(out, key=lambda i: i.name)

    def fetch(
        self, name: str, rootfs: Path, log: Emit, progress: Progress | None = None
    ) -> ImageConfig:
        """ImageSource.fetch from the local images; ImageNotFound if `name` was not imported."""
        ref = parse_image_ref(name)
        with self._lock(exclusive=False):
            path = self.root / escape_name(ref.familiar())
            if not path.is_dir() and ref.digest:
                path = self._by_digest(ref.repository, ref.registry, ref.digest) or path
            if not path.is_dir():
                raise ImageNotFound("not found locally")
            where = f"local image {ref.familiar()}"
            image = OCILayout(path, where).image()
            log(f"using local image {ref.familiar()} ({image.digest})\n".encode())
            apply_layers(rootfs, image.layers, log, where=where)
            return ImageConfig.from_oci(load_json(image.config, where, "config"), where)

    def _by_digest(self, repository: str, registry: str, digest: str) -> Path | None:
        for info in self.ls():
            ref = parse_image_ref(info.name)
            if (ref.registry, ref.repository, info.digest) == (registry, repository, digest):
                return self.root / escape_name(info.name)
        return None

    def _read_source(self, kind: str, source: Path, scratch: Path, where: str) -> LocalImage:
        if kind == "rootfs":
            return LocalImage(digest="", config=b"", layers=(source,))
        if source.is_file():  # an archive: unpack it with the same safe layer code
            scratch.mkdir()
            apply_layer(scratch, source, where=where)
            source = scratch
        if kind == "oci-layout":
            return OCILayout(source, where).image()
        return read_docker_archive(source, where)

    @contextlib.contextmanager
    def _lock(self, *, exclusive: bool) -> Iterator[None]:
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def _remove_stale_temps(self) -> None:
        # Temp dirs are named .tmp-<pid>-...; one whose process is gone was left by a crash.
        for entry in self.root.glob(f"{_TMP}*"):
            pid = entry.name[len(_TMP) :].split("-", 1)[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(entry, ignore_errors=True)


def _info(layout: Path) -> ImageInfo:
    index = json.loads((layout / "index.json").read_bytes())
    desc = index["manifests"][0]
    size = sum(p.stat().st_size for p in (layout / "blobs").rglob("*") if p.is_file())
    return ImageInfo(name=desc["annotations"][REF_NAME], digest=desc["digest"], size=size)


def _write_layout(dest: Path, key: str, image: LocalImage, where: str) -> ImageInfo:
    """Write `image` as a single-image OCI layout at `dest`, verifying OCI layer digests."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layers = []
    diff_ids = []
    for i, src in enumerate(image.layers):
        digest, size, diff_id, media_type = _copy_layer(src, blobs, where)
        if image.descriptors:
            desc = image.descriptors[i]
            if digest != desc.digest:
                raise ImageError(f"{where}: blob {desc.digest} digest mismatch (got {digest})")
            media_type = desc.media_type or media_type
        layers.append({"mediaType": media_type, "digest": digest, "size": size})
        diff_ids.append(diff_id)
    config = image.config or _rootfs_config(diff_ids)
    config_desc = _put(blobs, config, OCI_CONFIG)
    if image.manifest:
        # Kept byte for byte, so the image keeps the digest it has in its registry.
        manifest_desc = _put(blobs, image.manifest, image.manifest_type)
    else:
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": layers,
        }
        manifest_desc = _put(blobs, json.dumps(manifest).encode(), OCI_MANIFEST)
    index = {
        "schemaVersion": 2,
        "manifests": [{**manifest_desc, "annotations": {REF_NAME: key}}],
    }
    (dest / "index.json").write_text(json.dumps(index))
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    total = sum(p.stat().st_size for p in blobs.iterdir())
    return ImageInfo(name=key, digest=str(manifest_desc["digest"]), size=total)


def _put(blobs: Path, data: bytes, media_type: str) -> dict[str, object]:
    digest = sha256_digest(data)
    (blobs / digest.removeprefix("sha256:")).write_bytes(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _copy_layer(src: Path, blobs: Path, where: str) -> tuple[str, int, str, str]:
    """Copy a layer into `blobs`: (digest, size, uncompressed diff id, media type).

    gzip and zstd layers are kept as they are; xz and bzip2 (allowed in rootfs tarballs, not
    in OCI) are stored decompressed. The diff id of a zstd layer is not computed (left equal
    to its digest): we never need it, and Python 3.11 cannot stream zstd.
    """
    with open(src, "rb") as f:
        magic = f.read(6)
    media_type = OCI_LAYER
    opener: Callable[[Path], IO[bytes]] = _plain
    if magic.startswith(b"\x1f\x8b"):
        media_type = OCI_LAYER + "+gzip"
    elif magic.startswith(b"\x28\xb5\x2f\xfd"):
        media_type = OCI_LAYER + "+zstd"
    elif magic.startswith(b"\xfd7zXZ\x00"):
        opener = _xz
    elif magic.startswith(b"BZh"):
        opener = _bz2
    tmp = blobs / ".incoming"
    h = hashlib.sha256()
    try:
        with opener(src) as inp, open(tmp, "wb") as out:
            while chunk := inp.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise ImageError(f"{where}: cannot read layer {src.name}: {e}") from None
    digest = "sha256:" + h.hexdigest()
    size = tmp.stat().st_size
    tmp.rename(blobs / h.hexdigest())
    diff_id = digest
    if media_type.endswith("+gzip"):
        dh = hashlib.sha256()
        try:
            with gzip.open(blobs / h.hexdigest()) as g:
                while chunk := g.read(1 << 20):
                    dh.update(chunk)
        except (OSError, EOFError, zlib.error) as e:
            raise ImageError(f"{where}: layer {src.name} is not valid gzip: {e}") from None
        diff_id = "sha256:" + dh.hexdigest()
    return digest, size, diff_id, media_type


def _plain(path: Path) -> IO[bytes]:
    return open(path, "rb")


def _xz(path: Path) -> IO[bytes]:
    return lzma.open(path, "rb")


def _bz2(path: Path) -> IO[bytes]:
    return bz2.open(path, "rb")


DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The `PATH` of an image made from a plain rootfs tarball, which has no config to say one:
Docker's default, so that programs looking themselves up in PATH (cmake) work."""


def _rootfs_config(diff_ids: list[str]) -> bytes:
    plat = host_platform()
    config = {
        "architecture": plat.architecture,
        "os": plat.os,
        "config": {"Env": [DEFAULT_PATH]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return json.dumps(config).encode()
