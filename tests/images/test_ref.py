"""Image names and platform choice (pure logic)."""

from __future__ import annotations

import pytest

from obuilder_core.images.base import ImageConfig, ImageError
from obuilder_core.images.oci import Platform, choose_manifest
from obuilder_core.images.ref import ImageRef, parse_image_ref

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("name", "expected", "familiar"),
    [
        ("busybox", ImageRef("docker.io", "library/busybox", None, None), "busybox:latest"),
        ("debian:12", ImageRef("docker.io", "library/debian", "12", None), "debian:12"),
        (
            "docker.io/library/debian:12",
            ImageRef("docker.io", "library/debian", "12", None),
            "debian:12",
        ),
        (
            "ocaml/opam:debian",
            ImageRef("docker.io", "ocaml/opam", "debian", None),
            "ocaml/opam:debian",
        ),
        ("ghcr.io/x/y:tag", ImageRef("ghcr.io", "x/y", "tag", None), "ghcr.io/x/y:tag"),
        (
            "localhost:5000/a",
            ImageRef("localhost:5000", "a", None, None),
            "localhost:5000/a:latest",
        ),
        (
            f"127.0.0.1:5000/a/b@{DIGEST}",
            ImageRef("127.0.0.1:5000", "a/b", None, DIGEST),
            f"127.0.0.1:5000/a/b@{DIGEST}",
        ),
        (
            f"alpine:3@{DIGEST}",
            ImageRef("docker.io", "library/alpine", "3", DIGEST),
            f"alpine:3@{DIGEST}",
        ),
    ],
)
def test_parse_ref(name: str, expected: ImageRef, familiar: str) -> None:
    ref = parse_image_ref(name)
    assert ref == expected
    assert ref.familiar() == familiar
    assert parse_image_ref(familiar) == ref if ref.tag or ref.digest else True


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Busybox", "repository must be lowercase"),
        ("busybox@sha256:abc", "digest must be sha256"),
        ("busybox:bad/tag", "bad registry host"),
        ("busybox:-x", "bad tag"),
        ("", "repository must be"),
        ("a//b", "repository must be"),
    ],
)
def test_bad_names(name: str, why: str) -> None:
    with pytest.raises(ImageError, match=f"invalid image name {name!r}: {why}"):
        parse_image_ref(name)


def _desc(arch: str, os: str = "linux", variant: str | None = None) -> dict[str, object]:
    plat = {"os": os, "architecture": arch} | ({"variant": variant} if variant else {})
    return {
        "mediaType": "m",
        "digest": "sha256:" + format(len(arch), "x") * 64,
        "size": 1,
        "platform": plat,
    }


def test_choose_manifest() -> None:
    index = {
        "manifests": [_desc("unknown", "unknown"), _desc("arm64", variant="v8"), _desc("amd64")]
    }
    assert choose_manifest(index, "x", Platform("linux", "amd64")).platform == Platform(
        "linux", "amd64"
    )
    assert choose_manifest(index, "x", Platform("linux", "arm64")).platform == Platform(
        "linux", "arm64", "v8"
    )
    with pytest.raises(
        ImageError,
        match=r"x: no image for platform linux/arm/v7 \(available: linux/arm64/v8, linux/amd64\)",
    ):
        choose_manifest(index, "x", Platform("linux", "arm", "v7"))


def test_image_config_round_trip_and_bad_env() -> None:
    config = ImageConfig.from_oci({"config": {"Env": ["A=1", "B=x=y"], "WorkingDir": "/w"}}, "img")
    assert config == ImageConfig(env=(("A", "1"), ("B", "x=y")), workdir="/w", user=None)
    assert ImageConfig.from_json(config.to_json()) == config
    with pytest.raises(ImageError, match="img: invalid environment entry 'NOEQUALS'"):
        ImageConfig.from_oci({"config": {"Env": ["NOEQUALS"]}}, "img")
