"""A full disk: the step that filled it fails in one line, and the store works at once after.

On a 300 MB btrfs of its own, with the real CLI and runc: `dd` fills the disk from a step, or
from a cache mount (which outlives the step, so `clean` and `delete-cache` must remove it).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from obuilder_core.index import Index
from obuilder_core.stores import open_store
from tests.fixtures.cli import run_obuilder
from tests.fixtures.root import require_root, require_tool

SH = "(from busybox) (shell /bin/sh -c)"
FILL = f'({SH} (run (shell "dd if=/dev/zero of=/big bs=1M")))'
FILL_CACHE = (
    f"({SH} (run (cache (big (target /c)))"
    ' (shell "dd if=/dev/zero of=/c/big bs=1M count=180")))'
)  # succeeds, leaving the disk almost full: the cache outlives the step
SMALL = f'({SH} (run (shell "echo small")))'


def obuilder(*args: str) -> subprocess.CompletedProcess[str]:
    return run_obuilder(*args, timeout=300)


@pytest.fixture
def full_store(small_btrfs_store_spec: str, busybox_oci: Path, tmp_path: Path) -> str:
    require_root()
    require_tool("runc")
    imported = obuilder(
        "image", "import", "busybox", str(busybox_oci), "--store", small_btrfs_store_spec
    )
    assert imported.returncode == 0, imported.stderr
    for name, text in (("fill", FILL), ("cache", FILL_CACHE), ("small", SMALL)):
        (tmp_path / f"{name}.spec").write_text(text)
    return small_btrfs_store_spec


def _build(store: str, ctx: Path, name: str) -> subprocess.CompletedProcess[str]:
    return obuilder("build", "-f", str(ctx / f"{name}.spec"), "--store", store, str(ctx))


def _consistent(store: str) -> None:
    opened = open_store(store)
    with Index(opened, reconcile=False) as index:
        assert sorted(index.ids()) == sorted(opened.ids())
    root = Path(store.partition(":")[2])
    assert [p.name for p in (root / "result-tmp").iterdir()] == [".locks"]


def test_a_step_that_fills_the_disk_fails_in_one_line(full_store: str, tmp_path: Path) -> None:
    filled = _build(full_store, tmp_path, "fill")
    assert filled.returncode == 1
    (line,) = filled.stderr.splitlines()
    assert line.startswith("Build step failed: ") and "no space left on device" in line, line
    _consistent(full_store)
    health = obuilder("healthcheck", "--store", full_store)
    assert (health.returncode, health.stdout) == (0, "Healthcheck passed\n"), health.stderr
    small = _build(full_store, tmp_path, "small")
    assert small.returncode == 0 and "small\n" in small.stdout, small.stderr
    cleaned = obuilder("clean", "--store", full_store)
    assert cleaned.returncode == 0, cleaned.stderr
    _consistent(full_store)


def _free_pct(store: str) -> float:
    df = obuilder("df", "--store", store)
    return float(re.search(r"free:\s+([\d.]+)%", df.stdout)[1])  # type: ignore[index]


def test_a_cache_that_filled_the_disk_is_removed_by_clean(full_store: str, tmp_path: Path) -> None:
    filled = _build(full_store, tmp_path, "cache")
    assert filled.returncode == 0, filled.stderr
    assert "caches: 1" in obuilder("df", "--store", full_store).stdout
    assert _free_pct(full_store) < 40  # the cache holds the disk
    kept = obuilder("clean", "--keep-free", "50", "--store", full_store)
    assert kept.returncode == 0 and "Removing cache big" in kept.stdout, kept.stdout
    assert _free_pct(full_store) > 60
    assert _build(full_store, tmp_path, "small").returncode == 0
    _consistent(full_store)


def test_delete_cache(full_store: str, tmp_path: Path) -> None:
    assert _build(full_store, tmp_path, "cache").returncode == 0
    deleted = obuilder("delete-cache", "big", "--store", full_store)
    assert (deleted.returncode, deleted.stdout) == (0, "Removing cache big\n"), deleted.stderr
    assert "caches: 0" in obuilder("df", "--store", full_store).stdout
    assert _build(full_store, tmp_path, "small").returncode == 0
