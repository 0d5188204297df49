"""The `obuilder` fixture: Python tests that build specs and assert on the results.

Each test writes a Python test file into a temp dir (pytester) and runs pytest on it against
a store holding busybox, with xdist workers, with xdist off and without xdist (`xdist_args`).
"""

from __future__ import annotations

import pytest

from tests.plugin.helpers import HELLO

USES_THE_FIXTURE = '''
import subprocess
from pathlib import Path

import pytest

from pytest_obuilder import BuildFailed

SPEC = """((from busybox) (shell /bin/sh -c)
 (run (shell "mkdir /etc/app && echo v1 > /etc/app/conf && ln -s /etc/app /link"))
 (env MODE test) (workdir /etc/app) (user (uid 1000) (gid 1000)))"""


def test_files_of_the_result(obuilder):
    built = obuilder.build(SPEC)
    assert built.read_text("/etc/app/conf") == "v1\\n"
    assert built.exists("/link/conf")  # an absolute link, followed inside the result
    assert not built.exists("/etc/app/missing")
    assert built.rootfs.joinpath("etc/app/conf").is_file()


def test_commands_run_as_the_spec_ends(obuilder):
    built = obuilder.build(SPEC)
    done = built.run("echo $MODE; pwd; id -u; cat conf")
    assert done.returncode == 0 and done.stdout == "test\\n/etc/app\\n1000\\nv1\\n"
    assert built.run("id -u", user=(0, 0)).stdout == "0\\n"
    assert built.run(["/bin/sh", "-c", "echo $X"], env={"X": "y"}).stdout == "y\\n"
    with pytest.raises(subprocess.CalledProcessError):
        built.run("exit 4", check=True)


def test_a_run_leaves_the_result_as_it_was(obuilder):
    built = obuilder.build(SPEC)
    assert built.run("echo v2 > conf; cat conf", user=(0, 0)).stdout == "v2\\n"
    assert built.read_text("/etc/app/conf") == "v1\\n"
    assert obuilder.build(SPEC).id == built.id  # from the cache


def test_a_spec_file_and_its_context(obuilder, tmp_path):
    (tmp_path / "data.txt").write_text("from the context\\n")
    spec = tmp_path / "copy.spec"
    spec.write_text("((from busybox) (copy (src data.txt) (dst /data.txt)))")
    assert obuilder.build(spec).read_text("/data.txt") == "from the context\\n"
    assert obuilder.build(Path("hello.spec")).id  # relative to the current directory


def test_a_failed_build_raises_with_the_step(obuilder):
    with pytest.raises(BuildFailed, match="build failed at step: /: .run .shell .exit 3"):
        obuilder.build('((from busybox) (shell /bin/sh -c) (run (shell "exit 3")))')
'''


def test_python_tests_build_specs_and_read_run_their_results(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...], busybox_store: str
) -> None:
    pytester.makepyfile(test_image=USES_THE_FIXTURE)
    pytester.makefile(".spec", hello=HELLO)
    result = pytester.runpytest(*xdist_args, f"--obuilder-store={busybox_store}", "-v")
    result.assert_outcomes(passed=6)  # five Python tests and the spec item
