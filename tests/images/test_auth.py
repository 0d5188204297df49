"""Bearer-token auth, as Docker Hub does it, in front of the real test registry.

A small HTTP front (the only non-real part: Debian's registry needs an x509 token service to do
this itself) demands a bearer token obtained from its `/token` realm, and redirects blob
downloads to a "CDN" path that, like S3, refuses requests carrying an Authorization header.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from obuilder_core.images import ImageNotFound, Registry
from tests.fixtures.registry import RunningRegistry
from tests.images.ocibuild import file, simple_layout, tree

PUBLIC = "auth/img"


def scope_of(path: str) -> str:
    """`repository:NAME:pull` for a `/v2/NAME/manifests/...` or `/v2/NAME/blobs/...` path."""
    name = path.removeprefix("/v2/").rsplit("/", 2)[0]
    return f"repository:{name}:pull"


class AuthFront(BaseHTTPRequestHandler):
    """Token realm at /token, registry API at /v2/ (token required), blobs via /cdn/."""

    upstream = ""
    token_requests: list[str] = []  # noqa: RUF012 -- per-server class, made in the fixture

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/token":
            self.token_requests.append(url.query)
            query = urllib.parse.parse_qs(url.query)
            if query.get("service") != ["test-registry"]:
                self.reply(400, b"{}")
                return
            # Like Docker Hub: anyone gets a token, but it grants access to public repos only.
            scope = query.get("scope", [""])[0]
            token = f"tok:{scope}" if scope == f"repository:{PUBLIC}:pull" else "tok:none"
            self.reply(200, json.dumps({"token": token}).encode())
        elif url.path.startswith("/cdn/"):
            if "Authorization" in self.headers:
                self.reply(400, b"only one auth mechanism allowed")
            else:
                self.forward("/v2/" + url.path.removeprefix("/cdn/"))
        elif self.headers.get("Authorization") != f"Bearer tok:{scope_of(url.path)}":
            realm = f"http://{self.headers['Host']}/token"
            scope = scope_of(url.path)
            challenge = f'Bearer realm="{realm}",service="test-registry",scope="{scope}"'
            self.reply(
                401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge}
            )
        elif "/blobs/" in url.path:
            self.reply(307, b"", {"Location": "/cdn/" + url.path.removeprefix("/v2/")})
        else:
            self.forward(url.path)

    def forward(self, path: str) -> None:
        req = urllib.request.Request(self.upstream + path)
        if "Accept" in self.headers:
            req.add_header("Accept", self.headers["Accept"])
        try:
            with urllib.request.urlopen(req) as resp:
                headers = {"Content-Type": resp.headers.get("Content-Type", "")}
                self.reply(resp.status, resp.read(), headers)
        except urllib.error.HTTPError as e:
            self.reply(e.code, e.read(), {"Content-Type": "application/json"})

    def reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def front(registry: RunningRegistry) -> Iterator[tuple[str, list[str]]]:
    handler = type(
        "Front", (AuthFront,), {"upstream": f"http://{registry.host}", "token_requests": []}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler.token_requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_bearer_token_flow_and_cdn_redirect(
    registry: RunningRegistry, front: tuple[str, list[str]], tmp_path: Path
) -> None:
    host, token_requests = front
    simple_layout(tmp_path / "layout", [[file("secret-garden", "flowers")]])
    registry.push(tmp_path / "layout", "auth/img:v1")
    (tmp_path / "rootfs").mkdir()
    Registry().fetch(f"{host}/auth/img:v1", tmp_path / "rootfs", lambda _: None)
    assert tree(tmp_path / "rootfs") == {"secret-garden": "flowers"}
    assert len(token_requests) == 1  # one token, reused for manifest and blobs


def test_denied_repository_is_not_found(
    registry: RunningRegistry, front: tuple[str, list[str]], tmp_path: Path
) -> None:
    host, _ = front
    (tmp_path / "rootfs").mkdir()
    # Docker Hub answers 401 even with a token for a repo that is private or does not exist.
    with pytest.raises(ImageNotFound, match=f"registry {host}: access denied to other/img"):
        Registry().fetch(f"{host}/other/img:v1", tmp_path / "rootfs", lambda _: None)
