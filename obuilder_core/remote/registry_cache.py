"""A RemoteCache in any OCI registry (the Distribution API v2), as BuildKit's registry cache.

Layout: step `ID` is the OCI image manifest tagged `step-ID` in the cache's repository, with

- config (`application/vnd.obuilder.step.v1+json`): `{"format": 1, "id", "parent", "root":
  {mode, uid, gid, mtime_ns}, "files": {NAME: base64}, "layer_diff_id"}`; `files` are the
  step's own small files beside its rootfs (a base image's `image.json`);
- layer 0 (`application/vnd.oci.image.layer.v1.tar+gzip`): the step's change against its parent
  (`images.layer_writer`: whiteouts for deletions), a standard layer that image tools read;
- layer 1 (`application/vnd.obuilder.step.log.v1`): the step's log, replayed on a hit.

Blobs are uploaded first, the manifest last: an interrupted push leaves no tag a reader could
take. A reader trusts the tag's manifest as far as its ids: every blob is checked against its
digest and size, the config must name the step and the parent asked for, the layer's
uncompressed digest must match, and the layer is applied with the containment of image layers
(no `..`, absolute paths or writes through symlinks).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from obuilder_core.errors import ObuilderError
from obuilder_core.images.distribution import (
    Missing,
    RegistryClient,
    Unreachable,
    registry_url,
)
from obuilder_core.images.layer_writer import write_layer
from obuilder_core.images.layers import apply_layer
from obuilder_core.images.oci import OCI_MANIFEST, Descriptor, load_json, sha256_digest
from obuilder_core.remote.base import Pulled, RemoteError, RemoteUnreachable
from obuilder_core.remote.ref import parse_cache_ref

STEP_CONFIG = "application/vnd.obuilder.step.v1+json"
STEP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
STEP_LOG = "application/vnd.obuilder.step.log.v1"
FORMAT = 1
MAX_FILE = 1 << 20
"""Largest step file (beside rootfs and log) carried in the config."""
NOT_CARRIED = ("log", "rootfs", "pulled-from")
"""What of a step's own dir is not a step file: its tree, its log, where it was pulled from."""


def tag_of(id: str) -> str:
    return f"step-{id}"


class RegistryCache:
    """Step results in repository `ref` of a registry (see the module docstring).

    `allow_http`: plain http to a non-loopback host (`--insecure-registry`).
    """

    def __init__(self, ref: str, *, allow_http: bool = False, timeout: float = 20.0) -> None:
        self.ref = parse_cache_ref(ref)
        self.label = f"registry cache {self.ref}"
        self._allow_http = allow_http
        self._timeout = timeout

    def _client(self, *, push: bool) -> RegistryClient:
        base = registry_url(self.ref.host, allow_http=self._allow_http)
        return RegistryClient(
            base,
            self.ref.repository,
            where=self.label,
            timeout=self._timeout,
            allow_http=self._allow_http,
            push=push,
        )

    # -- pull ---------------------------------------------------------------------------------

    def pull(self, id: str, parent: str | None, scratch: Path) -> Pulled | None:
        """RemoteCache.pull."""
        client = self._client(push=False)
        try:
            data, _ = client.manifest(tag_of(id), pinned=None, accept=OCI_MANIFEST)
            manifest = load_json(data, self.label, "manifest")
            config_desc, layer_desc, log_desc = _descriptors(manifest, self.label)
            where = f"{self.label}: manifest {sha256_digest(data)}"
            config = load_json(client.small_blob(config_desc, "config"), where, "config")
            _check_config(config, id, parent, where)
            layer = client.download(layer_desc, scratch / "layer.tar.gz")
            log = client.download(log_desc, scratch / "log")
        except Missing:
            return None  # not in this cache
        except Unreachable as e:
            raise RemoteUnreachable(str(e)) from None
        except ObuilderError as e:
            raise RemoteError(str(e)) from None
        _check_diff_id(layer, config["layer_diff_id"], where)

        def apply(step_dir: Path) -> None:
            rootfs = step_dir / "rootfs"
            rootfs.mkdir(mode=0o755, exist_ok=True)
            apply_layer(rootfs, layer, where=where)
            _set_root(rootfs, config["root"])
            for name, content in config["files"].items():
                (step_dir / name).write_bytes(base64.b64decode(content))
            shutil.move(log, step_dir / "log")  # a copy across btrfs subvolumes

        return Pulled(self.label, apply)

    # -- push ---------------------------------------------------------------------------------

    def push(
        self,
        id: str,
        parent: str | None,
        files: Path,
        rootfs: Path,
        parent_rootfs: Path | None,
        scratch: Path,
    ) -> bool:
        """RemoteCache.push."""
        client = self._client(push=True)
        try:
            if client.exists("manifests", tag_of(id), accept=OCI_MANIFEST):
                return False
            layer_path = scratch / "layer.tar.gz"
            layer = write_layer(parent_rootfs, rootfs, layer_path)
            config = _config(id, parent, files, rootfs, layer.diff_id)
            config_desc = Descriptor(STEP_CONFIG, sha256_digest(config), len(config))
            layer_desc = Descriptor(STEP_LAYER, layer.digest, layer.size)
            log_path = files / "log"
            log_desc = Descriptor(STEP_LOG, _file_digest(log_path), log_path.stat().st_size)
            # urllib reads and closes the files it is given as bodies.
            client.upload_blob(layer_desc, lambda: open(layer_path, "rb"))  # noqa: SIM115
            client.upload_blob(log_desc, lambda: open(log_path, "rb"))  # noqa: SIM115
            client.upload_blob(config_desc, lambda: config)
            manifest = _manifest(config_desc, layer_desc, log_desc, id, parent)
            client.put_manifest(tag_of(id), manifest, OCI_MANIFEST)  # last: the entry appears
        except Unreachable as e:
            raise RemoteUnreachable(str(e)) from None
        except (ObuilderError, OSError) as e:
            raise RemoteError(f"cannot push step {id}: {e}") from None
        return True


def _descriptors(manifest: Any, where: str) -> tuple[Descriptor, Descriptor, Descriptor]:
    """The config, layer and log descriptors of a step manifest."""
    try:
        config = Descriptor.parse(manifest["config"], where)
        layers = [Descriptor.parse(d, where) for d in manifest["layers"]]
    except (KeyError, TypeError):
        raise RemoteError(f"{where}: not a step manifest") from None
    types = (config.media_type, *(d.media_type for d in layers))
    if types != (STEP_CONFIG, STEP_LAYER, STEP_LOG):
        raise RemoteError(f"{where}: not a step manifest (media types {', '.join(types)})")
    return config, layers[0], layers[1]


def _check_config(config: Any, id: str, parent: str | None, where: str) -> None:
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise RemoteError(f"{where}: unknown step format (want {FORMAT})")
    if config.get("id") != id:
        raise RemoteError(f"{where}: names step {config.get('id')!r}, not {id}")
    if config.get("parent") != parent:
        raise RemoteError(
            f"{where}: step {id} is built on {config.get('parent')!r}, not on {parent!r}"
        )
    root, files = config.get("root"), config.get("files")
    if not isinstance(root, dict) or not all(
        isinstance(root.get(k), int) for k in ("mode", "uid", "gid", "mtime_ns")
    ):
        raise RemoteError(f"{where}: bad root metadata")
    names_ok = isinstance(files, dict) and all(
        isinstance(n, str)
        and isinstance(v, str)
        and "/" not in n
        and n not in ("", ".", "..", "log", "rootfs")
        for n, v in files.items()
    )
    if not names_ok or not isinstance(config.get("layer_diff_id"), str):
        raise RemoteError(f"{where}: bad step files")


def _check_diff_id(layer: Path, diff_id: str, where: str) -> None:
    h = hashlib.sha256()
    try:
        with gzip.open(layer, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise RemoteError(f"{where}: layer is not a valid gzip stream: {e}") from None
    if f"sha256:{h.hexdigest()}" != diff_id:
        raise RemoteError(f"{where}: layer's uncompressed digest is not {diff_id}")


def _set_root(rootfs: Path, root: dict[str, int]) -> None:
    os.chown(rootfs, root["uid"], root["gid"])
    os.chmod(rootfs, stat.S_IMODE(root["mode"]))
    os.utime(rootfs, ns=(root["mtime_ns"], root["mtime_ns"]))


def _config(id: str, parent: str | None, files: Path, rootfs: Path, diff_id: str) -> bytes:
    st = os.lstat(rootfs)
    carried = {
        p.name: base64.b64encode(p.read_bytes()).decode()
        for p in sorted(files.iterdir())
        if p.name not in NOT_CARRIED and p.is_file() and p.stat().st_size <= MAX_FILE
    }
    doc = {
        "format": FORMAT,
        "id": id,
        "parent": parent,
        "root": {
            "mode": st.st_mode,
            "uid": st.st_uid,
            "gid": st.st_gid,
            "mtime_ns": st.st_mtime_ns,
        },
        "files": carried,
        "layer_diff_id": diff_id,
    }
    return json.dumps(doc, sort_keys=True).encode()


def _manifest(
    config: Descriptor, layer: Descriptor, log: Descriptor, id: str, parent: str | None
) -> bytes:
    def d(desc: Descriptor) -> dict[str, Any]:
        return {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}

    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": d(config),
        "layers": [d(layer), d(log)],
        "annotations": {"dev.obuilder.step": id, "dev.obuilder.parent": parent or ""},
    }
    return json.dumps(doc, sort_keys=True).encode()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"
