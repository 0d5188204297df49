"""Collecting spec files: items, node ids, -k, marks from the spec, spec errors, options.

Nothing here builds: each test runs pytest in a temp dir (pytester) and reads its output, with
xdist workers, with xdist off and without xdist (`xdist_args`).
"""

from __future__ import annotations

import pytest

from tests.plugin.helpers import HELLO, with_workers


def test_each_spec_file_is_one_item_named_after_it(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(".spec", hello=HELLO, **{"multi-stage": HELLO})
    pytester.makefile(".txt", notes=HELLO)  # not a spec file: not collected
    result = pytester.runpytest(*xdist_args, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["hello.spec::hello", "multi-stage.spec::multi-stage"])
    result.stdout.no_fnmatch_line("*notes*")
    assert result.ret == pytest.ExitCode.OK


def test_node_ids_select_items_in_subdirectories(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.mkdir("specs")
    (pytester.path / "specs" / "one.spec").write_text(HELLO)
    (pytester.path / "specs" / "two.spec").write_text(HELLO)
    result = pytester.runpytest(*xdist_args, "--collect-only", "-q", "specs/two.spec::two")
    result.stdout.fnmatch_lines(["specs/two.spec::two", "1 test collected*"])


def test_k_selects_by_spec_name(pytester: pytest.Pytester, xdist_args: tuple[str, ...]) -> None:
    pytester.makefile(".spec", hello=HELLO, goodbye=HELLO)
    result = pytester.runpytest(*xdist_args, "--collect-only", "-q", "-k", "good")
    result.stdout.fnmatch_lines(["goodbye.spec::goodbye", "1/2 tests collected (1 deselected)*"])


def test_ini_spec_file_patterns(pytester: pytest.Pytester, xdist_args: tuple[str, ...]) -> None:
    pytester.makeini("[pytest]\nobuilder_spec_files = *.obuild ci/*.sx\n")
    pytester.makefile(".obuild", first=HELLO)
    pytester.makefile(".spec", ignored=HELLO)
    pytester.mkdir("ci")
    (pytester.path / "ci" / "second.sx").write_text(HELLO)
    result = pytester.runpytest(*xdist_args, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["ci/second.sx::second", "first.obuild::first"])
    result.stdout.no_fnmatch_line("*ignored*")


def test_marks_from_leading_comments_and_comment_ops(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(
        ".spec",
        later='; pytest: mark.skip(reason="not today")\n;  pytest: mark.slow\n' + HELLO,
        nightly=HELLO.replace(
            "(shell /bin/sh -c)", '(comment "pytest: mark.skip(reason=\\"only at night\\")")'
        ),
        plain=HELLO,
    )
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n")
    # Skipped specs never reach the builder, so this needs no store.
    result = pytester.runpytest(
        *xdist_args, "-rs", "-m", "slow or not slow", "nightly.spec", "later.spec"
    )
    result.stdout.fnmatch_lines_random(  # in the order they ran: with workers, either
        ["*SKIPPED*nightly.spec*only at night", "*SKIPPED*later.spec*not today", "*2 skipped*"]
    )
    result = pytester.runpytest(*xdist_args, "--collect-only", "-q", "-m", "slow")
    result.stdout.fnmatch_lines(["later.spec::later", "1/3 tests collected (2 deselected)*"])


def test_marks_from_conftest_apply_to_spec_items(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(".spec", hello=HELLO)
    pytester.makeconftest(
        """
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.skip(reason="skipped from conftest"))
"""
    )
    result = pytester.runpytest(*xdist_args, "-rs")
    result.stdout.fnmatch_lines(["*SKIPPED*hello.spec*skipped from conftest", "*1 skipped*"])


def test_a_bad_spec_is_a_collection_error_with_line_and_column(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(".spec", good=HELLO, bad="((from busybox)\n (shell /bin/sh -c)\n (rnu ls))\n")
    result = pytester.runpytest(*xdist_args)
    result.stdout.fnmatch_lines(
        ["*ERROR collecting bad.spec*", "bad.spec:3:2: unknown operation rnu*", "*1 error*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*parser.py*")
    # xdist reports a collection error in a worker as a failed run, as for a Python module
    exit = pytest.ExitCode.TESTS_FAILED if with_workers(xdist_args) else pytest.ExitCode.INTERRUPTED
    assert result.ret == exit


def test_every_error_of_a_bad_spec_is_listed(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(".spec", bad="((from busybox)\n (rnu ls)\n (env A))\n")
    result = pytester.runpytest(*xdist_args, "--collect-only")
    result.stdout.fnmatch_lines(["bad.spec:2:2: *", "bad.spec:3:2: *"])


def test_a_bad_mark_is_a_collection_error_with_line_and_column(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(".spec", bad="; a comment\n; pytest: mark.skip(reason=open('x'))\n" + HELLO)
    result = pytester.runpytest(*xdist_args, "--collect-only")
    result.stdout.fnmatch_lines(["bad.spec:2:11: arguments of mark.skip must be literals*"])
    pytester.makefile(".spec", bad="; pytest: skip\n" + HELLO)
    result = pytester.runpytest(*xdist_args, "--collect-only")
    result.stdout.fnmatch_lines(["bad.spec:1:11: cannot read the pytest mark 'skip'*"])


def test_comments_after_the_spec_starts_are_not_marks(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    later_comment = '(shell /bin/sh -c)\n ; pytest: mark.skip(reason="x")'
    text = HELLO.replace("(shell /bin/sh -c)", later_comment)
    pytester.makefile(".spec", hello=text)
    result = pytester.runpytest(*xdist_args, "--collect-only", "-q", "-m", "skip")
    result.stdout.fnmatch_lines(["*no tests collected (1 deselected)*"])


def test_an_unreadable_secret_is_a_usage_error(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(".spec", hello=HELLO)
    result = pytester.runpytest(*xdist_args, "--obuilder-secret", "token:missing.txt")
    result.stderr.fnmatch_lines(["*obuilder secret 'token': cannot read *missing.txt*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result = pytester.runpytest(*xdist_args, "--obuilder-secret", "token")
    result.stderr.fnmatch_lines(["*obuilder secret 'token': expected ID:PATH*"])


RPM_SPEC = "Name: hello\nVersion: 1.0\n%description\nA package (not a build spec).\n"
PYINSTALLER_SPEC = "# -*- mode: python -*-\na = Analysis(['app.py'])\n"


def test_other_tools_spec_files_are_passed_over(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(".spec", hello=HELLO, rpm=RPM_SPEC, app=PYINSTALLER_SPEC)
    pytester.makefile(".spec", commented="; a comment\n#| a block |#\n" + HELLO)
    result = pytester.runpytest(*xdist_args, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines_random(["hello.spec::hello", "commented.spec::commented"])
    result.stdout.fnmatch_lines_random(
        [
            "obuilder: not a spec, not collected: app.spec",
            "obuilder: not a spec, not collected: rpm.spec",
        ]
    )
    result.stdout.no_fnmatch_line("*ERROR*")
    named = pytester.runpytest(*xdist_args, "--collect-only", "-q", "rpm.spec")
    assert named.ret == pytest.ExitCode.USAGE_ERROR  # as `pytest README.md` is
    named.stderr.fnmatch_lines(["ERROR: not found: *rpm.spec"])
    assert named.outlines.count("obuilder: not a spec, not collected: rpm.spec") == 1


def test_a_spec_missing_its_outer_parentheses_is_still_an_error(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(".spec", bad="; a comment\n(from busybox)\n(run (shell ls))\n")
    result = pytester.runpytest(*xdist_args, "--collect-only")
    result.stdout.fnmatch_lines(["*ERROR collecting bad.spec*", "bad.spec:*:*: *"])


def test_ini_paths_say_where_specs_are(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makeini("[pytest]\nobuilder_paths = ci\n")
    pytester.makefile(".spec", outside=HELLO)
    pytester.mkdir("ci")
    (pytester.path / "ci" / "inside.spec").write_text(HELLO)
    result = pytester.runpytest(*xdist_args, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["ci/inside.spec::inside", "1 test collected*"])
    result.stdout.no_fnmatch_line("*outside*")


def test_marks_for_python_functions_only_are_refused(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(".spec", bad="; pytest: mark.parametrize('x', [1, 2])\n" + HELLO)
    result = pytester.runpytest(*xdist_args, "--collect-only")
    result.stdout.fnmatch_lines(
        ["bad.spec:1:11: mark.parametrize cannot apply to a spec: it makes several calls*"]
    )
    pytester.makefile(
        ".spec",
        bad=HELLO.replace("(shell /bin/sh -c)", "(comment \"pytest: mark.usefixtures('db')\")"),
    )
    result = pytester.runpytest(*xdist_args, "--collect-only")
    result.stdout.fnmatch_lines(["bad.spec:2:2: mark.usefixtures cannot apply to a spec*"])


def test_an_unknown_mark_is_reported_at_the_spec_line(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(".spec", hello="; a comment\n; pytest: mark.slwo\n" + HELLO)
    result = pytester.runpytest(*xdist_args, "--collect-only")
    result.stdout.fnmatch_lines(
        ["  hello.spec:2: PytestUnknownMarkWarning: Unknown pytest.mark.slwo*"]
    )
    result.stdout.no_fnmatch_line("*markers.py*")
    strict = pytester.runpytest(*xdist_args, "--collect-only", "--strict-markers")
    strict.stdout.fnmatch_lines(["hello.spec:2:11: 'slwo' not found in `markers` configuration*"])
