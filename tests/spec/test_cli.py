"""The `obuilder` command line's spec commands: dockerfile, fmt, check; exit codes and errors.

Most tests run `main([...])` in-process; `test_console_script_*` run the installed
`.venv/bin/obuilder` entry point as a real subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from obuilder_core.cli import main
from tests.spec.test_docker import EXAMPLE_BUILDKIT_UNIX, EXAMPLE_PLAIN_WINDOWS

EXAMPLE_SPEC = """\
((build dev
        ((from ocaml/opam:debian)
         (user (uid 1000) (gid 1000))
         (run (cache (c (target /t)))
              (secrets (s (target /s)))
              (shell "a\\nb"))))
 (from debian:12)
 (user (uid 1000) (gid 1000))
 (copy (from (build dev)) (src /x) (dst /y))
 (env K "v\\"q\\\\")
 (user (uid 0) (gid 0))
 (copy (src a) (dst b))
 (run (cache (c (target /t) (buildkit_options ((sharing locked)))))
      (shell x))
)
"""

CANONICAL = '((from busybox)\n (run (shell "echo hi"))\n)\n'
SCRAMBLED = '( (from   busybox) (run (shell "echo hi")) )'

OBUILDER = Path(sys.executable).with_name("obuilder")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def example(tmp_path: Path) -> Path:
    path = tmp_path / "example.spec"
    path.write_text(EXAMPLE_SPEC)
    return path


# --- dockerfile ----------------------------------------------------------------------------


def test_dockerfile_buildkit_matches_the_reference(capsys, example: Path) -> None:
    # OBuilder's command prints the converted text with print_endline: one more empty line.
    assert run(capsys, "dockerfile", "-f", str(example), "--buildkit") == (
        0,
        EXAMPLE_BUILDKIT_UNIX + "\n",
        "",
    )


def test_dockerfile_windows_escape(capsys, example: Path) -> None:
    code, out, _ = run(capsys, "dockerfile", "--escape", "windows", "-f", str(example))
    assert (code, out) == (0, EXAMPLE_PLAIN_WINDOWS + "\n")


def test_dockerfile_unrepresentable_value_is_one_line_exit_2(capsys, tmp_path: Path) -> None:
    spec = tmp_path / "bad.spec"
    spec.write_text('((from busybox)\n (workdir "/a\\nRUN evil"))\n')
    code, out, err = run(capsys, "dockerfile", "-f", str(spec))
    assert (code, out) == (2, "")
    assert err == (
        f"obuilder: error: {spec}:2:2: cannot convert to a Dockerfile: "
        'workdir path "/a\\nRUN evil" contains a line break\n'
    )


def test_dockerfile_spec_error_is_just_the_located_message(capsys, tmp_path: Path) -> None:
    spec = tmp_path / "bad.spec"
    spec.write_text("((from busybox)\n (frob x))\n")
    code, out, err = run(capsys, "dockerfile", "-f", str(spec))
    assert (code, out) == (2, "")
    assert err.startswith(f"{spec}:2:2: ") and err.count("\n") == 1


def test_dockerfile_missing_file(capsys, tmp_path: Path) -> None:
    missing = tmp_path / "nope.spec"
    assert run(capsys, "dockerfile", "-f", str(missing)) == (
        2,
        "",
        f"obuilder: error: {missing}: no such file\n",
    )


def test_dockerfile_needs_f(capsys) -> None:
    code, _, err = run(capsys, "dockerfile")
    assert code == 2 and "the following arguments are required: -f/--file" in err


def test_dockerfile_bad_escape_choice(capsys, example: Path) -> None:
    code, _, err = run(capsys, "dockerfile", "-f", str(example), "--escape", "mac")
    assert code == 2 and "invalid choice: 'mac'" in err


# --- fmt -----------------------------------------------------------------------------------


def test_fmt_prints_the_canonical_form(capsys, tmp_path: Path) -> None:
    a, b = tmp_path / "a.spec", tmp_path / "b.spec"
    a.write_text(SCRAMBLED)
    b.write_text(CANONICAL)
    assert run(capsys, "fmt", str(a), str(b)) == (0, CANONICAL + CANONICAL, "")
    assert a.read_text() == SCRAMBLED  # printing never touches the files


def test_fmt_check_lists_non_canonical_files_and_exits_1(capsys, tmp_path: Path) -> None:
    a, b = tmp_path / "a.spec", tmp_path / "b.spec"
    a.write_text(SCRAMBLED)
    b.write_text(CANONICAL)
    assert run(capsys, "fmt", "--check", str(a), str(b)) == (1, f"{a}\n", "")
    assert run(capsys, "fmt", "--check", str(b)) == (0, "", "")


def test_fmt_check_error_beats_reformat(capsys, tmp_path: Path) -> None:
    a, bad = tmp_path / "a.spec", tmp_path / "bad.spec"
    a.write_text(SCRAMBLED)
    bad.write_text("((from busybox) (run))")
    code, out, err = run(capsys, "fmt", "--check", str(bad), str(a))
    assert (code, out) == (2, f"{a}\n")  # the other file is still checked
    assert err.startswith(f"{bad}:1:")


def test_fmt_write_rewrites_in_place_keeping_the_mode(capsys, tmp_path: Path) -> None:
    a, b = tmp_path / "a.spec", tmp_path / "b.spec"
    a.write_text(SCRAMBLED)
    a.chmod(0o640)
    b.write_text(CANONICAL)
    b_mtime = b.stat().st_mtime_ns
    assert run(capsys, "fmt", "-w", str(a), str(b)) == (0, "", "")
    assert a.read_text() == CANONICAL and (a.stat().st_mode & 0o777) == 0o640
    assert b.stat().st_mtime_ns == b_mtime  # canonical files are left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.spec", "b.spec"]  # no temp left
    assert run(capsys, "fmt", "--check", str(a)) == (0, "", "")


def test_fmt_check_and_write_conflict(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "fmt", "--check", "--write", str(tmp_path / "x"))
    assert code == 2 and "not allowed with argument" in err


def test_fmt_missing_file_reports_and_continues(capsys, tmp_path: Path) -> None:
    b = tmp_path / "b.spec"
    b.write_text(CANONICAL)
    missing = tmp_path / "nope.spec"
    code, out, err = run(capsys, "fmt", str(missing), str(b))
    assert (code, out, err) == (2, CANONICAL, f"obuilder: error: {missing}: no such file\n")


# --- check ---------------------------------------------------------------------------------


def test_check_reports_every_error_in_every_file(capsys, tmp_path: Path) -> None:
    one, two, good = tmp_path / "one.spec", tmp_path / "two.spec", tmp_path / "good.spec"
    one.write_text("((from busybox)\n (frob x)\n (workdir))\n")
    two.write_text("((from busybox)\n (copy (src a)))\n")
    good.write_text(CANONICAL)
    code, out, err = run(capsys, "check", str(one), str(good), str(two))
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{one}:2:2", f"{one}:3:2", f"{two}:2:2"]


def test_check_valid_files_print_nothing_or_a_summary(capsys, tmp_path: Path) -> None:
    good = tmp_path / "good.spec"
    good.write_text(CANONICAL)
    assert run(capsys, "check", str(good)) == (0, "", "")
    assert run(capsys, "check", "-v", str(good), str(good)) == (
        0,
        "",
        "2 spec files checked: no errors\n",
    )
    assert run(capsys, "-v", "check", str(good))[2] == "1 spec file checked: no errors\n"


def test_check_missing_and_directory_arguments(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "check", str(tmp_path / "nope.spec"), str(tmp_path))
    assert code == 2
    assert err.splitlines() == [
        f"obuilder: error: {tmp_path / 'nope.spec'}: no such file",
        f"obuilder: error: {tmp_path}: is a directory, not a file",
    ]


def test_check_invalid_utf8(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bin.spec"
    bad.write_bytes(b"((from \xff))")
    code, _, err = run(capsys, "check", str(bad))
    assert code == 2 and err.startswith(f"{bad}:1:8: ") and err.count("\n") == 1


# --- usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["check"], ["dockerfile", "-f"], ["fmt", "--bogus", "x"]],
)
def test_usage_errors_exit_2(capsys, argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    (line,) = err.splitlines()  # one line, no usage block (more in tests/test_cli_usage.py)
    assert line.startswith("obuilder: error: ") and line.endswith(" --help")


def test_help_and_version(capsys) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and all(c in out for c in ("dockerfile", "fmt", "check"))
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("obuilder ")


def test_keyboard_interrupt_exits_130_quietly(capsys, monkeypatch, example: Path) -> None:
    def interrupted(*args: object, **kwargs: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr("obuilder_core.spec.docker.dockerfile", interrupted)
    assert run(capsys, "dockerfile", "-f", str(example)) == (130, "", "")


# --- the real entry points -----------------------------------------------------------------


def _subprocess(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [*argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=60, check=False
    )


def test_console_script_end_to_end(tmp_path: Path, example: Path) -> None:
    assert OBUILDER.exists(), f"console script not installed at {OBUILDER}"
    proc = _subprocess(str(OBUILDER), "dockerfile", "-f", example.name, "--buildkit", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, EXAMPLE_BUILDKIT_UNIX + "\n", "")

    bad = tmp_path / "bad.spec"
    bad.write_text("((from busybox)\n (run (shell x) (shell y)))\n")
    proc = _subprocess(str(OBUILDER), "check", "bad.spec", "missing.spec", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0].startswith("bad.spec:2:")
    assert proc.stderr.splitlines()[-1] == "obuilder: error: missing.spec: no such file"


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    (tmp_path / "s.spec").write_text(SCRAMBLED)
    proc = _subprocess(sys.executable, "-m", "obuilder_core.cli", "fmt", "s.spec", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, CANONICAL, "")


def test_broken_pipe_is_quiet(tmp_path: Path, example: Path) -> None:
    big = tmp_path / "big.spec"
    big.write_text("((from busybox)\n" + ' (run (shell "echo hi"))\n' * 20000 + ")\n")
    proc = subprocess.run(
        f"{OBUILDER} dockerfile -f {big} | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout == "FROM busybox\n"
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
