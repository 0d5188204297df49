"""`obuilder build`, `delete`, `clean`, `df` and `healthcheck` as a user runs them."""

from __future__ import annotations

import os
import pty
import shutil
import signal
from pathlib import Path

import pytest

from obuilder_core.builder import Builder
from tests.fixtures.busybox import runc_root
from tests.fixtures.cli import run_obuilder, start_obuilder
from tests.fixtures.root import as_nobody

obuilder = run_obuilder


@pytest.fixture
def store(rsync_builder: Builder) -> str:
    return f"rsync:{rsync_builder.store.state_dir().parent}"


def test_build_prints_headings_notes_output_and_got(store: str, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello world\n")
    spec = tmp_path / "s.spec"
    spec.write_text(
        "((from busybox) (shell /bin/sh -c)\n (copy (src hello.txt) (dst /h))\n"
        ' (run (shell "cat /h")))\n'
    )
    first = obuilder("build", "-f", str(spec), "--store", store, str(tmp_path))
    assert first.returncode == 0, first.stderr
    second = obuilder("build", "-f", str(spec), "--store", store, str(tmp_path))
    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()
    assert lines[0] == "(from busybox)"
    assert '/: (run (shell "cat /h"))' in lines
    i = lines.index('/: (run (shell "cat /h"))')
    assert lines[i + 1] == "hello world"
    assert lines[i + 2].startswith('---> using "') and lines[i + 2].endswith('" from cache')
    step_id = lines[i + 2].split('"')[1]
    assert lines[-1] == f'Got: "{step_id}"'
    assert "Got:" in first.stdout and "---> saved as" in first.stdout

    df = obuilder("df", "--store", store)
    assert df.returncode == 0 and "steps:  3" in df.stdout
    assert df.stdout.startswith(f"store:  rsync ({store})\n")
    missing = obuilder(
        "delete", "abcd" if not step_id.startswith("abcd") else "dcba", "--store", store
    )
    assert missing.returncode == 1 and missing.stderr.startswith("obuilder: error: no step ")
    assert obuilder("delete", "", "--store", store).returncode == 2
    deleted = obuilder("delete", step_id[:12], "--store", store)  # as build and pytest show it
    assert deleted.returncode == 0 and deleted.stdout == f"Removing {step_id}\n"
    recent = obuilder("clean", "--older-than", "1d", "--store", store)
    assert (recent.returncode, recent.stdout) == (0, "Removed 0 items\n")
    cleaned = obuilder("clean", "--store", store)
    assert cleaned.returncode == 0 and cleaned.stdout.endswith("Removed 2 items\n")


def test_build_exit_statuses(store: str, tmp_path: Path) -> None:
    spec = tmp_path / "fail.spec"
    spec.write_text('((from busybox) (shell /bin/sh -c) (run (shell "echo oops; exit 3")))')
    failed = obuilder("build", "-f", str(spec), "--store", store, str(tmp_path))
    assert failed.returncode == 1
    assert "oops\n" in failed.stdout
    assert failed.stderr.strip() == (
        'Build step failed: "/bin/sh" "-c" "echo oops; exit 3" failed with exit status 3'
    )
    bad = tmp_path / "bad.spec"
    bad.write_text("((from busybox) (run))")
    r = obuilder("build", "-f", str(bad), "--store", store, str(tmp_path))
    assert r.returncode == 2 and "bad.spec:1:" in r.stderr and "Traceback" not in r.stderr
    r = obuilder("build", "-f", str(tmp_path / "none.spec"), "--store", store, str(tmp_path))
    assert r.returncode == 2 and "no such file" in r.stderr
    secret = tmp_path / "sec.spec"
    secret.write_text(
        '((from busybox) (shell /bin/sh -c) (run (secrets (tok (target /tok))) (shell "cat /tok")))'
    )
    r = obuilder("build", "-f", str(secret), "--store", store, str(tmp_path))
    assert r.returncode == 1 and "Couldn't find value for requested secret 'tok'" in r.stderr
    (tmp_path / "tok").write_text("value")
    r = obuilder(
        "build",
        "-f",
        str(secret),
        "--store",
        store,
        "--secret",
        f"tok:{tmp_path}/tok",
        str(tmp_path),
    )
    assert r.returncode == 0 and "value" in r.stdout


def test_healthcheck(store: str) -> None:
    r = obuilder("healthcheck", "--store", store)
    assert (r.returncode, r.stdout) == (0, "Healthcheck passed\n"), r.stderr


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_a_stop_signal_cancels_the_build_and_waits_for_its_container(
    store: str, tmp_path: Path, signum: int, code: int
) -> None:
    spec = tmp_path / "slow.spec"
    spec.write_text('((from busybox) (shell /bin/sh -c) (run (shell "echo start; sleep 100000")))')
    argv = ["build", "-f", str(spec), "--store", store, str(tmp_path)]
    proc = start_obuilder(*argv)
    try:
        assert proc.stdout is not None
        while "start" not in (line := proc.stdout.readline()):
            assert line, "build ended before its step started"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == code
    assert f"Cancelled at user's request ({signal.Signals(signum).name})" in err
    # Before any other command opens the store: no container, nothing half-built or cached.
    root = Path(store.partition(":")[2])
    assert list(runc_root(store).iterdir()) == []
    assert [p.name for p in (root / "result-tmp").iterdir()] == [".locks"]
    again = obuilder(*argv, "--step-timeout", "1")
    assert "start" in again.stdout and "killed: step timeout 1s" in again.stderr  # not cached


def test_a_setuid_program_a_step_made_is_out_of_other_users_reach(
    store: str, tmp_path: Path
) -> None:
    shutil.copy(shutil.which("id") or "/usr/bin/id", tmp_path / "id")
    spec = tmp_path / "suid.spec"
    spec.write_text(
        "((from busybox) (shell /bin/sh -c)\n (copy (src id) (dst /id))\n"
        ' (run (shell "chmod 4755 /id && ls -l /id")))\n'
    )
    built = obuilder("build", "-f", str(spec), "--store", store, str(tmp_path))
    assert built.returncode == 0, built.stderr
    assert "-rwsr-xr-x" in built.stdout
    assert "warning" not in built.stderr
    step = built.stdout.strip().splitlines()[-1].removeprefix("Got: ").strip('"')
    program = Path(store.partition(":")[2]) / "result" / step / "rootfs" / "id"
    assert program.stat().st_mode & 0o4000
    ran = as_nobody(str(program), "-u")
    assert ran.stdout == "" and "Permission denied" in ran.stderr, ran


def test_a_step_over_its_time_limit_fails_and_is_not_cached(store: str, tmp_path: Path) -> None:
    spec = tmp_path / "slow.spec"
    spec.write_text('((from busybox) (shell /bin/sh -c) (run (shell "echo start; sleep 100000")))')
    for _ in range(2):
        r = obuilder(
            "build", "-f", str(spec), "--store", store, "--step-timeout", "2", str(tmp_path)
        )
        assert r.returncode == 1
        assert r.stderr == (
            'Build step failed: "/bin/sh" "-c" "echo start; sleep 100000" killed: step timeout 2s\n'
        )
        assert r.stdout.endswith("start\n")  # ran again the second time: nothing was cached
    assert list(runc_root(store).iterdir()) == []  # no container left behind


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--memory", "lots"], "argument --memory: invalid size 'lots'"),
        (["--pids-limit", "0"], "argument --pids-limit: pids limit 0: expected at least 1, or -1"),
        (["--step-timeout", "soon"], "argument --step-timeout: invalid duration 'soon'"),
    ],
)
def test_bad_limits_are_usage_errors(tmp_path: Path, option: list[str], message: str) -> None:
    r = obuilder("build", "-f", "x.spec", str(tmp_path), *option)
    assert r.returncode == 2 and message in r.stderr


@pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("", True), ("1", False)])
def test_colour_on_a_terminal_unless_no_color_is_set(
    store: str, tmp_path: Path, no_color: str | None, coloured: bool
) -> None:
    spec = tmp_path / "s.spec"
    spec.write_text("((from busybox))")
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if no_color is not None:
        env["NO_COLOR"] = no_color  # no-color.org: set and not empty turns colour off
    leader, follower = pty.openpty()
    try:
        proc = start_obuilder(
            "build", "-f", str(spec), "--store", store, str(tmp_path), stdout=follower, env=env
        )
        os.close(follower)
        out = b""
        while chunk := _read_pty(leader):
            out += chunk
        proc.wait(timeout=120)
    finally:
        os.close(leader)
    assert proc.returncode == 0, out
    assert (b"\x1b[94m(from busybox)" in out) == coloured, out


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the other side is closed
        return b""
