"""Helpers for the registry cache tests: a "machine" (a builder on a store of its own), reading
and forging cache entries in the real registry, and an HTTP front that stands between a
builder and the registry to refuse or authenticate requests."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import tarfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from obuilder_core.builder import Builder
from obuilder_core.images.distribution import RegistryClient
from obuilder_core.images.oci import OCI_MANIFEST, Descriptor, sha256_digest
from obuilder_core.remote.registry_cache import STEP_CONFIG, STEP_LAYER, STEP_LOG, tag_of
from tests.builder.helpers import kill_leftovers, make_builder
from tests.builder.wrappers import CountingSandbox
from tests.fixtures.root import require_root, require_tool


@contextlib.contextmanager
def machine(store: Path | str, busybox_oci: Path | None, **options: Any) -> Iterator[Builder]:
    """A builder with a counting runc sandbox on store `store` (a `KIND:ARG`, or a directory
    for an rsync store), closed at the end; busybox is imported only if `busybox_oci` is
    given; `options` go to `Builder.open`."""
    require_root()
    require_tool("runc")
    spec = store if isinstance(store, str) else f"rsync:{store}"
    if busybox_oci is not None:
        make_builder(spec, busybox_oci).close()
    builder = Builder.open(spec, **options)
    builder.sandbox = CountingSandbox(builder.sandbox)  # type: ignore[assignment]
    try:
        yield builder
    finally:
        kill_leftovers(builder)
        builder.close()


def executions(builder: Builder) -> int:
    """How many commands (run steps, and the unpacking of copies) the machine executed."""
    return len(builder.sandbox.argvs)  # type: ignore[attr-defined]


def client(host: str, repo: str) -> RegistryClient:
    return RegistryClient(f"http://{host}", repo, push=True)


def entry(host: str, repo: str, id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest and config of step `id`'s entry."""
    c = client(host, repo)
    data, _ = c.manifest(tag_of(id), pinned=None, accept=OCI_MANIFEST)
    manifest = json.loads(data)
    config = json.loads(c.small_blob(Descriptor.parse(manifest["config"], "test"), "config"))
    return manifest, config


def layer_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """A gzip'd tar of `members` (infos and their file contents)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return gzip.compress(raw.getvalue(), mtime=0)


def forge_entry(
    host: str,
    repo: str,
    id: str,
    parent: str | None,
    layer: bytes,
    *,
    diff_id: str | None = None,
    config_changes: dict[str, Any] | None = None,
) -> None:
    """Push an entry for step `id` whose layer is `layer` (gzip'd tar), with every digest
    right unless told otherwise: a registry user with push rights can write this."""
    c = client(host, repo)
    if diff_id is None:
        diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    config = {
        "format": 1,
        "id": id,
        "parent": parent,
        "root": {"mode": 0o40755, "uid": 0, "gid": 0, "mtime_ns": 0},
        "files": {"image.json": base64.b64encode(b"{}").decode()} if parent is None else {},
        "layer_diff_id": diff_id,
        **(config_changes or {}),
    }
    blobs = {
        STEP_CONFIG: json.dumps(config).encode(),
        STEP_LAYER: layer,
        STEP_LOG: b"forged log\n",
    }
    descs = {t: Descriptor(t, sha256_digest(b), len(b)) for t, b in blobs.items()}
    for t, b in blobs.items():
        c.upload_blob(descs[t], lambda b=b: b)  # type: ignore[misc]

    def d(desc: Descriptor) -> dict[str, Any]:
        return {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}

    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": d(descs[STEP_CONFIG]),
        "layers": [d(descs[STEP_LAYER]), d(descs[STEP_LOG])],
    }
    c.put_manifest(tag_of(id), json.dumps(manifest).encode(), OCI_MANIFEST)


Answer = tuple[int, dict[str, str], bytes]
Decide = Callable[[BaseHTTPRequestHandler], Answer | None]
"""Looks at a request: None to forward it to the registry, else (status, headers, body)."""
DENIED = b'{"errors":[{"code":"DENIED"}]}'


@contextlib.contextmanager
def front(upstream: str, decide: Decide) -> Iterator[str]:
    """An HTTP front on 127.0.0.1 forwarding to registry `upstream` (`HOST:PORT`) whatever
    `decide` lets through, rewriting upload Locations to itself; yields its `HOST:PORT`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def handle_any(self) -> None:
            answer = decide(self)
            if answer is not None:
                status, headers, body = answer
                self.reply(status, body, headers)
                return
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else None
            req = urllib.request.Request(
                f"http://{upstream}{self.path}", data=data, method=self.command
            )
            for name in ("Content-Type", "Accept"):
                if name in self.headers:
                    req.add_header(name, self.headers[name])
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    self.reply(resp.status, resp.read(), self.forwarded(resp.headers))
            except urllib.error.HTTPError as e:
                self.reply(e.code, e.read(), self.forwarded(e.headers))

        def forwarded(self, headers: Any) -> dict[str, str]:
            out = {k: v for k, v in headers.items() if k in ("Content-Type", "Location",
                   "Docker-Content-Digest", "Docker-Upload-UUID", "Range")}  # fmt: skip
            if "Location" in out:
                out["Location"] = out["Location"].replace(upstream, self.headers["Host"])
            return out

        def reply(self, code: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
