"""`obuilder export`: a result as an OCI image that other tools read and run.

One spec from busybox (an env, a workdir, a run that writes a file and deletes one, a copy, a
user) is built once for the module; each test exports it somewhere and hands the image to a
real tool: `umoci unpack` + `runc run`, `skopeo inspect` (OCI layout, docker archive, the real
registry), `buildah from` where installed; and through the `obuilder` command line.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from obuilder_core.builder import Builder, BuildResult, ObuilderError
from obuilder_core.builder.export import check_export_repository, export_ref, tag_for
from obuilder_core.images.image_writer import (
    DockerArchiveTarget,
    OCILayoutTarget,
    RegistryTarget,
    parse_target,
)
from obuilder_core.images.oci import OCI_MANIFEST
from obuilder_core.spec import parse_spec
from tests.builder.helpers import ok, running_builder
from tests.fixtures.cli import run_obuilder
from tests.fixtures.registry import RunningRegistry
from tests.fixtures.root import require_tool
from tests.remote.helpers import client, entry, machine

SPEC_TEXT = """((from busybox)
 (shell /bin/sh -c)
 (env GREETING "hello from obuilder")
 (workdir /app)
 (run (shell "echo built in a step > made.txt && rm /bin/ed"))
 (copy (src data.txt) (dst data.txt))
 (user (uid 1000) (gid 1000)))
"""
COPY_HEADING = "/app: (copy (src data.txt) (dst data.txt))"
LAYERS = 3  # the base image, the run, the copy


@dataclass(frozen=True)
class Built:
    """The module's builder, its store (`KIND:ARG`) and the result of building SPEC_TEXT."""

    builder: Builder
    store: str
    result: BuildResult

    @property
    def id(self) -> str:
        assert self.result.id is not None
        return self.result.id


@pytest.fixture(scope="module")
def built(busybox_oci: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("export")
    store = f"rsync:{tmp / 'store'}"
    (tmp / "ctx").mkdir()
    (tmp / "ctx" / "data.txt").write_text("copied from the context\n")
    with running_builder(store, busybox_oci) as builder:
        result = ok(builder.build(parse_spec(SPEC_TEXT, "export.spec"), tmp / "ctx"))
        yield Built(builder, store, result)


def skopeo(*args: str) -> Any:
    """`skopeo ARGS` (which prints JSON) as a Python value."""
    require_tool("skopeo")
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def check_inspected(image: str) -> None:
    """`skopeo inspect` sees the layers, and the config the spec's final settings."""
    inspected = skopeo("inspect", *image.split(" "))
    assert len(inspected["Layers"]) == LAYERS
    assert "GREETING=hello from obuilder" in inspected["Env"]
    config = skopeo("inspect", "--config", *image.split(" "))
    assert config["config"]["WorkingDir"] == "/app"
    assert config["config"]["User"] == "1000:1000"
    assert "PATH=/usr/sbin:/usr/bin:/sbin:/bin" in config["config"]["Env"]
    assert len(config["rootfs"]["diff_ids"]) == LAYERS
    assert [h["created_by"] for h in config["history"]][-1] == COPY_HEADING


# -- targets, no root needed ------------------------------------------------------------------


def test_targets_are_named_as_skopeo_names_them() -> None:
    assert parse_target("oci:/tmp/x") == OCILayoutTarget(Path("/tmp/x"), "latest")
    assert parse_target("oci:out:v1") == OCILayoutTarget(Path("out"), "v1")
    assert parse_target("docker-archive:a.tar") == DockerArchiveTarget(Path("a.tar"), None)
    assert parse_target("docker-archive:a.tar:app") == DockerArchiveTarget(
        Path("a.tar"), "app:latest"
    )
    assert parse_target("127.0.0.1:5000/x/app:1") == RegistryTarget("127.0.0.1:5000", "x/app", "1")
    assert parse_target("docker.io/me/app") == RegistryTarget("registry-1.docker.io", "me/app",
                                                              "latest")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("app:1", "expected oci:DIR[:TAG]"),
        ("oci:", "DIR is empty"),
        ("oci:out:-bad", "bad tag '-bad'"),
        ("example.com/App:1", "repository must be lowercase"),
        (f"example.com/app@sha256:{'0' * 64}", "only a tag"),
    ],
)
def test_a_bad_target_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ObuilderError, match="export target") as e:
        parse_target(text)
    assert says in str(e.value)


def test_tags_and_repositories_for_the_pytest_plugin() -> None:
    assert tag_for("examples/debian/app.spec") == "examples-debian-app"
    assert tag_for("hello.spec") == "hello"
    assert tag_for("../x y.spec") == "x-y"
    assert check_export_repository("127.0.0.1:5000/results") == "127.0.0.1:5000/results"
    assert (
        export_ref("127.0.0.1:5000/r", "examples/hello.spec") == "127.0.0.1:5000/r:examples-hello"
    )
    for bad in ("127.0.0.1:5000/results:1", "results", "oci:dir"):
        with pytest.raises(ObuilderError, match="without a tag"):
            check_export_repository(bad)


# -- real tools -------------------------------------------------------------------------------


@contextlib.contextmanager
def container(root: Path) -> Iterator[str]:
    """A unique container id for `runc --root ROOT`, deleted (forced) afterwards."""
    cid = f"obuilder-export-{uuid.uuid4().hex[:12]}"
    try:
        yield cid
    finally:
        subprocess.run(["runc", "--root", str(root), "delete", "--force", cid],
                       capture_output=True, timeout=60)  # fmt: skip


def test_an_oci_layout_unpacks_with_umoci_and_runs_with_runc(built: Built, tmp_path: Path) -> None:
    require_tool("umoci", "runc")
    layout = tmp_path / "layout"
    exported = built.builder.export(built.id, f"oci:{layout}:v1")
    assert (exported.layers, exported.settings_from) == (LAYERS, "build")

    bundle = tmp_path / "bundle"
    unpack = ["umoci", "unpack", "--image", f"{layout}:v1", str(bundle)]
    proc = subprocess.run(unpack, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    script = "cat made.txt data.txt; env; id -u; pwd; test -e /bin/ed || echo ed deleted"
    config["process"]["args"] = ["/bin/sh", "-c", script]
    config["process"]["terminal"] = False
    config_path.write_text(json.dumps(config))
    root = tmp_path / "runc-root"
    with container(root) as cid:
        run = ["runc", "--root", str(root), "run", "--bundle", str(bundle), cid]
        proc = subprocess.run(run, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["built in a step", "copied from the context"]
    assert "GREETING=hello from obuilder" in lines
    assert lines[-3:] == ["1000", "/app", "ed deleted"]


def test_an_oci_layout_is_what_skopeo_reads_and_keeps_other_tags(
    built: Built, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    first = built.builder.export(built.id, f"oci:{layout}:v1")
    check_inspected(f"oci:{layout}:v1")
    again = built.builder.export(built.id, f"oci:{layout}:v1")
    other = built.builder.export(built.id, f"oci:{layout}")
    assert first.digest == again.digest == other.digest  # the same result, the same image
    index = json.loads((layout / "index.json").read_text())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert sorted(names) == ["latest", "v1"]
    assert skopeo("inspect", f"oci:{layout}:latest")["Digest"] == first.digest


def test_a_docker_archive_is_what_skopeo_reads(built: Built, tmp_path: Path) -> None:
    archive = tmp_path / "app.tar"
    built.builder.export(built.id, f"docker-archive:{archive}:example.com/app:v1")
    check_inspected(f"docker-archive:{archive}")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == ["example.com/app:v1"]
        assert len(manifest[0]["Layers"]) == LAYERS
        layer = tar.extractfile(manifest[0]["Layers"][1])
        assert layer is not None
        with tarfile.open(fileobj=layer) as step:  # uncompressed, as docker save writes them
            assert "app/made.txt" in step.getnames()
            assert "bin/.wh.ed" in step.getnames()
    assert not list(tmp_path.glob(".app.tar.*"))  # no temporary left


def test_a_pushed_image_is_what_skopeo_reads_from_the_registry(
    built: Built, registry: RunningRegistry
) -> None:
    ref = f"{registry.host}/export/app:v1"
    exported = built.builder.export(built.id, ref)
    assert exported.target == ref
    check_inspected(f"--tls-verify=false docker://{ref}")
    assert skopeo("inspect", "--tls-verify=false", f"docker://{ref}")["Digest"] == exported.digest


def test_exported_layers_are_the_blobs_the_registry_cache_pushed(
    registry: RunningRegistry, busybox_oci: Path, tmp_path: Path
) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "data.txt").write_text("shared\n")
    cache = f"{registry.host}/export/cache"
    with machine(tmp_path / "store", busybox_oci, cache_to=cache) as builder:
        result = ok(builder.build(parse_spec(SPEC_TEXT, "export.spec"), tmp_path / "ctx"))
        assert result.id is not None
        builder.export(result.id, f"{registry.host}/export/shared:1")
    data, _ = client(registry.host, "export/shared").manifest("1", pinned=None, accept=OCI_MANIFEST)
    exported = [layer["digest"] for layer in json.loads(data)["layers"]]
    chain = [s.id for s in result.steps]
    pushed = [entry(registry.host, "export/cache", id)[0]["layers"][0]["digest"] for id in chain]
    assert exported == pushed


def test_buildah_takes_an_exported_layout(built: Built, tmp_path: Path) -> None:
    require_tool("buildah")
    layout = tmp_path / "layout"
    built.builder.export(built.id, f"oci:{layout}:v1")
    storage = ["--root", str(tmp_path / "storage"), "--runroot", str(tmp_path / "run"),
               "--storage-driver", "vfs"]  # fmt: skip
    proc = subprocess.run(["buildah", *storage, "from", f"oci:{layout}:v1"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    name = proc.stdout.strip().splitlines()[-1]
    try:
        mounted = subprocess.run(["buildah", *storage, "mount", name],
                                 capture_output=True, text=True, timeout=120)  # fmt: skip
        assert mounted.returncode == 0, mounted.stderr
        rootfs = Path(mounted.stdout.strip())
        assert (rootfs / "app" / "made.txt").read_text() == "built in a step\n"
        assert not (rootfs / "bin" / "ed").exists()
        script = "cat made.txt; echo $GREETING; id -u; pwd"
        run = ["buildah", *storage, "run", "--isolation", "chroot", name, "--", "sh", "-c", script]
        ran = subprocess.run(run, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.splitlines() == ["built in a step", "hello from obuilder", "1000", "/app"]
    finally:
        subprocess.run(["buildah", *storage, "rm", name], capture_output=True, timeout=120)
        shutil.rmtree(tmp_path / "storage", ignore_errors=True)


def test_every_store_kind_exports_its_result(
    store_spec: str, busybox_oci: Path, tmp_path: Path
) -> None:
    """Layers come from `view`s: an overlayfs result's own dir holds only its changes."""
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "data.txt").write_text("copied from the context\n")
    with running_builder(store_spec, busybox_oci) as builder:
        result = ok(builder.build(parse_spec(SPEC_TEXT, "export.spec"), tmp_path / "ctx"))
        assert result.id is not None
        builder.export(result.id, f"oci:{tmp_path / 'layout'}")
    check_inspected(f"oci:{tmp_path / 'layout'}:latest")


def test_the_pytest_path_pushes_with_the_settings_of_its_own_build(
    registry: RunningRegistry, rsync_store_spec: str, busybox_oci: Path, tmp_path: Path
) -> None:
    """Two specs that differ only after their last step end at the same id; the recorded
    settings are the latest build's, and a caller holding its BuildResult passes its own."""
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "data.txt").write_text("copied from the context\n")
    second = SPEC_TEXT.rstrip()[:-1] + ' (env GREETING "second"))'
    with running_builder(rsync_store_spec, busybox_oci) as builder:
        first = ok(builder.build(parse_spec(SPEC_TEXT, "first.spec"), tmp_path / "ctx"))
        latest = ok(builder.build(parse_spec(second, "second.spec"), tmp_path / "ctx"))
        assert first.id is not None and first.id == latest.id
        recorded = builder.export(first.id, f"{registry.host}/export/pytest:recorded")
        ref = export_ref(f"{registry.host}/export/pytest", "tests/first.spec")
        own = builder.export(first.id, ref, settings=first.settings)
    assert ref.endswith(":tests-first")
    assert recorded.digest != own.digest
    env = skopeo("inspect", "--tls-verify=false", f"docker://{ref}")["Env"]
    assert "GREETING=hello from obuilder" in env
    recorded_ref = f"docker://{registry.host}/export/pytest:recorded"
    assert "GREETING=second" in skopeo("inspect", "--tls-verify=false", recorded_ref)["Env"]


# -- the command line -------------------------------------------------------------------------


def test_the_command_line_exports_an_abbreviated_id(built: Built, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    proc = run_obuilder("export", built.id[:12], "--to", f"oci:{layout}:cli",
                        f"--store={built.store}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Exported {built.id} to oci:{layout}:cli ({LAYERS} layers,")
    assert proc.stderr == ""
    check_inspected(f"oci:{layout}:cli")


def test_an_intermediate_step_gets_the_base_image_settings_with_a_warning(
    built: Built, tmp_path: Path
) -> None:
    run_step = built.result.steps[1].id
    layout = tmp_path / "layout"
    proc = run_obuilder("export", run_step, "--to", f"oci:{layout}", f"--store={built.store}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("obuilder: warning: no build recorded the final env")
    assert len(proc.stderr.splitlines()) == 1
    config = skopeo("inspect", "--config", f"oci:{layout}:latest")["config"]
    assert config["Env"] == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    assert "User" not in config and "WorkingDir" not in config
    assert len(skopeo("inspect", f"oci:{layout}:latest")["Layers"]) == 2


ERROR = "obuilder: error: "


@pytest.mark.parametrize(
    ("args", "status", "line"),
    [
        (["abcdef123456", "--to", "oci:out"], 1, "no step abcdef123456 in the store"),
        (["xyz", "--to", "oci:out"], 2, "'xyz' is not a step id (4 to 64 hex digits)"),
        (["abcdef123456", "--to", "ftp/x"], 2, "argument --to: export target 'ftp/x':"),
    ],
    ids=["unknown id", "not an id", "bad target"],
)
def test_the_command_line_refuses_bad_input_in_one_line(
    built: Built, tmp_path: Path, args: list[str], status: int, line: str
) -> None:
    args = [a.replace("oci:out", f"oci:{tmp_path / 'out'}") for a in args]
    proc = run_obuilder("export", *args, f"--store={built.store}")
    assert proc.returncode == status
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(ERROR + line)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_layout_target_that_is_some_other_directory_is_refused(
    built: Built, tmp_path: Path
) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ObuilderError, match="not empty and not an OCI image layout"):
        built.builder.export(built.id, f"oci:{tmp_path / 'mine'}")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
