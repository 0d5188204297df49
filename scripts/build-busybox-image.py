#!/usr/bin/env python3
"""Build a small busybox base image as an OCI image layout directory.

Usage: build-busybox-image.py [--busybox PATH] OUTDIR

The image holds Debian's statically linked busybox (package `busybox-static`) at /bin/busybox,
one relative symlink per applet (`busybox --list-full`), /etc/passwd and /etc/group (root,
nobody/nogroup, user 1000), /tmp (1777) and an image config whose Env sets PATH. The output is
byte-for-byte deterministic (fixed mtimes and owners, sorted entries, gzip without a timestamp),
so its digest only changes when busybox does. If OUTDIR already holds the image built from the
same busybox by this version of the script, nothing is done.

Only the standard library is used, so the script runs with any Python 3.11.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Bump when the image contents change for the same busybox binary.
SCRIPT_VERSION = "1"
INPUT_ANNOTATION = "org.pytest-obuilder.busybox.input"
EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    "user:x:1000:1000:user:/home/user:/bin/sh\n"
)
GROUP = "root:x:0:\nnogroup:x:65534:\nuser:x:1000:\n"

# (path, mode, uid, gid) of the directories of the image, besides the applets' parents.
DIRECTORIES = [
    ("bin", 0o755, 0, 0),
    ("dev", 0o755, 0, 0),
    ("etc", 0o755, 0, 0),
    ("home", 0o755, 0, 0),
    ("home/user", 0o755, 1000, 1000),
    ("proc", 0o555, 0, 0),
    ("root", 0o700, 0, 0),
    ("sbin", 0o755, 0, 0),
    ("sys", 0o555, 0, 0),
    ("tmp", 0o1777, 0, 0),
    ("usr", 0o755, 0, 0),
    ("usr/bin", 0o755, 0, 0),
    ("usr/sbin", 0o755, 0, 0),
    ("var", 0o755, 0, 0),
]

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}


class BuildError(Exception):
    """A problem the user can fix (missing busybox, unwritable OUTDIR); printed as one line."""


@dataclass(frozen=True)
class Blob:
    """Content-addressed bytes for the layout's blobs/sha256/ directory."""

    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self, **extra: object) -> dict[str, object]:
        desc = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        return {**desc, **extra}


def canonical_json(value: object) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def list_applets(busybox: Path) -> list[str]:
    """The applet paths busybox installs itself as, relative to / (e.g. `usr/bin/id`)."""
    try:
        out = subprocess.run(
            [str(busybox), "--list-full"], capture_output=True, check=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise BuildError(f"{busybox} --list-full failed: {e}") from None
    applets = sorted({line.strip().lstrip("/") for line in out.splitlines() if line.strip()})
    return [a for a in applets if a != "bin/busybox"]


def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""  # numeric owners only: never mapped through the host's names
    info.mtime = EPOCH
    return info


def layer_tar(busybox_bytes: bytes, applets: list[str]) -> bytes:
    """The uncompressed layer: directories, files and applet symlinks, sorted by name."""
    entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    for name, mode, uid, gid in DIRECTORIES:
        entries[name] = (_info(name, tarfile.DIRTYPE, mode, uid, gid), None)
    files = {
        "bin/busybox": (busybox_bytes, 0o755),
        "etc/passwd": (PASSWD.encode(), 0o644),
        "etc/group": (GROUP.encode(), 0o644),
    }
    for name, (data, mode) in files.items():
        info = _info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        entries[name] = (info, data)
    for applet in applets:
        parent = os.path.dirname(applet)
        if parent and parent not in entries:
            raise BuildError(f"applet {applet} lives in {parent}/, which the image lacks")
        info = _info(applet, tarfile.SYMTYPE, 0o777)
        info.linkname = os.path.relpath("bin/busybox", parent or ".")
        entries[applet] = (info, None)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(entries):
            info, data = entries[name]
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip without a file name or timestamp, so equal input gives equal output."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def build_blobs(busybox: Path, input_key: str) -> tuple[dict[str, object], list[Blob]]:
    """The index.json document and every blob of the image."""
    busybox_bytes = busybox.read_bytes()
    tar = layer_tar(busybox_bytes, list_applets(busybox))
    layer = Blob(gzip_bytes(tar), MEDIA_LAYER)
    arch = GOARCH.get(platform.machine(), platform.machine())
    config = Blob(
        canonical_json(
            {
                "architecture": arch,
                "os": "linux",
                "created": CREATED,
                "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()],
                },
                "history": [{"created": CREATED, "created_by": "scripts/build-busybox-image.py"}],
            }
        ),
        MEDIA_CONFIG,
    )
    manifest = Blob(
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            }
        ),
        MEDIA_MANIFEST,
    )
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            manifest.descriptor(
                platform={"architecture": arch, "os": "linux"},
                annotations={"org.opencontainers.image.ref.name": "latest"},
            )
        ],
        "annotations": {INPUT_ANNOTATION: input_key},
    }
    return index, [layer, config, manifest]


def input_key(busybox: Path) -> str:
    """What the image is a function of: the busybox binary, this script's version, the arch."""
    h = hashlib.sha256()
    h.update(f"{SCRIPT_VERSION}\0{platform.machine()}\0".encode())
    h.update(busybox.read_bytes())
    return h.hexdigest()


def up_to_date(outdir: Path, key: str) -> bool:
    """True if `outdir` is a complete layout built from the same inputs."""
    try:
        index = json.loads((outdir / "index.json").read_text())
        if index.get("annotations", {}).get(INPUT_ANNOTATION) != key:
            return False
        if not (outdir / "oci-layout").is_file():
            return False
        manifest_desc = index["manifests"][0]
        manifest = json.loads(_blob_path(outdir, manifest_desc["digest"]).read_text())
        descs = [manifest_desc, manifest["config"], *manifest["layers"]]
        return all(_blob_path(outdir, d["digest"]).stat().st_size == d["size"] for d in descs)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False


def _blob_path(outdir: Path, digest: str) -> Path:
    algo, _, hexdigest = digest.partition(":")
    return outdir / "blobs" / algo / hexdigest


def write_layout(tmp: Path, index: dict[str, object], blobs: list[Blob]) -> None:
    """Write an OCI image layout (oci-layout, index.json, blobs/sha256/*) into `tmp`."""
    (tmp / "blobs" / "sha256").mkdir(parents=True)
    for blob in blobs:
        _blob_path(tmp, blob.digest).write_bytes(blob.data)
    (tmp / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    (tmp / "index.json").write_bytes(canonical_json(index))
    for path in [tmp, *tmp.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def build(outdir: Path, busybox: Path) -> bool:
    """Build the image into `outdir` unless it is up to date; return True if work was done.

    The layout is written to a sibling temporary directory and renamed into place, so a reader
    (or a concurrent build) never sees a half-written image.
    """
    if not busybox.is_file():
        raise BuildError(f"{busybox} not found (install Debian's busybox-static)")
    key = input_key(busybox)
    if up_to_date(outdir, key):
        return False
    index, blobs = build_blobs(busybox, key)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=outdir.parent))
    try:
        write_layout(tmp, index, blobs)
        if outdir.exists():
            old = outdir.with_name(f".{outdir.name}.old-{os.getpid()}")
            os.rename(outdir, old)
            shutil.rmtree(old)
        os.rename(tmp, outdir)
    except OSError as e:
        if up_to_date(outdir, key):  # a concurrent build got there first
            return False
        raise BuildError(f"cannot write {outdir}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="OCI image layout directory to create")
    parser.add_argument(
        "--busybox",
        type=Path,
        default=Path("/bin/busybox"),
        help="statically linked busybox binary (default: /bin/busybox)",
    )
    args = parser.parse_args(argv)
    try:
        built = build(args.outdir, args.busybox)
    except BuildError as e:
        print(f"build-busybox-image: {e}", file=sys.stderr)
        return 1
    print(f"{'built' if built else 'up to date:'} {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
