"""A registry cache that is down, corrupt, forged or half-written never fails a build and never
puts a bad step into the store: the step is built locally, with a warning naming the cache.

Each test has a machine A that pushes, then damages the registry's copy in one way, then a
fresh machine B that pulls.
"""

from __future__ import annotations

import logging
import tarfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from obuilder_core.builder import Builder, BuildResult
from obuilder_core.spec import parse_spec
from tests.builder.helpers import collect, ok, text
from tests.fixtures.registry import RunningRegistry, free_port
from tests.remote.helpers import (
    DENIED,
    Answer,
    entry,
    executions,
    forge_entry,
    front,
    layer_tar,
    machine,
)

SPEC = parse_spec(
    """((from busybox) (shell /bin/sh -c)
        (run (shell "echo made > /made"))
        (run (shell "cat /made")))""",
    "bad.spec",
)


def build_on_a(tmp_path: Path, busybox_oci: Path, cache: str) -> BuildResult:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    with machine(tmp_path / "a", busybox_oci, cache_to=cache) as a:
        return ok(a.build(SPEC, ctx))


def build_on_b(
    tmp_path: Path, busybox_oci: Path | None, **options: object
) -> tuple[Builder, BuildResult, str]:
    """Build SPEC on a fresh machine B; returns it (closed), the result and the events."""
    events, log = collect()
    with machine(tmp_path / "b", busybox_oci, **options) as b:
        result = ok(b.build(SPEC, tmp_path / "ctx", log=log))
        with b.view(result.steps[1].id) as rootfs:
            assert (rootfs / "made").read_text() == "made\n"  # the store holds the real step
    return b, result, text(events)


def test_an_unreachable_cache_is_one_warning_and_the_build_goes_on(
    tmp_path: Path, busybox_oci: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "ctx").mkdir()
    down = f"127.0.0.1:{free_port()}/nobody/home"
    with caplog.at_level(logging.WARNING, "obuilder_core"):
        b, _, out = build_on_b(tmp_path, busybox_oci, cache_from=[down], cache_to=down)
    assert executions(b) == 2
    assert f"pushed 0 steps to registry cache {down}, 3 failed (see the warnings)" in out
    # One warning: a cache that does not answer is not asked again (each step would wait).
    assert [r.getMessage() for r in caplog.records] == [
        f"registry cache {down}: cannot connect: Connection refused; not used again by this builder"
    ]


def test_a_corrupt_blob_is_rejected_and_the_step_built_locally(
    registry: RunningRegistry, tmp_path: Path, busybox_oci: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = f"{registry.host}/bad/corrupt"
    built = build_on_a(tmp_path, busybox_oci, cache)
    victim = built.steps[1].id
    manifest, _ = entry(registry.host, "bad/corrupt", victim)
    digest = manifest["layers"][0]["digest"]
    blob = registry.blob_file(digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, "obuilder_core"):
        b, result, _ = build_on_b(tmp_path, None, cache_from=[cache])
    assert executions(b) == 1  # the corrupt step; the base and the last step were pulled
    assert result.id == built.id
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert (
        f"registry cache {cache}: step {victim} not used: blob {digest} digest mismatch" in warned
    )


def test_an_entry_naming_another_parent_is_rejected(
    registry: RunningRegistry, tmp_path: Path, busybox_oci: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = f"{registry.host}/bad/parent"
    built = build_on_a(tmp_path, busybox_oci, cache)
    step, base = built.steps[1], built.steps[0]
    layer = layer_tar([(tarfile.TarInfo("made"), b"poisoned\n")])
    forge_entry(registry.host, "bad/parent", step.id, "0" * 64, layer)
    with caplog.at_level(logging.WARNING, "obuilder_core"):
        b, _, _ = build_on_b(tmp_path, None, cache_from=[cache])
    assert executions(b) == 1
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert f"step {step.id} is built on '{'0' * 64}', not on '{base.id}'" in warned


@pytest.mark.parametrize(
    "damage, says",
    [
        ("truncated", "layer is not a valid gzip stream"),
        ("other contents", "layer's uncompressed digest is not"),
    ],
)
def test_a_layer_that_is_not_what_its_config_says_is_rejected(
    registry: RunningRegistry,
    tmp_path: Path,
    busybox_oci: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
    says: str,
) -> None:
    repo = f"bad/{damage.replace(' ', '-')}"
    cache = f"{registry.host}/{repo}"
    built = build_on_a(tmp_path, busybox_oci, cache)
    step, base = built.steps[1], built.steps[0]
    layer = layer_tar([(tarfile.TarInfo("made"), b"made\n")])
    if damage == "truncated":  # with digests of the truncated blob: only unpacking can tell
        forge_entry(registry.host, repo, step.id, base.id, layer[:-8], diff_id="sha256:" + "1" * 64)
    else:
        forge_entry(registry.host, repo, step.id, base.id, layer, diff_id="sha256:" + "1" * 64)
    with caplog.at_level(logging.WARNING, "obuilder_core"):
        b, _, _ = build_on_b(tmp_path, None, cache_from=[cache])
    assert executions(b) == 1
    assert says in "\n".join(r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "name, linkname, says",
    [
        ("../escaped", "", "contains '..'"),
        ("/etc/escaped", "", "absolute path"),
        ("bin/sh-link/escaped", "", "through symlink"),
    ],
)
def test_a_layer_writing_outside_the_rootfs_is_refused(
    registry: RunningRegistry,
    tmp_path: Path,
    busybox_oci: Path,
    caplog: pytest.LogCaptureFixture,
    name: str,
    linkname: str,
    says: str,
) -> None:
    repo = f"bad/escape{abs(hash(name)) % 1000}"
    cache = f"{registry.host}/{repo}"
    built = build_on_a(tmp_path, busybox_oci, cache)
    step, base = built.steps[1], built.steps[0]
    link = tarfile.TarInfo("bin/sh-link")
    link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
    layer = layer_tar([(link, b""), (tarfile.TarInfo(name), b"owned\n")])
    forge_entry(registry.host, repo, step.id, base.id, layer)
    with caplog.at_level(logging.WARNING, "obuilder_core"):
        b, _, _ = build_on_b(tmp_path, None, cache_from=[cache])
    assert executions(b) == 1
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/escaped").exists()
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert says in warned


def test_an_interrupted_push_leaves_no_entry(
    registry: RunningRegistry, tmp_path: Path, busybox_oci: Path
) -> None:
    """A push that dies before its manifest (here: the registry refuses it) leaves blobs but
    no tag: a reader finds nothing to take and builds the step itself."""

    def refuse_manifests(request: BaseHTTPRequestHandler) -> Answer | None:
        refused = request.command == "PUT" and "/manifests/" in request.path
        return (500, {}, DENIED) if refused else None

    with front(registry.host, refuse_manifests) as host:
        events, log = collect()
        (tmp_path / "ctx").mkdir()
        with machine(tmp_path / "a", busybox_oci, cache_to=f"{host}/bad/interrupted") as a:
            ok(a.build(SPEC, tmp_path / "ctx", log=log))
        assert "0 steps to" in text(events) and "3 failed" in text(events)
    b, _, _ = build_on_b(tmp_path, busybox_oci, cache_from=[f"{registry.host}/bad/interrupted"])
    assert executions(b) == 2
