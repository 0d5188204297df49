"""HTTP calls of the OCI Distribution API v2 for one repository (urllib only): manifests and
blobs, read and written, with the authentication registries use.

Authentication follows the registry's `WWW-Authenticate` challenge on a 401: `Basic` sends the
credentials; `Bearer` fetches a token from the challenge's realm for the repository's scope
(`pull`, or `pull,push` for writers), anonymously or with the credentials as HTTP basic, as the
distribution spec's token flow describes. Credentials come from the Docker config file
(`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`: `auths.HOST.auth`, base64 of
`user:password`) unless given. The Authorization header is never sent on redirects: blob
redirects to a CDN or S3 must not carry (and would be refused for) the registry's token.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path
from typing import IO, Any

from obuilder_core.images.base import ImageError, ImageNotFound
from obuilder_core.images.oci import Descriptor, load_json, sha256_digest

MAX_MANIFEST = 4 << 20
_CHUNK = 1 << 20
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or token) for a registry."""

    username: str
    password: str = ""

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def __repr__(self) -> str:
        return f"Credentials({self.username!r}, ...)"  # never the password


def docker_config_path() -> Path:
    """Where Docker keeps its client config: `$DOCKER_CONFIG/config.json` or ~/.docker."""
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def docker_credentials(host: str, config: Path | None = None) -> Credentials | None:
    """The credentials Docker's config file holds for registry `host`, if any.

    Reads `auths` entries keyed by the host (also as `https://HOST` or `HOST/v2/`); Docker Hub's
    key is `https://index.docker.io/v1/`. A malformed file is an ImageError naming it.
    """
    path = config or docker_config_path()
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ImageError(f"{path}: cannot read the Docker config: {e}") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if _auth_host(key) == _auth_host(host) and isinstance(entry, dict):
            return _entry_credentials(entry, path, key)
    return None


def _auth_host(key: str) -> str:
    if key in (DOCKER_HUB_AUTH_KEY, "docker.io", "registry-1.docker.io", "index.docker.io"):
        return "docker.io"
    parts = urllib.parse.urlsplit(key if "://" in key else f"//{key}")
    return parts.netloc or key


def _entry_credentials(entry: dict[str, Any], path: Path, key: str) -> Credentials | None:
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except ValueError:
            raise ImageError(f"{path}: auths.{key}.auth is not base64 of user:password") from None
        return Credentials(user, password)
    if isinstance(entry.get("username"), str):
        return Credentials(entry["username"], str(entry.get("password", "")))
    if isinstance(entry.get("identitytoken"), str):
        return Credentials("<token>", entry["identitytoken"])
    return None


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


def check_url(url: str, what: str, *, allow_http: bool) -> None:
    """ImageError unless `url` is https (or http to a loopback host, or with `allow_http`)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ImageError(f"invalid {what} URL {url!r}: expected http(s)://HOST[:PORT]")
    if parts.scheme == "http" and not (allow_http or is_loopback(parts.netloc)):
        raise ImageError(
            f"refusing plain http to {what} {parts.netloc}: only loopback hosts may use"
            " http unless insecure registries are allowed"
        )


def registry_url(host: str, *, allow_http: bool) -> str:
    """The base URL of registry `host`: https, or http for loopback hosts and, with
    `allow_http` (`--insecure-registry`), for any host."""
    scheme = "http" if is_loopback(host) or allow_http else "https"
    return f"{scheme}://{host}"


class Missing(ImageNotFound):
    """The registry answered 404: no such manifest or blob."""


class Unreachable(ImageNotFound):
    """The registry did not answer: connection refused, name unknown, timed out."""


Body = Callable[[], IO[bytes] | bytes]
"""Makes a request body afresh (a request may be sent twice: before and after auth)."""


class RegistryClient:
    """One repository on one registry (see the module docstring).

    `where` names the registry in errors (`registry HOST`); `push` asks tokens for pushing too;
    `credentials` default to Docker's config file for the host.
    """

    def __init__(
        self,
        base: str,
        repository: str,
        *,
        where: str | None = None,
        timeout: float = 60.0,
        allow_http: bool = False,
        push: bool = False,
        credentials: Credentials | None = None,
    ) -> None:
        self.base = base.rstrip("/")
        self.host = urllib.parse.urlsplit(self.base).netloc
        self.repository = repository
        self.where = where or f"registry {self.host}"
        self.timeout = timeout
        self.allow_http = allow_http
        self.actions = "pull,push" if push else "pull"
        self._credentials = credentials
        self._looked_up = credentials is not None
        self.authorization: str | None = None
        self.opener = urllib.request.build_opener()

    @property
    def credentials(self) -> Credentials | None:
        if not self._looked_up:
            self._credentials = docker_credentials(self.host)
            self._looked_up = True
        return self._credentials

    # -- reading ----------------------------------------------------------------------------

    def manifest(
        self, reference: str, *, pinned: str | None, accept: str
    ) -> tuple[bytes, str | None]:
        """A manifest's bytes and Content-Type; checked against `pinned` when given."""
        what = f"{self.repository}:{reference}" if not pinned else f"{self.repository}@{pinned}"
        with self.request("GET", f"manifests/{reference}", what, accept=accept) as resp:
            data = resp.read(MAX_MANIFEST + 1)
            ctype = resp.headers.get("Content-Type")
        if len(data) > MAX_MANIFEST:
            raise ImageError(f"{self.where}: manifest {what} is larger than 4 MiB")
        if pinned and sha256_digest(data) != pinned:
            got = sha256_digest(data)
            raise ImageError(f"{self.where}: manifest {pinned} digest mismatch (got {got})")
        return data, ctype

    def small_blob(self, desc: Descriptor, what: str) -> bytes:
        """A small blob (a config) in memory, verified."""
        if desc.size > MAX_MANIFEST:
            raise ImageError(f"{self.where}: {what} blob {desc.digest} is implausibly large")
        with self.request("GET", f"blobs/{desc.digest}", f"blob {desc.digest}") as resp:
            data = resp.read(desc.size + 1)
        self._verify(desc, hashlib.sha256(data).hexdigest(), len(data))
        return data

    def download(
        self, desc: Descriptor, dest: Path, downloaded: Callable[[int], None] = lambda n: None
    ) -> Path:
        """Download blob `desc` to `dest`, verifying size and digest before returning;
        `downloaded` gets the size of each chunk as it arrives."""
        h, size = hashlib.sha256(), 0
        resp = self.request("GET", f"blobs/{desc.digest}", f"blob {desc.digest}")
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

    def exists(self, kind: str, reference: str, accept: str | None = None) -> bool:
        """Whether `manifests/REF` or `blobs/DIGEST` (`kind`) exists (a HEAD request)."""
        what = f"{kind[:-1]} {reference}"
        try:
            self.request("HEAD", f"{kind}/{reference}", what, accept=accept).close()
        except Missing:
            return False
        return True

    # -- writing ----------------------------------------------------------------------------

    def upload_blob(self, desc: Descriptor, body: Body) -> None:
        """Upload blob `desc` unless the registry has it (POST an upload, PUT its bytes)."""
        if self.exists("blobs", desc.digest):
            return
        what = f"blob {desc.digest}"
        with self.request("POST", "blobs/uploads/", what, body=lambda: b"") as resp:
            location = resp.headers.get("Location")
        if not location:
            raise ImageError(f"{self.where}: upload of {what}: no Location in the answer")
        url = urllib.parse.urljoin(f"{self.base}/v2/{self.repository}/blobs/uploads/", location)
        sep = "&" if urllib.parse.urlsplit(url).query else "?"
        url += f"{sep}digest={urllib.parse.quote(desc.digest)}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        self.request("PUT", url, what, body=body, headers=headers).close()

    def put_manifest(self, tag: str, data: bytes, media_type: str) -> None:
        """Store manifest `data` under `tag` (its blobs must be uploaded first)."""
        headers = {"Content-Type": media_type}
        what = f"manifest {self.repository}:{tag}"
        self.request("PUT", f"manifests/{tag}", what, body=lambda: data, headers=headers).close()

    # -- HTTP ---------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        accept: str | None = None,
        body: Body | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTTPResponse:
        """`method` `/v2/<repo>/<path>` (or an absolute URL), authenticating once on a 401."""
        url = path if "://" in path else f"{self.base}/v2/{self.repository}/{path}"
        for attempt in (1, 2):
            req = urllib.request.Request(url, method=method, data=body() if body else None)
            for name, value in {
                **(headers or {}),
                **({"Accept": accept} if accept else {}),
            }.items():
                req.add_header(name, value)
            if self.authorization:
                req.add_unredirected_header("Authorization", self.authorization)
            try:
                return self._call(lambda req=req: self.opener.open(req, timeout=self.timeout))  # type: ignore[misc]
            except urllib.error.HTTPError as e:
                if e.code != 401 or attempt == 2:
                    raise self._http_error(e, what) from None
                self.authorization = self._authenticate(e.headers.get("WWW-Authenticate", ""))
        raise AssertionError("unreachable")

    def _call(self, fn: Callable[[], HTTPResponse]) -> HTTPResponse:
        try:
            return fn()
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError as e:
            reason = getattr(e.reason, "strerror", None) or e.reason
            raise Unreachable(f"{self.where}: cannot connect: {reason}") from None
        except TimeoutError:
            raise Unreachable(f"{self.where}: timed out") from None
        except (OSError, http.client.HTTPException) as e:
            raise Unreachable(
                f"{self.where}: cannot connect: {getattr(e, 'strerror', None) or e}"
            ) from None

    def _authenticate(self, challenge: str) -> str:
        scheme, _, params = challenge.partition(" ")
        creds = self.credentials
        if scheme.lower() == "basic":
            if creds is None:
                raise ImageNotFound(
                    f"{self.where}: access denied to {self.repository}: the registry wants a"
                    f" user name and password and {docker_config_path()} has none for {self.host}"
                )
            return creds.basic()
        if scheme.lower() != "bearer":
            raise ImageError(f"{self.where}: unsupported authentication {scheme or '(none)'}")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.pop("realm", "")
        check_url(realm, "token server", allow_http=self.allow_http)
        fields["scope"] = f"repository:{self.repository}:{self.actions}"
        req = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(fields)}")
        if creds is not None:
            req.add_unredirected_header("Authorization", creds.basic())
        try:
            with self._call(lambda: self.opener.open(req, timeout=self.timeout)) as r:
                answer = load_json(r.read(MAX_MANIFEST), self.where, "token response")
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise ImageNotFound(
                    f"{self.where}: access denied to {self.repository}: token server {realm}"
                    f" refused {'the credentials' if creds else 'anonymous access'}"
                    f"{self._no_credentials()}"
                ) from None
            raise ImageError(f"{self.where}: token server {realm} said HTTP {e.code}") from None
        token = (
            answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else None
        )
        if not isinstance(token, str):
            raise ImageError(f"{self.where}: token server {realm} returned no token")
        return f"Bearer {token}"

    def _no_credentials(self) -> str:
        if self.credentials is not None:
            return ""
        return f"; no credentials for {self.host} in {docker_config_path()}"

    def _verify(self, desc: Descriptor, hexdigest: str, size: int) -> None:
        if f"sha256:{hexdigest}" != desc.digest:
            raise ImageError(
                f"{self.where}: blob {desc.digest} digest mismatch (got sha256:{hexdigest})"
            )
        if size != desc.size:
            raise ImageError(f"{self.where}: blob {desc.digest} size mismatch ({size} bytes)")

    def _http_error(self, e: urllib.error.HTTPError, what: str) -> ImageError:
        detail = _error_detail(e)
        if e.code == 404:
            return Missing(f"{self.where}: {detail or 'not found'}: {what}")
        if e.code in (401, 403):
            hint = (
                ""
                if self.credentials
                else f"; no credentials for {self.host} in {docker_config_path()}"
            )
            return ImageNotFound(
                f"{self.where}: access denied to {self.repository} ({detail or e.code}){hint}"
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
