"""The store is private to its owner: no other local user reaches a result, a log or the index.

A build step runs as root in its container and may leave a setuid-root program in its result.
If another user could run it from the store, the store would be a way to become root.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

import pytest

from obuilder_core.index import Index
from obuilder_core.stores import StoreError, open_store
from obuilder_core.stores.disk import fs_type
from obuilder_core.stores.overlayfs import mounts_under
from tests.fixtures.root import as_nobody, require_root, require_tool
from tests.stores.helpers import store_area


def _setuid_id(tmp: Path) -> None:
    """A step whose result holds the host's `id`, setuid root, as a build could make it."""
    rootfs = tmp / "rootfs"
    rootfs.mkdir(exist_ok=True)
    shutil.copy(shutil.which("id") or "/usr/bin/id", rootfs / "id")
    os.chmod(rootfs / "id", 0o4755)
    (tmp / "log").write_text("made a setuid program\n")


def test_nobody_cannot_reach_results_logs_or_the_index(store_spec: str) -> None:
    require_root()
    require_tool("setpriv")
    store = open_store(store_spec)
    Index(store).close()
    step = store.build("suid", None, _setuid_id)
    area = store_area(store)
    assert stat.S_IMODE(area.stat().st_mode) == 0o700
    program = step / "rootfs" / "id"
    assert program.stat().st_mode & stat.S_ISUID  # the step did make it
    ran = as_nobody(str(program), "-u")
    assert ran.returncode != 0 and "Permission denied" in ran.stderr, ran
    assert ran.stdout == ""  # never "0"
    for private in (step / "log", store.state_dir() / "index.sqlite"):
        read = as_nobody("cat", str(private))
        assert read.returncode != 0 and "Permission denied" in read.stderr, (private, read)
    listing = as_nobody("ls", str(area))
    assert listing.returncode != 0 and "Permission denied" in listing.stderr


def test_a_store_root_open_to_others_is_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "store"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    with caplog.at_level(logging.WARNING, logger="obuilder_core"):
        open_store(f"rsync:{root}")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert f"store {root} was mode 0755, open to other users; it is now 0700" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="obuilder_core"):
        open_store(f"rsync:{root}")  # already private: nothing to say
    assert caplog.text == ""


@pytest.mark.parametrize("kind", ["rsync", "overlayfs", "auto"])
def test_a_directory_holding_other_files_is_refused_and_left_as_it_was(
    tmp_path: Path, kind: str
) -> None:
    # e.g. `--store=rsync:/tmp` by mistake: /tmp must not become 0700 (nor hold a store).
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "someone-elses-file").write_text("x\n")
    os.chmod(shared, 0o1777)
    with pytest.raises(StoreError) as refused:
        open_store(f"{kind}:{shared}")
    why = f"{shared} holds other files and is open to other users (mode 1777)"
    assert why in str(refused.value)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert sorted(p.name for p in shared.iterdir()) == ["someone-elses-file"]
    os.chmod(shared, 0o700)  # made private by its owner: then it may hold a store
    open_store(f"{kind}:{shared}")


def test_the_root_of_a_fresh_filesystem_is_tightened(tmp_path: Path) -> None:
    root = tmp_path / "mnt"
    (root / "lost+found").mkdir(parents=True)  # what mkfs.ext4 leaves there
    os.chmod(root, 0o755)
    open_store(f"rsync:{root}")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_a_btrfs_store_on_another_filesystem_creates_and_changes_nothing(tmp_path: Path) -> None:
    if fs_type(tmp_path) == "btrfs":
        pytest.skip("the temporary directory is on btrfs")
    os.chmod(tmp_path, 0o755)
    for root in (tmp_path, tmp_path / "new" / "store"):
        with pytest.raises(StoreError, match="is not on a btrfs filesystem"):
            open_store(f"btrfs:{root}")
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    assert list(tmp_path.iterdir()) == []


def test_a_new_store_and_its_auto_parent_are_private(tmp_path: Path) -> None:
    open_store(f"auto:{tmp_path / 'deep' / 'auto'}")
    for root in (tmp_path / "deep" / "auto", *(tmp_path / "deep" / "auto").glob("*/")):
        if root.is_dir():
            assert stat.S_IMODE(root.stat().st_mode) == 0o700, root


def test_overlay_views_are_nosuid_and_nodev(overlayfs_store_spec: str) -> None:
    store = open_store(overlayfs_store_spec)
    store.build("base", None, _setuid_id)

    def child(tmp: Path) -> None:
        (tmp / "rootfs" / "more").write_text("x")

    store.build("child", "base", child)  # a layered step: its files are read through a view
    with store.view("child") as view, open("/proc/self/mountinfo") as f:
        assert (view / "rootfs" / "id").exists()
        options = {
            line.split()[4]: line.split()[5].split(",")
            for line in f
            if line.split()[4] in {str(p) for p in mounts_under(view)}
        }
    assert options, "the layered result is not a mounted view"
    for opts in options.values():
        assert {"ro", "nosuid", "nodev"} <= set(opts), opts
