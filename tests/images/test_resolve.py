"""Source order and combined errors of `fetch_image`; the docker source without a daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from obuilder_core.images import DockerCLI, ImageNotFound, LocalImages, Registry, fetch_image
from obuilder_core.images.base import ImageError
from tests.fixtures.registry import RunningRegistry, free_port
from tests.images.ocibuild import file, simple_layout, tree


def no_daemon() -> None:
    if DockerCLI().available():
        pytest.skip("a docker daemon answers here; these tests check the no-daemon path")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    return tmp_path / "rootfs"


def test_local_image_wins_over_registry(
    registry: RunningRegistry, tmp_path: Path, rootfs: Path
) -> None:
    simple_layout(tmp_path / "local", [[file("where", "local")]])
    simple_layout(tmp_path / "remote", [[file("where", "registry")]])
    name = registry.push(tmp_path / "remote", "resolve/both:v1")
    local = LocalImages(tmp_path / "images")
    local.import_(name, tmp_path / "local")
    fetch_image(name, rootfs, lambda _: None, sources=[local, Registry(), DockerCLI()])
    assert tree(rootfs) == {"where": "local"}


def test_registry_used_when_not_local(
    registry: RunningRegistry, tmp_path: Path, rootfs: Path
) -> None:
    simple_layout(tmp_path / "remote", [[file("where", "registry")]])
    name = registry.push(tmp_path / "remote", "resolve/remote:v1")
    sources = [LocalImages(tmp_path / "images"), Registry(), DockerCLI()]
    fetch_image(name, rootfs, lambda _: None, sources=sources)
    assert tree(rootfs) == {"where": "registry"}


def test_all_sources_failing_are_reported_together(tmp_path: Path, rootfs: Path) -> None:
    no_daemon()
    name = f"127.0.0.1:{free_port()}/nowhere:v1"
    sources = [LocalImages(tmp_path / "images"), Registry(), DockerCLI()]
    with pytest.raises(ImageNotFound) as err:
        fetch_image(name, rootfs, lambda _: None, sources=sources)
    host = name.split("/")[0]
    assert str(err.value) == (
        f'image "{name}": not found locally, registry {host}: cannot connect: Connection refused,'
        " docker: no daemon"
    )
    assert list(rootfs.iterdir()) == []


def test_hard_errors_are_not_hidden_by_later_sources(tmp_path: Path, rootfs: Path) -> None:
    with pytest.raises(ImageError, match="invalid image name 'UPPER'") as err:
        fetch_image("UPPER", rootfs, lambda _: None, sources=[LocalImages(tmp_path / "i")])
    assert not isinstance(err.value, ImageNotFound)


def test_docker_source_without_daemon(rootfs: Path) -> None:
    no_daemon()
    assert not DockerCLI().available()
    with pytest.raises(ImageNotFound, match=r"^docker: no daemon$"):
        DockerCLI().fetch("busybox", rootfs, lambda _: None)
    with pytest.raises(ImageNotFound, match=r"^docker: no daemon$"):
        DockerCLI(docker="/nonexistent/docker").fetch("busybox", rootfs, lambda _: None)
