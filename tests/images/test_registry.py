"""Pulling from a real `docker-registry` on 127.0.0.1, images pushed with skopeo."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from obuilder_core.images.base import ImageConfig, ImageError, ImageNotFound
from obuilder_core.images.oci import DOCKER_LIST, DOCKER_MANIFEST, OCI_LAYER, OCI_MANIFEST, Platform
from obuilder_core.images.registry import ACCEPT, Registry
from tests.fixtures.registry import RunningRegistry, free_port
from tests.images.ocibuild import (
    directory,
    file,
    simple_layout,
    symlink,
    tree,
    write_image,
    write_layout,
)

CONFIG = {"Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"], "WorkingDir": "/work", "User": "nobody"}
LOWER = [
    directory("etc"),
    file("etc/os-release", "ID=test\n"),
    file("etc/removed", "x"),
    directory("opt"),
    file("opt/old", "old"),
    symlink("bin", "usr/bin"),
]
UPPER = [
    file("etc/.wh.removed"),
    directory("opt"),
    file("opt/.wh..wh..opq"),
    file("opt/new", "new"),
    file("etc/added", "added\n"),
]
EXPECTED = {
    "bin": "-> usr/bin",
    "etc": "dir",
    "etc/added": "added\n",
    "etc/os-release": "ID=test\n",
    "opt": "dir",
    "opt/new": "new",
}


def pull(
    name: str, tmp: Path, registry: Registry | None = None
) -> tuple[ImageConfig, dict[str, str], bytes]:
    rootfs = tmp / f"rootfs{len(list(tmp.glob('rootfs*')))}"
    rootfs.mkdir()
    lines: list[bytes] = []
    config = (registry or Registry()).fetch(name, rootfs, lines.append)
    assert not [p for p in tmp.iterdir() if p.name.startswith(".pull-")]
    return config, tree(rootfs), b"".join(lines)


@pytest.fixture(scope="module")
def pushed(registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Images pushed once for this module: name -> manifest digest."""
    tmp = tmp_path_factory.mktemp("layouts")
    out = {}
    for compression in ("gzip", "zstd"):
        digest = simple_layout(
            tmp / compression, [LOWER, UPPER], compression=compression, config=CONFIG
        )
        registry.push(tmp / compression, f"test/{compression}:v1")
        out[compression] = digest
    multi = tmp / "multi"
    amd = write_image(multi, [[file("arch", "amd64")]], arch="amd64", config=CONFIG)
    arm = write_image(multi, [[file("arch", "arm64")]], arch="arm64", config=CONFIG)
    out["multi"] = write_layout(multi, [amd, arm], nested=True)
    registry.push(multi, "test/multi:v1", all_platforms=True)
    return out


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_pull_by_tag_applies_layers_with_whiteouts(
    registry: RunningRegistry, pushed: dict[str, str], tmp_path: Path, compression: str
) -> None:
    config, files, log = pull(f"{registry.host}/test/{compression}:v1", tmp_path)
    assert files == EXPECTED
    assert config == ImageConfig(
        env=(("PATH", "/usr/bin:/bin"), ("LANG", "C.UTF-8")), workdir="/work", user="nobody"
    )
    assert f"pulling {registry.host}/test/{compression}:v1 from {registry.host}".encode() in log
    assert b"layer 2/2" in log
    # The layers really travelled compressed as asked (skopeo did not convert them).
    url = f"http://{registry.host}/v2/test/{compression}/manifests/v1"
    req = urllib.request.Request(url, headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(req) as resp:
        layers = json.load(resp)["layers"]
    assert {d["mediaType"] for d in layers} == {f"{OCI_LAYER}+{compression}"}


def test_pull_by_digest(registry: RunningRegistry, pushed: dict[str, str], tmp_path: Path) -> None:
    _, files, _ = pull(f"{registry.host}/test/gzip@{pushed['gzip']}", tmp_path)
    assert files == EXPECTED


def test_pull_by_unknown_digest_is_not_found(
    registry: RunningRegistry, pushed: dict[str, str], tmp_path: Path
) -> None:
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ImageNotFound, match=f"registry {registry.host}: manifest unknown"):
        pull(f"{registry.host}/test/gzip@{wrong}", tmp_path)


def test_multi_platform_index_picks_host_platform(
    registry: RunningRegistry, pushed: dict[str, str], tmp_path: Path
) -> None:
    _, files, log = pull(f"{registry.host}/test/multi:v1", tmp_path)
    assert files == {"arch": "amd64"}
    assert b"index: chose linux/amd64" in log
    arm = Registry(platform=Platform("linux", "arm64"))
    assert pull(f"{registry.host}/test/multi:v1", tmp_path, arm)[1] == {"arch": "arm64"}


def test_multi_platform_index_without_our_platform(
    registry: RunningRegistry, pushed: dict[str, str], tmp_path: Path
) -> None:
    s390 = Registry(platform=Platform("linux", "s390x"))
    with pytest.raises(
        ImageError,
        match=r"no image for platform linux/s390x \(available: linux/amd64, linux/arm64\)",
    ):
        pull(f"{registry.host}/test/multi@{pushed['multi']}", tmp_path, s390)


def test_unknown_tag_and_repository(
    registry: RunningRegistry, pushed: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(
        ImageNotFound, match=f"registry {registry.host}: manifest unknown: test/gzip:nope"
    ):
        pull(f"{registry.host}/test/gzip:nope", tmp_path)
    with pytest.raises(ImageNotFound, match=f"registry {registry.host}: .*unknown"):
        pull(f"{registry.host}/no/such-repo:v1", tmp_path)


def test_corrupt_blob_is_rejected(registry: RunningRegistry, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    simple_layout(layout, [[file("victim", "original content")]], config=CONFIG)
    registry.push(layout, "test/corrupt:v1")
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(
        (layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text()
    )
    layer_digest = manifest["layers"][0]["digest"]
    blob = registry.blob_file(layer_digest)
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF  # same size, different content
    blob.write_bytes(bytes(data))
    with pytest.raises(
        ImageError, match=f"registry {registry.host}: blob {layer_digest} digest mismatch"
    ):
        pull(f"{registry.host}/test/corrupt:v1", tmp_path)
    assert list((tmp_path / "rootfs0").iterdir()) == []


def test_registry_down_names_it(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(ImageNotFound, match=f"registry {host}: cannot connect: Connection refused"):
        pull(f"{host}/test/gzip:v1", tmp_path)


def test_mirror_replaces_docker_hub(registry: RunningRegistry, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    simple_layout(layout, [[file("from-mirror", "yes")]])
    registry.push(layout, "library/mirrored:latest")
    mirror = Registry(mirror=f"http://{registry.host}")
    assert pull("mirrored", tmp_path, mirror)[1] == {"from-mirror": "yes"}


def test_plain_http_refused_for_remote_hosts(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"refusing plain http to registry example\.com"):
        pull("busybox", tmp_path, Registry(mirror="http://example.com"))


def test_docker_schema2_manifest_and_list(registry: RunningRegistry, tmp_path: Path) -> None:
    single = tmp_path / "single"
    simple_layout(single, [LOWER, UPPER], config=CONFIG)
    name = registry.push(single, "test/docker-single:v1", docker_format=True)
    multi = tmp_path / "multi"
    amd = write_image(multi, [[file("arch", "amd64")]], arch="amd64")
    arm = write_image(multi, [[file("arch", "arm64")]], arch="arm64")
    write_layout(multi, [amd, arm], nested=True)
    listed = registry.push(multi, "test/docker-list:v1", all_platforms=True, docker_format=True)
    for ref, media_type in ((name, DOCKER_MANIFEST), (listed, DOCKER_LIST)):
        host, _, rest = ref.partition("/")
        repo, _, tag = rest.partition(":")
        req = urllib.request.Request(
            f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}
        )
        with urllib.request.urlopen(req) as resp:
            assert resp.headers["Content-Type"] == media_type
    assert pull(name, tmp_path)[1] == EXPECTED
    assert pull(listed, tmp_path)[1] == {"arch": "amd64"}


def test_a_pull_reports_the_bytes_downloaded(registry: RunningRegistry, tmp_path: Path) -> None:
    layout = tmp_path / "big"
    simple_layout(layout, [[file("big", os.urandom(3 << 20))]], compression=None)
    registry.push(layout, "test/big:v1")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    done: list[int] = []
    Registry().fetch(f"{registry.host}/test/big:v1", rootfs, lambda _: None, done.append)
    assert len(done) == 3 and done == sorted(done)  # after each MiB of the 3 MiB layer
    assert (rootfs / "big").stat().st_size == 3 << 20
