"""The `fileorder` variation: rebuilt run steps see their rootfs through disorderfs (real FUSE)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from obuilder_core.builder import Builder
from obuilder_core.builder.verify import VARIATIONS, VerifyError, format_report, parse_vary, verify
from tests.builder.helpers import spec
from tests.fixtures.root import require_tool
from tests.verify.test_cli import run_verify

MAKE_DIR = '(run (shell "mkdir /somedir; for f in a b c d e f; do echo $f > /somedir/$f; done"))'


def disorderfs_mounts() -> list[str]:
    """Mount points of disorderfs file systems mounted by the checker, from /proc/mounts."""
    lines = Path("/proc/mounts").read_text().splitlines()
    return [x.split()[1] for x in lines if "obuilder-disorderfs-" in x]


@pytest.fixture
def no_leftover_mounts() -> Iterator[None]:
    """Fails the test if it leaves a checker's disorderfs mount behind (and unmounts it)."""
    require_tool("disorderfs")
    before = set(disorderfs_mounts())
    yield
    left = [m for m in disorderfs_mounts() if m not in before]
    for mount in left:
        os.system(f"fusermount -u -z {mount}")
    assert not left, f"disorderfs mounts left behind: {left}"


def check(builder: Builder, context: Path, *ops: str, vary: str = "fileorder", keep: bool = False):
    """Verify a busybox spec made of `ops` with `--vary` text `vary`."""
    chosen = parse_vary(vary)
    return verify(
        builder, spec(*ops), context, spec_name="t.spec", vary=chosen, keep=keep, clock_gap=0.0
    )


@pytest.mark.usefixtures("no_leftover_mounts")
def test_unsorted_listing_is_reported_at_its_step(verify_builder: Builder, context: Path) -> None:
    # busybox has no `ls -f`; its find lists entries in readdir order just the same.
    op = '(run (shell "find /somedir > /listing"))'
    result = check(verify_builder, context, MAKE_DIR, op, keep=True)
    d = result.divergence
    try:
        report = format_report(result)
        assert result.exit_code == 1, report
        assert d is not None
        assert d.heading == f"/: {op}", report
        assert [(x.kind, x.path) for x in d.diff.differences] == [("content", "listing")], report
        assert result.checked == 2  # the step making the directory rebuilt the same
        assert "variations: fileorder" in report
        assert "/listing" in report
        listed = (d.diff.a / "listing").read_text().split()
        assert sorted(listed) == ["/somedir", *(f"/somedir/{f}" for f in "abcdef")]
        rebuilt = (d.diff.b / "listing").read_text().split()
        assert rebuilt == [listed[0], *reversed(listed[1:])]
    finally:
        if d is not None:
            verify_builder.store.delete(d.rebuilt_id)


@pytest.mark.usefixtures("no_leftover_mounts")
def test_sorted_listing_passes(verify_builder: Builder, context: Path) -> None:
    ops = (MAKE_DIR, '(run (shell "ls /somedir > /listing; cat /somedir/* > /all"))')
    result = check(verify_builder, context, *ops)
    assert result.exit_code == 0, format_report(result)
    assert result.checked == 2


@pytest.mark.usefixtures("no_leftover_mounts")
def test_owners_modes_and_hard_links_survive_the_view(
    verify_builder: Builder, context: Path
) -> None:
    # Written through FUSE as uid 1000 and as root: owners, modes, hard links, a setuid bit and
    # a device-free `du` must all come out as in the plain build (no false positive).
    op = (
        '(run (shell "mkdir -m 1777 /shared; echo x > /shared/f; ln /shared/f /shared/g;'
        ' chmod 4755 /shared/f; ls -i /shared | sort > /inodes; du -s /somedir > /du"))'
    )
    user_op = (
        "(user (uid 1000) (gid 1000))"
        ' (run (shell "echo me > /shared/mine; chmod 600 /shared/mine"))'
    )
    result = check(verify_builder, context, MAKE_DIR, op, user_op)
    assert result.exit_code == 0, format_report(result)
    assert result.checked == 3


@pytest.mark.usefixtures("no_leftover_mounts")
def test_a_private_temporary_directory_does_not_fail_a_step_run_as_a_user(
    verify_builder: Builder, context: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pam_tmpdir gives root TMPDIR=/tmp/user/0, mode 0700 (as pytest's tmp_path is): a view
    # made below it would deny uid 1000 its /bin/sh, disorderfs using the caller's uid.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    user_op = '(user (uid 1000) (gid 1000)) (run (shell "cat /somedir/a > /dev/null"))'
    result = check(verify_builder, context, MAKE_DIR, user_op)
    assert result.exit_code == 0, format_report(result)
    assert result.checked == 2


@pytest.mark.usefixtures("no_leftover_mounts")
def test_rebuild_failing_under_the_view_unmounts(verify_builder: Builder, context: Path) -> None:
    # btrfs lists entries in creation order (a first); reversed, f comes first: the step
    # fails only when rebuilt, which is a finding (exit 1) with the rebuild's log.
    op = (
        '(run (shell "echo first: $(find /somedir -mindepth 1 | head -n 1);'
        ' find /somedir -mindepth 1 | head -n 1 | grep -qx /somedir/a"))'
    )
    result = check(verify_builder, context, MAKE_DIR, op)
    report = format_report(result)
    assert result.exit_code == 1, report
    assert result.failure is None and result.rebuild_failed is not None
    assert f"NOT deterministic at step /: {op}: failed when rebuilt: " in report
    assert "---- last 1 log lines of the rebuild ----\nfirst: /somedir/f" in report


@pytest.fixture
def path_without_disorderfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH set to one directory linking every program on PATH except disorderfs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            link = bin_dir / name
            if name != "disorderfs" and not os.path.lexists(link):
                link.symlink_to(os.path.join(directory, name))
    monkeypatch.setenv("PATH", str(bin_dir))
    assert shutil.which("disorderfs") is None


@pytest.mark.usefixtures("path_without_disorderfs")
def test_missing_disorderfs_is_an_error_when_named(verify_builder: Builder, context: Path) -> None:
    with pytest.raises(VerifyError, match=r"^variation fileorder needs disorderfs: disorderfs is"):
        check(verify_builder, context, MAKE_DIR, vary="hostname,fileorder")
    with pytest.raises(VerifyError, match=r"^variation fileorder needs disorderfs"):
        verify(verify_builder, spec(MAKE_DIR), context, vary=("fileorder",))  # API, no parse_vary


@pytest.mark.usefixtures("path_without_disorderfs")
def test_missing_disorderfs_is_skipped_with_a_note_in_all(
    verify_builder: Builder, context: Path
) -> None:
    op = '(run (shell "umask 022; echo same > /same"))'  # also passes --vary umask
    result = check(verify_builder, context, op, vary="all")
    report = format_report(result)
    assert result.exit_code == 0, report
    assert "fileorder" not in result.vary
    assert set(result.vary) == set(VARIATIONS) - {"fileorder"}
    assert "note: fileorder not varied: disorderfs is not installed" in report


@pytest.mark.usefixtures("no_leftover_mounts")
def test_cancelled_rebuild_unmounts(verify_builder: Builder, context: Path) -> None:
    # Only the rebuild (reversed order: f first) sleeps; cancel it once its view is mounted.
    op = (
        '(run (shell "if [ $(find /somedir -mindepth 1 | head -n 1) != /somedir/a ];'
        ' then sleep 59; fi"))'  # 59: a command line no other process has
    )
    cancel = threading.Event()

    def sleeping() -> bool:
        # The container's processes are the host's too: its `sleep 59` is the sign that the
        # rebuild of the second step runs (the first step's rebuild runs under FUSE too).
        found = subprocess.run(["pgrep", "-f", "^sleep 59$"], capture_output=True)
        return found.returncode == 0

    def cancel_when_running() -> None:
        # An event, not a delay: the rebuilt command is running.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sleeping():
            time.sleep(0.05)
        cancel.set()

    watcher = threading.Thread(target=cancel_when_running, daemon=True)
    watcher.start()
    result = verify(
        verify_builder,
        spec(MAKE_DIR, op),
        context,
        vary=parse_vary("fileorder"),
        cancel=cancel,
        clock_gap=0.0,
    )
    watcher.join()
    assert result.exit_code == 2, format_report(result)
    assert result.failure is not None
    assert result.failure.heading == f"/: {op}"
    assert "rebuild failed" in result.failure.message, result.failure.message


@pytest.mark.usefixtures("no_leftover_mounts")
def test_cli_reports_listing_order(
    verify_builder: Builder, tmp_path: Path, context: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cmd = "mkdir /d; touch /d/x /d/y /d/z; find /d > /order"
    code = run_verify(verify_builder, tmp_path, context, cmd, "--vary", "fileorder")
    out = capsys.readouterr().out
    assert code == 1, out
    assert "variations: fileorder" in out
    assert f'NOT deterministic at step /: (run (shell "{cmd}"))' in out
    assert "content (1):\n  /order:" in out


@pytest.mark.usefixtures("path_without_disorderfs")
def test_cli_missing_disorderfs_is_one_line_exit_2(
    verify_builder: Builder, tmp_path: Path, context: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_verify(verify_builder, tmp_path, context, "true", "--vary", "fileorder")
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "obuilder: error: variation fileorder needs disorderfs:"
        " disorderfs is not installed (apt-get install disorderfs)"
    ]
