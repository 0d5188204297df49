"""pytest says why each built step was not in the cache (`-v` step lines, captured output)."""

from __future__ import annotations

import pytest

SPEC = """((from busybox) (shell /bin/sh -c) (env FOO {foo})
 (run (shell "echo hello")))
"""


def test_verbose_step_lines_say_why_a_step_missed(
    pytester: pytest.Pytester, busybox_store: str
) -> None:
    pytester.makefile(".spec", hello=SPEC.format(foo="1"))
    store = f"--obuilder-store={busybox_store}"
    pytester.runpytest_subprocess(store).assert_outcomes(passed=1)
    pytester.makefile(".spec", hello=SPEC.format(foo="2"))
    result = pytester.runpytest_subprocess(store, "-v", "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines(
        [r"    built +[0-9.]+s  /: \(run \(shell \"echo hello\"\)\)", r" +miss: env FOO changed"]
    )
