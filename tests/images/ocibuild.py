"""Build small test images by hand: tar layers and OCI image layout directories."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obuilder_core.process import run_cmd

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class Entry:
    """One tar member: kind is "file", "dir", "symlink", "hardlink", "char" or "fifo"."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0


def file(name: str, data: bytes | str = b"", mode: int = 0o644, uid: int = 0) -> Entry:
    """A regular file entry."""
    return Entry(name, "file", data.encode() if isinstance(data, str) else data, mode=mode, uid=uid)


def directory(name: str, mode: int = 0o755) -> Entry:
    """A directory entry."""
    return Entry(name, "dir", mode=mode)


def symlink(name: str, target: str) -> Entry:
    """A symlink entry pointing at `target`."""
    return Entry(name, "symlink", link=target)


def hardlink(name: str, target: str) -> Entry:
    """A hard link entry to archive member `target`."""
    return Entry(name, "hardlink", link=target)


def layer_tar(entries: list[Entry]) -> bytes:
    """An uncompressed tar of `entries`, in the given order, with fixed mtimes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mtime = 1_000_000
            info.uid, info.gid = e.uid, e.gid
            kinds = {
                "file": tarfile.REGTYPE,
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "char": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }
            info.type = kinds[e.kind]
            info.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            info.linkname = e.link
            if e.kind == "char":
                info.devmajor, info.devminor = 1, 3
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def compress(data: bytes, how: str | None) -> bytes:
    """`data` compressed with "gzip", "zstd" (the zstd CLI) or not at all (None)."""
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return run_cmd(["zstd", "-q", "-c"], input=data).stdout
    return data


def _put(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}"


def write_image(
    layout: Path,
    layers: list[list[Entry]],
    *,
    compression: str | None = "gzip",
    config: dict[str, Any] | None = None,
    arch: str = "amd64",
) -> dict[str, Any]:
    """Write one image's blobs into `layout`; returns its manifest descriptor (with platform)."""
    descs, diff_ids = [], []
    for entries in layers:
        tar = layer_tar(entries)
        blob = compress(tar, compression)
        suffix = f"+{compression}" if compression else ""
        descs.append(
            {"mediaType": OCI_LAYER + suffix, "digest": _put(layout, blob), "size": len(blob)}
        )
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    cfg = {
        "architecture": arch,
        "os": "linux",
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    cfg_bytes = json.dumps(cfg).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _put(layout, cfg_bytes),
            "size": len(cfg_bytes),
        },
        "layers": descs,
    }
    data = json.dumps(manifest).encode()
    return {
        "mediaType": manifest["mediaType"],
        "digest": _put(layout, data),
        "size": len(data),
        "platform": {"architecture": arch, "os": "linux"},
    }


def write_layout(layout: Path, manifests: list[dict[str, Any]], *, nested: bool = False) -> str:
    """Write `index.json` listing `manifests` (through a nested index blob if `nested`).

    Returns the digest of the single top-level descriptor (the image or the nested index).
    """
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    if nested:
        inner = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": manifests,
            }
        ).encode()
        manifests = [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": _put(layout, inner),
                "size": len(inner),
            }
        ]
    index = {"schemaVersion": 2, "manifests": manifests}
    (layout / "index.json").write_text(json.dumps(index))
    return str(manifests[0]["digest"])


def simple_layout(
    layout: Path,
    layers: list[list[Entry]],
    *,
    compression: str | None = "gzip",
    config: dict[str, Any] | None = None,
) -> str:
    """A one-image layout; returns the manifest digest."""
    desc = write_image(layout, layers, compression=compression, config=config)
    return write_layout(layout, [desc])


def tree(root: Path) -> dict[str, str]:
    """What a user would check of a rootfs: each path -> kind and content / link target."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = f"-> {p.readlink()}"
        elif p.is_dir():
            out[rel] = "dir"
        elif p.is_file():
            out[rel] = p.read_bytes().decode(errors="replace")
        else:
            out[rel] = "special"
    return out
