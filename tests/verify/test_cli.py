"""`obuilder verify` end to end (real runc, btrfs): report, exit codes 0/1/2, --keep."""

from __future__ import annotations

from pathlib import Path

import pytest

from obuilder_core.builder import Builder
from obuilder_core.cli import main

SPEC = """((from busybox) (shell /bin/sh -c)
 (copy (src hello.txt) (dst /hello.txt))
 (run (shell "echo fixed > /fixed"))
 (run (shell "{cmd}"))
 (run (shell "echo after > /after")))
"""


def store_of(builder: Builder) -> str:
    """The `--store` argument naming the builder's store."""
    return f"btrfs:{builder.store.state_dir().parent}"


def run_verify(builder: Builder, tmp_path: Path, context: Path, cmd: str, *extra: str) -> int:
    """`obuilder verify -q` of SPEC with `cmd` as its third step; the exit status."""
    spec = tmp_path / "t.spec"
    spec.write_text(SPEC.format(cmd=cmd))
    argv = ["verify", "-q", "-f", str(spec), str(context), "--store", store_of(builder), *extra]
    return main(argv)


def test_same_exits_0(
    verify_builder: Builder, tmp_path: Path, context: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_verify(verify_builder, tmp_path, context, "echo same > /same")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "deterministic: 4 step(s) rebuilt, results identical" in out


def test_different_exits_1_with_report_and_keep(
    verify_builder: Builder, tmp_path: Path, context: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_verify(
        verify_builder, tmp_path, context, "echo $RANDOM-$RANDOM > /rand; echo same > /same",
        "--keep", "--vary", "none",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1, out
    assert 'NOT deterministic at step /: (run (shell "echo $RANDOM-$RANDOM' in out
    assert "content (1):\n  /rand:" in out
    assert "@@ -1 +1 @@" in out  # a unified diff of the small text file
    a = next(line.split(": ", 1)[1] for line in out.splitlines() if "A path:" in line)
    b = next(line.split(": ", 1)[1] for line in out.splitlines() if "B path:" in line)
    assert Path(a, "rand").read_text() != Path(b, "rand").read_text()
    assert Path(a, "same").read_text() == Path(b, "same").read_text() == "same\n"
    assert "after" not in out  # stopped at the divergent step


def test_errors_exit_2(
    verify_builder: Builder, tmp_path: Path, context: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_verify(verify_builder, tmp_path, context, "exit 3")
    captured = capsys.readouterr()
    assert code == 2
    assert "failed with exit status 3" in captured.out
    code = run_verify(verify_builder, tmp_path, context, "true", "--vary", "bogus")
    assert code == 2
    assert "unknown variation 'bogus'" in capsys.readouterr().err


def test_a_step_failing_only_when_rebuilt_is_a_finding_exit_1(
    verify_builder: Builder, tmp_path: Path, context: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The rebuild runs with TZ=VRF-14 (the tz variation): this step fails there, and only there.
    cmd = 'echo TZ is $TZ; test \\"$TZ\\" != VRF-14'
    code = run_verify(verify_builder, tmp_path, context, cmd, "--vary", "tz")
    out = capsys.readouterr().out
    assert code == 1, out
    assert "NOT deterministic at step /: (run (shell" in out
    assert 'failed when rebuilt: "/bin/sh" "-c" ' in out and "failed with exit status 1" in out
    assert out.splitlines()[-2:] == ["---- last 1 log lines of the rebuild ----", "TZ is VRF-14"]


def test_source_date_epoch_clamps_mtimes_from_option_or_environment(
    verify_builder: Builder,
    tmp_path: Path,
    context: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cmd = "mkdir -p /made; echo x > /made/file"  # mtimes of /made, /made/file and / change
    code = run_verify(verify_builder, tmp_path, context, cmd, "--check-mtimes")
    out = capsys.readouterr().out
    assert code == 1 and "mtime (" in out, out
    clamp = ("--check-mtimes", "--source-date-epoch", "1600000000")
    code = run_verify(verify_builder, tmp_path, context, cmd, *clamp)
    out = capsys.readouterr().out
    assert code == 0, out
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1600000000")
    assert run_verify(verify_builder, tmp_path, context, cmd, "--check-mtimes") == 0
