"""Python tests of what a spec builds, with the plugin's `obuilder` fixture.

`obuilder.build(spec)` builds through the session's cached builder (the spec items of this
directory have usually built these steps already, so this takes no time) and returns the
result: read its files, or run commands in a throwaway sandbox on top of it.
"""

from pathlib import Path

from pytest_obuilder import Obuilder

HERE = Path(__file__).parent


def test_the_program_from_the_compile_stage_is_installed(obuilder: Obuilder) -> None:
    built = obuilder.build(HERE / "multi-stage.spec")
    assert built.exists("/bin/hello")
    assert built.read_text("/bin/hello").startswith("#!/bin/sh\n")


def test_it_runs_as_the_spec_left_things(obuilder: Obuilder) -> None:
    built = obuilder.build(HERE / "multi-stage.spec")
    greeting = built.run("hello", check=True)  # the spec's env (GREETING) and user
    assert greeting.stdout == "hello from the compile stage\n"
    assert built.run("id -u").stdout == "1000\n"
    assert built.run(["id", "-u"], user=(0, 0)).stdout == "0\n"
    assert built.run("echo $GREETING", env={"GREETING": "hi"}).stdout == "hi\n"


def test_a_run_changes_nothing(obuilder: Obuilder) -> None:
    built = obuilder.build('((from busybox) (shell /bin/sh -c) (run (shell "echo v1 > /f")))')
    assert built.run("echo v2 > /f && cat /f", user=(0, 0)).stdout == "v2\n"
    assert built.read_text("/f") == "v1\n"
    assert built.run("exit 3").returncode == 3
