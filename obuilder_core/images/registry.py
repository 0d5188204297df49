"""Pull images from an OCI registry over the Distribution HTTP API v2 (urllib only).

Docker Hub is the default (`busybox` means registry-1.docker.io/library/busybox); a mirror URL
may replace it. Anonymous bearer tokens are fetched on a `WWW-Authenticate` challenge. Every
blob is downloaded to a temporary file and checked against its digest (and size) before a single
byte of it is unpacked; manifests fetched by digest are checked too.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPResponse
from pathlib import Path

from obuilder_core.images.base import ImageConfig, ImageError, ImageNotFound
from obuilder_core.images.layers import apply_layers
from obuilder_core.images.oci import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    Platform,
    choose_manifest,
    load_json,
    media_type_of,
    parse_manifest,
    sha256_digest,
)
from obuilder_core.images.ref import DOCKER_HUB, ImageRef, parse_ref
from obuilder_core.log import ByteCounter, Emit, Progress

DOCKER_HUB_URL = "https://registry-1.docker.io"
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
_MAX_MANIFEST = 4 << 20
_CHUNK = 1 << 20


def is_loopback(host: str) -> bool:
    """True for localhost / 127.0.0.0/8 / ::1, with or without a port."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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
        if ref.registry == DOCKER_HUB:
            url = (self.mirror or DOCKER_HUB_URL).rstrip("/")
        else:
            scheme = "http" if is_loopback(ref.registry) else "https"
            url = f"{scheme}://{ref.registry}"
        self._check_scheme(url, "registry")
        return url

    def fetch(
        self, name: str, rootfs: Path, log: Emit, progress: Progress | None = None
    ) -> ImageConfig:
        """ImageSource.fetch from the image's registry (or the mirror, for Docker Hub names);
        `progress` gets the bytes of layers downloaded so far, after each MiB."""
        ref = parse_ref(name)
        base = self.endpoint(ref)
        host = urllib.parse.urlsplit(base).netloc
        client = _Client(base, ref.repository, f"registry {host}", self)
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

    def _check_scheme(self, url: str, what: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ImageError(f"invalid {what} URL {url!r}: expected http(s)://HOST[:PORT]")
        if parts.scheme == "http" and not (self.allow_http or is_loopback(parts.netloc)):
            raise ImageError(
                f"refusing plain http to {what} {parts.netloc}: only loopback hosts may use"
                " http unless insecure registries are allowed"
            )


def _resolve(client: _Client, ref: ImageRef, want: Platform | None, log: Emit) -> Manifest:
    """Fetch the image manifest for `ref`, going through an index if there is one."""
    data, ctype = client.manifest(ref.reference, pinned=ref.digest)
    # Logged so that users can pin the tag they got (`name@sha256:...`).
    log(f"digest {sha256_digest(data)}\n".encode())
    doc = load_json(data, client.where, "manifest")
    media_type = media_type_of(doc, ctype)
    if media_type in INDEX_TYPES:
        desc = choose_manifest(doc, client.where, want)
        log(f"index: chose {desc.platform or 'the only manifest'} {desc.digest}\n".encode())
        data, ctype = client.manifest(desc.digest, pinned=desc.digest)
        doc = load_json(data, client.where, "manifest")
        media_type = media_type_of(doc, ctype)
    if media_type not in MANIFEST_TYPES:
        raise ImageError(f"{client.where}: unsupported manifest type {media_type}")
    return parse_manifest(doc, client.where)


class _Client:
    """HTTP calls for one repository on one registry, with bearer-token auth."""

    def __init__(self, base: str, repository: str, where: str, registry: Registry) -> None:
        self.base = base
        self.repository = repository
        self.where = where
        self.registry = registry
        self.token: str | None = None
        self.opener = urllib.request.build_opener()

    def manifest(self, reference: str, *, pinned: str | None) -> tuple[bytes, str | None]:
        """A manifest's bytes and Content-Type; checked against `pinned` when given."""
        what = f"{self.repository}:{reference}" if not pinned else f"{self.repository}@{pinned}"
        with self.get(f"manifests/{reference}", ACCEPT, what) as resp:
            data = resp.read(_MAX_MANIFEST + 1)
            ctype = resp.headers.get("Content-Type")
        if len(data) > _MAX_MANIFEST:
            raise ImageError(f"{self.where}: manifest {what} is larger than 4 MiB")
        if pinned and sha256_digest(data) != pinned:
            got = sha256_digest(data)
            raise ImageError(f"{self.where}: manifest {pinned} digest mismatch (got {got})")
        return data, ctype

    def small_blob(self, desc: Descriptor, what: str) -> bytes:
        """A small blob (the config) in memory, verified."""
        if desc.size > _MAX_MANIFEST:
            raise ImageError(f"{self.where}: {what} blob {desc.digest} is implausibly large")
        with self.get(f"blobs/{desc.digest}", None, f"blob {desc.digest}") as resp:
            data = resp.read(desc.size + 1)
        self._verify(desc, hashlib.sha256(data).hexdigest(), len(data))
        return data

    def download(
        self, desc: Descriptor, dest: Path, downloaded: Callable[[int], None] = lambda n: None
    ) -> Path:
        """Download blob `desc` to `dest`, verifying size and digest before returning;
        `downloaded` gets the size of each chunk as it arrives."""
        h, size = hashlib.sha256(), 0
        resp = self.get(f"blobs/{desc.digest}", None, f"blob {desc.digest}")
        try:
            with resp, open(dest, "wb") as out:
                # Read at most one byte past the promised size: an endless body cannot fill
                # the disk, and a longer one is a mismatch.
                while size <= desc.size and (chunk := resp.read(min(_CHUNK, desc.size + 1 - size))):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    downloaded(len(chunk))
        except (OSError, http.client.HTTPException) as e:
            raise ImageError(f"{self.where}: download of blob {desc.digest} failed: {e}") from None
        self._verify(desc, h.hexdigest(), size)
        return dest

    def _verify(self, desc: Descriptor, hexdigest: str, size: int) -> None:
        if f"sha256:{hexdigest}" != desc.digest:
            raise ImageError(
                f"{self.where}: blob {desc.digest} digest mismatch (got sha256:{hexdigest})"
            )
        if size != desc.size:
            raise ImageError(f"{self.where}: blob {desc.digest} size mismatch ({size} bytes)")

    def get(self, path: str, accept: str | None, what: str) -> HTTPResponse:
        """GET `/v2/<repo>/<path>`, authenticating once on a 401 challenge."""
        url = f"{self.base}/v2/{self.repository}/{path}"
        try:
            return self._open(url, accept)
        except urllib.error.HTTPError as e:
            if e.code != 401 or self.token is not None:
                raise self._http_error(e, what) from None
            self.token = self._get_token(e.headers.get("WWW-Authenticate", ""))
        try:
            return self._open(url, accept)
        except urllib.error.HTTPError as e:
            raise self._http_error(e, what) from None

    def _open(self, url: str, accept: str | None) -> HTTPResponse:
        req = urllib.request.Request(url)
        if accept:
            req.add_header("Accept", accept)
        if self.token:
            # Unredirected: blob redirects to a CDN or S3 must not carry (or be refused for)
            # the registry's token.
            req.add_unredirected_header("Authorization", f"Bearer {self.token}")
        return self._call(lambda: self.opener.open(req, timeout=self.registry.timeout))

    def _call(self, fn: Callable[[], HTTPResponse]) -> HTTPResponse:
        try:
            return fn()
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError as e:
            reason = getattr(e.reason, "strerror", None) or e.reason
            raise ImageNotFound(f"{self.where}: cannot connect: {reason}") from None
        except TimeoutError:
            raise ImageNotFound(f"{self.where}: timed out") from None
        except OSError as e:
            raise ImageNotFound(f"{self.where}: cannot connect: {e.strerror or e}") from None

    def _get_token(self, challenge: str) -> str:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() != "bearer":
            raise ImageError(
                f"{self.where}: registry asks for {scheme or 'unknown'} authentication;"
                " only anonymous bearer tokens are supported"
            )
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.pop("realm", "")
        self.registry._check_scheme(realm, "token server")
        fields.setdefault("scope", f"repository:{self.repository}:pull")
        url = f"{realm}?{urllib.parse.urlencode(fields)}"
        try:
            with self._call(lambda: self.opener.open(url, timeout=self.registry.timeout)) as r:
                body = load_json(r.read(_MAX_MANIFEST), self.where, "token response")
        except urllib.error.HTTPError as e:
            raise ImageError(f"{self.where}: token server {realm} said HTTP {e.code}") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise ImageError(f"{self.where}: token server {realm} returned no token")
        return token

    def _http_error(self, e: urllib.error.HTTPError, what: str) -> ImageError:
        detail = _error_detail(e)
        if e.code == 404:
            return ImageNotFound(f"{self.where}: {detail or 'not found'}: {what}")
        if e.code in (401, 403):
            return ImageNotFound(
                f"{self.where}: access denied to {self.repository} ({detail or e.code}); private"
                " images are not supported"
            )
        return ImageError(f"{self.where}: {what}: HTTP {e.code} {detail or e.reason}")


def _error_detail(e: urllib.error.HTTPError) -> str:
    """`manifest unknown` from a registry's `{"errors": [{"code", "message"}]}` body."""
    try:
        body = json.loads(e.read(65536) or b"{}")
        first = body["errors"][0]
        return str(first.get("message") or first.get("code", "")).strip()
    except (ValueError, LookupError, TypeError, AttributeError, OSError):
        return ""
