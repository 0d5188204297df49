"""scripts/build-busybox-image.py: a deterministic OCI layout that skopeo and umoci accept."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.busybox import BUSYBOX, SCRIPT
from tests.fixtures.root import require_tool


def build(outdir: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(outdir)], capture_output=True, text=True, check=True
    )
    return proc.stdout


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BUSYBOX.is_file():
        pytest.skip("needs /bin/busybox (Debian package busybox-static)")
    outdir = tmp_path_factory.mktemp("busybox") / "oci"
    assert build(outdir).startswith("built")
    return outdir


def test_idempotent_and_deterministic(layout: Path, tmp_path: Path) -> None:
    index_mtime = (layout / "index.json").stat().st_mtime_ns
    assert build(layout).startswith("up to date")
    assert (layout / "index.json").stat().st_mtime_ns == index_mtime
    other = tmp_path / "again"
    build(other)
    files = sorted(p.relative_to(layout) for p in layout.rglob("*"))
    assert files == sorted(p.relative_to(other) for p in other.rglob("*"))
    for rel in files:
        if (layout / rel).is_file():
            assert (layout / rel).read_bytes() == (other / rel).read_bytes(), rel


def test_missing_busybox_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--busybox", str(tmp_path / "nope"), str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    missing = tmp_path / "nope"
    assert proc.stderr == (
        f"build-busybox-image: {missing} not found (install Debian's busybox-static)\n"
    )
    assert not (tmp_path / "o").exists()


def test_skopeo_accepts_it(layout: Path) -> None:
    require_tool("skopeo")
    proc = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci:{layout}:latest"],
        capture_output=True,
        text=True,
        check=True,
    )
    config = json.loads(proc.stdout)
    assert config["config"]["Env"] == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    assert config["os"] == "linux"


def test_umoci_unpacks_it(layout: Path, tmp_path: Path) -> None:
    require_tool("umoci")
    if os.geteuid() != 0:
        pytest.skip("needs root (umoci unpack without --rootless)")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)],
        capture_output=True,
        check=True,
    )
    rootfs = bundle / "rootfs"
    assert os.readlink(rootfs / "usr" / "bin" / "id") == "../../bin/busybox"
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert (rootfs / "home" / "user").stat().st_uid == 1000
    passwd = (rootfs / "etc" / "passwd").read_text()
    assert "root:x:0:0:" in passwd and "user:x:1000:1000:" in passwd
    assert "user:x:1000:" in (rootfs / "etc" / "group").read_text()


def test_busybox_tar_extracts_the_layer(layout: Path, tmp_path: Path) -> None:
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_text())
    layer = layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run([str(BUSYBOX), "tar", "-xzf", str(layer), "-C", str(dest)], check=True)
    assert (dest / "bin" / "busybox").is_file() and (dest / "usr" / "sbin").is_dir()
