"""A registry cache behind authentication (HTTP basic; bearer tokens from a realm that wants
the user's password), with credentials from Docker's config file; and the `obuilder build`
command line with `--cache-to` / `--cache-from`.

The front in front of the real registry is the only non-real part: Debian's registry can do
basic auth only with an htpasswd file and bearer tokens only with an x509 token service.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import urllib.parse
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from obuilder_core.spec import parse_spec
from tests.builder.helpers import SH, ok
from tests.fixtures.cli import run_obuilder
from tests.fixtures.registry import RunningRegistry
from tests.remote.helpers import DENIED, Answer, executions, front, machine

SPEC_TEXT = """((from busybox) (shell /bin/sh -c) (run (shell "echo private > /p")))"""
SPEC = parse_spec(SPEC_TEXT, "auth.spec")
BASIC = "Basic " + base64.b64encode(b"ci:s3cret").decode()


def basic_only(request: BaseHTTPRequestHandler) -> Answer | None:
    """The registry API wants user `ci`, password `s3cret`."""
    if request.headers.get("Authorization") == BASIC:
        return None
    return 401, {"WWW-Authenticate": 'Basic realm="cache"'}, DENIED


def bearer_with_password(request: BaseHTTPRequestHandler) -> Answer | None:
    """Tokens from /token, only for `ci:s3cret`, only for the scope asked; the API wants one."""
    url = urllib.parse.urlsplit(request.path)
    if url.path == "/token":
        if request.headers.get("Authorization") != BASIC:
            return 401, {}, DENIED
        scope = urllib.parse.parse_qs(url.query)["scope"][0]
        return 200, {"Content-Type": "application/json"}, json.dumps({"token": scope}).encode()
    named = re.match(r"/v2/(.+?)/(?:manifests|blobs)/", url.path)
    repo = named[1] if named else ""
    wanted = "pull,push" if request.command in ("POST", "PUT", "PATCH") else "pull"
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if token.startswith(f"repository:{repo}:") and wanted in token.split(":")[-1]:
        return None
    realm = f"http://{request.headers['Host']}/token"
    challenge = f'Bearer realm="{realm}",service="cache",scope="repository:{repo}:{wanted}"'
    return 401, {"WWW-Authenticate": challenge}, DENIED


def docker_config(tmp_path: Path, host: str) -> Path:
    """A `$DOCKER_CONFIG` directory whose config.json logs in to `host` as ci:s3cret."""
    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(b"ci:s3cret").decode()
    (config / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return config


@pytest.mark.parametrize("scheme", [basic_only, bearer_with_password], ids=["basic", "bearer"])
def test_credentials_from_the_docker_config_open_a_private_cache(
    registry: RunningRegistry,
    busybox_oci: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    scheme: object,
) -> None:
    (tmp_path / "ctx").mkdir()
    with front(registry.host, scheme) as host:  # type: ignore[arg-type]
        cache = f"{host}/private/{scheme.__name__}"  # type: ignore[attr-defined]
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nowhere"))
        with (
            caplog.at_level(logging.WARNING, "obuilder_core"),
            machine(tmp_path / "anon", busybox_oci, cache_to=cache) as anonymous,
        ):
            ok(anonymous.build(SPEC, tmp_path / "ctx"))
        assert f"access denied to private/{scheme.__name__}" in caplog.text  # type: ignore[attr-defined]
        assert "has none for" in caplog.text or "no credentials for" in caplog.text

        monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path, host)))
        with machine(tmp_path / "a", busybox_oci, cache_to=cache) as a:
            built = ok(a.build(SPEC, tmp_path / "ctx"))
        with machine(tmp_path / "b", None, cache_from=[cache]) as b:
            pulled = ok(b.build(SPEC, tmp_path / "ctx"))
            assert executions(b) == 0
        assert pulled.id == built.id


def test_the_command_line_pushes_and_pulls(
    registry: RunningRegistry, busybox_store: str, tmp_path: Path
) -> None:
    (tmp_path / "ctx").mkdir()
    spec = tmp_path / "auth.spec"
    spec.write_text(SPEC_TEXT)
    cache = f"{registry.host}/cli/cache"
    a = run_obuilder("build", "-f", str(spec), str(tmp_path / "ctx"), f"--store={busybox_store}",
                     f"--cache-to={cache}")  # fmt: skip
    assert a.returncode == 0, a.stderr
    assert f"pushed 2 steps to registry cache {cache}" in a.stdout

    b = run_obuilder("build", "-f", str(spec), str(tmp_path / "ctx"),
                     f"--store=rsync:{tmp_path / 'b'}", f"--cache-from={cache}")  # fmt: skip
    assert b.returncode == 0, b.stderr
    assert b.stdout.count(f"from registry cache {cache}") == 2
    assert "private" in b.stdout  # the step's log, replayed
    assert b.stdout.splitlines()[-1] == a.stdout.splitlines()[-1]  # Got: "ID"


def test_the_command_line_refuses_a_malformed_cache_reference(tmp_path: Path) -> None:
    spec = tmp_path / "auth.spec"
    spec.write_text(SPEC_TEXT)
    store = f"--store=rsync:{tmp_path / 's'}"
    bad = "--cache-from=docker://example.com/cache"
    result = run_obuilder("build", "-f", str(spec), str(tmp_path), store, bad)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "obuilder: error: argument --cache-from: registry cache 'docker://example.com/cache':"
        " expected HOST[:PORT]/REPO (e.g. 127.0.0.1:5000/cache, ghcr.io/org/cache), REPO in"
        " lower case; see obuilder build --help"
    ]


def test_a_private_base_image_is_pulled_with_the_docker_config_credentials(
    registry: RunningRegistry,
    busybox_oci: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry.push(busybox_oci, "private/busybox:1")
    (tmp_path / "ctx").mkdir()
    with front(registry.host, basic_only) as host:
        spec = parse_spec(
            f'((from {host}/private/busybox:1) {SH} (run (shell "echo hi")))', "p.spec"
        )
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nowhere"))
        with machine(tmp_path / "anon", None) as anonymous:
            failed = anonymous.build(spec, tmp_path / "ctx")
        assert failed.failure is not None
        assert f"registry {host}: access denied to private/busybox" in failed.failure.message

        monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path, host)))
        with machine(tmp_path / "logged-in", None) as logged_in:
            ok(logged_in.build(spec, tmp_path / "ctx"))
