"""The local image store: import of each source format, ls, fetch, re-import, and the CLI."""

from __future__ import annotations

import argparse
import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from obuilder_core.errors import ObuilderError
from obuilder_core.images.base import ImageConfig, ImageError, ImageNotFound
from obuilder_core.images.local import LocalImages, escape_name
from tests.images.ocibuild import (
    Entry,
    compress,
    directory,
    file,
    layer_tar,
    simple_layout,
    symlink,
    tree,
)

CONFIG = {"Env": ["PATH=/bin", "GREETING=a=b"], "WorkingDir": "/srv", "User": "1000:1000"}
EXPECTED_CONFIG = ImageConfig(
    env=(("PATH", "/bin"), ("GREETING", "a=b")), workdir="/srv", user="1000:1000"
)
LOWER = [directory("srv"), file("srv/hello", "hello\n"), file("srv/old", "old")]
UPPER = [file("srv/.wh.old"), file("srv/added", "added")]
EXPECTED_TREE = {"srv": "dir", "srv/added": "added", "srv/hello": "hello\n"}


def noop(_: bytes) -> None:
    pass


def fetch(images: LocalImages, name: str, tmp: Path) -> tuple[ImageConfig, dict[str, str]]:
    rootfs = tmp / f"rootfs-{escape_name(name)}"
    rootfs.mkdir()
    config = images.fetch(name, rootfs, noop)
    return config, tree(rootfs)


def tar_dir(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w") as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(src)), recursive=False)
    return dest


def docker_archive(dest: Path) -> Path:
    """A `docker save`-style tarball: manifest.json, a config JSON and one tar per layer."""
    root = dest.parent / "docker-archive"
    root.mkdir()
    layer_names = []
    diff_ids = []
    for entries in (LOWER, UPPER):
        data = layer_tar(entries)
        h = hashlib.sha256(data).hexdigest()
        (root / h).mkdir()
        (root / h / "layer.tar").write_bytes(data)
        layer_names.append(f"{h}/layer.tar")
        diff_ids.append(f"sha256:{h}")
    config = json.dumps({"config": CONFIG, "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    cfg_name = hashlib.sha256(config.encode()).hexdigest() + ".json"
    (root / cfg_name).write_text(config)
    manifest = [{"Config": cfg_name, "RepoTags": ["test:latest"], "Layers": layer_names}]
    (root / "manifest.json").write_text(json.dumps(manifest))
    return tar_dir(root, dest)


@pytest.fixture
def images(tmp_path: Path) -> LocalImages:
    return LocalImages(tmp_path / "images")


def test_import_oci_layout_dir(images: LocalImages, tmp_path: Path) -> None:
    digest = simple_layout(tmp_path / "layout", [LOWER, UPPER], config=CONFIG)
    info = images.import_("debian:12", tmp_path / "layout")
    assert info.name == "debian:12"
    assert info.digest == digest  # the manifest is kept as it is
    config, files = fetch(images, "debian:12", tmp_path)
    assert config == EXPECTED_CONFIG
    assert files == EXPECTED_TREE


def test_import_oci_archive(images: LocalImages, tmp_path: Path) -> None:
    simple_layout(tmp_path / "layout", [LOWER, UPPER], compression="zstd", config=CONFIG)
    archive = tar_dir(tmp_path / "layout", tmp_path / "image.oci.tar")
    images.import_("ghcr.io/x/y:tag", archive)
    assert [i.name for i in images.ls()] == ["ghcr.io/x/y:tag"]
    assert fetch(images, "ghcr.io/x/y:tag", tmp_path) == (EXPECTED_CONFIG, EXPECTED_TREE)


def test_import_docker_archive(images: LocalImages, tmp_path: Path) -> None:
    images.import_("dockersave", docker_archive(tmp_path / "saved.tar"))
    assert fetch(images, "dockersave", tmp_path) == (EXPECTED_CONFIG, EXPECTED_TREE)


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_import_rootfs_tarball(
    images: LocalImages, tmp_path: Path, compression: str | None
) -> None:
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(compress(layer_tar([directory("bin"), file("bin/sh", "sh")]), compression))
    images.import_("plain", tarball)
    config, files = fetch(images, "plain", tmp_path)
    # No config to say a PATH: Docker's default, so programs that look for themselves work.
    assert config == ImageConfig(
        env=(("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),)
    )
    assert files == {"bin": "dir", "bin/sh": "sh"}


def test_names_are_normalised_and_listed(images: LocalImages, tmp_path: Path) -> None:
    simple_layout(tmp_path / "layout", [LOWER], config=CONFIG)
    images.import_("busybox", tmp_path / "layout")
    images.import_("docker.io/library/alpine:3", tmp_path / "layout")
    listed = images.ls()
    assert [i.name for i in listed] == ["alpine:3", "busybox:latest"]
    assert all(i.size > 0 and i.digest.startswith("sha256:") for i in listed)
    # Any spelling of the same name finds it; a digest pin finds an image with that digest.
    for name in ("busybox:latest", "docker.io/library/busybox", f"busybox@{listed[1].digest}"):
        assert fetch(images, name, tmp_path)[1]["srv/hello"] == "hello\n"


def test_reimport_replaces(images: LocalImages, tmp_path: Path) -> None:
    simple_layout(tmp_path / "v1", [[file("version", "1")]])
    simple_layout(tmp_path / "v2", [[file("version", "2")]])
    first = images.import_("app", tmp_path / "v1")
    second = images.import_("app", tmp_path / "v2")
    assert first.digest != second.digest
    assert [(i.name, i.digest) for i in images.ls()] == [("app:latest", second.digest)]
    assert fetch(images, "app", tmp_path)[1] == {"version": "2"}
    assert not [p for p in images.root.iterdir() if p.name.startswith(".tmp")]


def test_missing_image_is_not_found(images: LocalImages, tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    with pytest.raises(ImageNotFound, match="not found locally"):
        images.fetch("nope", tmp_path / "r", noop)
    assert list((tmp_path / "r").iterdir()) == []


def test_bad_sources_are_clear_errors(images: LocalImages, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"missing\.tar: no such file"):
        images.import_("x", tmp_path / "missing.tar")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ImageError, match="neither an OCI image layout"):
        images.import_("x", tmp_path / "emptydir")
    with pytest.raises(ImageError, match="invalid image name 'Bad Name'"):
        images.import_("Bad Name", tmp_path / "emptydir")
    # A layout whose layer blob was tampered with is refused.
    simple_layout(tmp_path / "layout", [LOWER])
    index = json.loads((tmp_path / "layout/index.json").read_text())
    blobs = tmp_path / "layout/blobs/sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    layer = blobs / manifest["layers"][0]["digest"][7:]
    layer.write_bytes(compress(layer_tar([file("evil", "x")]), "gzip"))
    with pytest.raises(ImageError, match="digest mismatch"):
        images.import_("tampered", tmp_path / "layout")
    assert images.ls() == []


def test_escape_name_is_injective() -> None:
    names = ["a:b", "a%3ab", "a/b", "a%2fb", ".hidden", "%2ehidden"]
    assert len({escape_name(n) for n in names}) == len(names)
    assert all("/" not in escape_name(n) and not escape_name(n).startswith(".") for n in names)


def test_cli_import_and_ls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("obuilder_core.stores.rsync", reason="rsync store not available yet")
    from obuilder_core.cli.image import register

    parser = argparse.ArgumentParser(prog="obuilder")
    register(parser.add_subparsers())
    store = f"rsync:{tmp_path / 'store'}"
    simple_layout(tmp_path / "layout", [LOWER], config=CONFIG)

    args = parser.parse_args(
        ["image", "import", "busybox", str(tmp_path / "layout"), "--store", store]
    )
    assert args.func(args) == 0
    assert capsys.readouterr().out.startswith("busybox:latest sha256:")
    args = parser.parse_args(["image", "ls", "--store", store])
    assert args.func(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "DIGEST", "SIZE"]
    assert out[1].split()[0] == "busybox:latest"
    args = parser.parse_args(["image", "import", "x", str(tmp_path / "nope"), "--store", store])
    with pytest.raises(ObuilderError, match="nope: no such file or directory"):
        args.func(args)


def test_cli_errors_through_main(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("obuilder_core.stores.rsync", reason="rsync store not available yet")
    cli = pytest.importorskip("obuilder_core.cli")
    if "obuilder_core.cli.image" not in cli.SUBCOMMAND_MODULES:
        modules = (*cli.SUBCOMMAND_MODULES, "obuilder_core.cli.image")
        monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", modules)
    store = ["--store", f"rsync:{tmp_path / 'store'}"]
    assert cli.main(["image", "import", "x", str(tmp_path / "nope"), *store]) == 2
    assert (
        capsys.readouterr().err
        == f"obuilder: error: {tmp_path / 'nope'}: no such file or directory\n"
    )
    (tmp_path / "junk.tar").write_bytes(b"\x1f\x8bjunk")
    assert cli.main(["image", "import", "x", str(tmp_path / "junk.tar"), *store]) == 1
    assert "junk.tar is not a valid tar file" in capsys.readouterr().err
    assert cli.main(["image", "ls", "-v", *store]) == 0
    assert capsys.readouterr().out.split() == ["NAME", "DIGEST", "SIZE"]


def test_malicious_archives_rejected(images: LocalImages, tmp_path: Path) -> None:
    # An OCI archive is unpacked with the layer code: `..` in it is refused.
    evil = tmp_path / "evil.tar"
    evil.write_bytes(
        layer_tar([file("oci-layout", "{}"), file("index.json", "{}"), file("../escaped")])
    )
    with pytest.raises(ImageError, match=r"contains '\.\.'"):
        images.import_("evil", evil)
    assert not (tmp_path / "escaped").exists()
    # A docker archive whose manifest points outside itself.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps([{"Config": "../../etc/passwd", "Layers": []}]))
    with pytest.raises(ImageError, match="escapes it"):
        images.import_("bad", bad)
    assert images.ls() == []


def test_pinned_name_must_match_digest(images: LocalImages, tmp_path: Path) -> None:
    digest = simple_layout(tmp_path / "layout", [LOWER])
    wrong = "sha256:" + "1" * 64
    with pytest.raises(ImageError, match=f"image digest is {digest}, not {wrong}"):
        images.import_(f"pinned@{wrong}", tmp_path / "layout")
    assert images.import_(f"pinned@{digest}", tmp_path / "layout").name == f"pinned@{digest}"


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([[file("../escaped", "x")]], r"layer entry '\.\./escaped' contains '\.\.'"),
        ([[file("/tmp/abs", "x")]], r"layer entry '/tmp/abs' has an absolute path"),
        (
            [[symlink("etc", "/etc")], [file("etc/passwd", "root::0:0::/:/bin/sh")]],
            r"layer entry 'etc/passwd' goes through symlink 'etc'",
        ),
    ],
    ids=["dotdot", "absolute", "write-through-symlink"],
)
def test_a_layer_that_escapes_is_refused_at_import(
    images: LocalImages, tmp_path: Path, layers: list[list[Entry]], message: str
) -> None:
    simple_layout(tmp_path / "layout", layers)
    with pytest.raises(ImageError, match=rf"^image import {tmp_path / 'layout'}: {message}"):
        images.import_("evil", tmp_path / "layout")
    assert images.ls() == []  # nothing half-imported
