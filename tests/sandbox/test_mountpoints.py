"""Finding and removing the mount points runc creates (plain files in tmp dirs; no root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from obuilder_core.sandbox import SandboxError, mountpoints


def bind(dst: str, src: Path) -> dict[str, object]:
    return {"destination": dst, "type": "bind", "source": str(src), "options": []}


def test_symlinks_resolve_inside_the_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "abs").symlink_to("/real")
    (root / "up").symlink_to("../../../../real")
    (root / "loop").symlink_to("loop")
    assert mountpoints.resolve_in_root(root, "/abs/x") == ["real", "x"]
    assert mountpoints.resolve_in_root(root, "/up/x") == ["real", "x"]
    assert mountpoints.resolve_in_root(root, "/../../etc/hosts") == ["etc", "hosts"]
    with pytest.raises(SandboxError, match="too many levels of symbolic links"):
        mountpoints.resolve_in_root(root, "/loop/x")


def test_plan_and_remove(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("existing")
    secret, cache = tmp_path / "secret", tmp_path / "cache"
    secret.write_text("s")
    cache.mkdir()
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": []},
        {"destination": "/proc/sys", "type": "proc", "source": "proc", "options": []},
        bind("/etc/hosts", secret),
        bind("/run/secrets/a", secret),
        bind("/run/secrets/b", secret),
        bind("/var/cache/x", cache),
    ]
    os.utime(root, ns=(1, 2))
    plan = mountpoints.plan(root, mounts)
    assert {("/".join(p.parts), p.is_dir) for p in plan.points} == {
        ("proc", True),
        ("run", True), ("run/secrets", True), ("run/secrets/a", False), ("run/secrets/b", False),
        ("var", True), ("var/cache", True), ("var/cache/x", True),
    }  # fmt: skip
    for p in plan.points:  # what runc does
        path = root.joinpath(*p.parts)
        if p.is_dir:
            path.mkdir()
        else:
            path.touch()
    mountpoints.remove(root, plan)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["etc", "etc/hosts"]
    # The root's entries are back to what they were: so is its mtime.
    assert root.stat().st_mtime_ns == 2


def test_remove_keeps_non_empty_and_replaced_paths(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    (outside / "secrets").mkdir(parents=True)
    (outside / "secrets" / "token").touch()
    secret = tmp_path / "secret"
    secret.write_text("s")
    mounts = [bind("/run/secrets/token", secret), bind("/f", secret), bind("/var/x", tmp_path)]
    plan = mountpoints.plan(root, mounts)
    # The command replaced /run with a symlink to the host, wrote into /f and next to /var/x.
    (root / "run").symlink_to(outside)
    (root / "f").write_text("data")
    (root / "var" / "x").mkdir(parents=True)
    (root / "var" / "written").touch()
    mountpoints.remove(root, plan)
    assert sorted(p.name for p in (root / "var").iterdir()) == ["written"]
    assert (outside / "secrets" / "token").exists()
    assert (root / "run").is_symlink()
    assert (root / "f").read_text() == "data"


def test_runs_over_one_rootfs_share_their_mount_points(tmp_path: Path) -> None:
    root, secret = tmp_path / "root", tmp_path / "secret"
    (root / "etc").mkdir(parents=True)
    secret.write_text("s")
    os.utime(root / "etc", ns=(1, 2))
    hosts, token = root / "etc" / "hosts", root / "etc" / "token"
    in_use = mountpoints.InUse()
    with in_use.run(root, [bind("/etc/hosts", secret)]):
        hosts.touch()  # runc made it
        # A second run planned while the first's mount point exists, and needing another.
        with in_use.run(root, [bind("/etc/hosts", secret), bind("/etc/token", secret)]):
            token.touch()
        # The second run's end removes nothing: the first still has /etc/hosts mounted.
        assert hosts.exists() and token.exists()
    assert sorted(p.name for p in (root / "etc").iterdir()) == []
    assert (root / "etc").stat().st_mtime_ns == 2  # the state from before the first run
