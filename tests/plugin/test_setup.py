"""The session's setup, checked once at start: the store, and the line that names it.

Each test runs pytest in a temp dir (pytester), with xdist workers, with xdist off and without
xdist (`xdist_args`). A store that cannot be used is one usage error (exit 4) before anything
is built, not the same failure for every spec.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugin.helpers import HELLO


def test_an_invalid_store_is_a_usage_error(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(".spec", hello=HELLO)
    result = pytester.runpytest(*xdist_args, "--obuilder-store=nowhere:x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --obuilder-store: invalid store 'nowhere:x': expected KIND:ARG with KIND one of*"]
    )
    pytester.makeini("[pytest]\nobuilder_store = btrfs\n")
    result = pytester.runpytest(*xdist_args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini obuilder_store: invalid store 'btrfs'*"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_a_store_that_cannot_be_opened_is_one_usage_error(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...]
) -> None:
    pytester.makefile(".spec", one=HELLO, two=HELLO)
    (pytester.path / "file").write_text("a file where the store's directory should be\n")
    result = pytester.runpytest(*xdist_args, "--obuilder-store=rsync:file/store")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: obuilder: *file/store*"])
    assert len([line for line in result.errlines if line.startswith("ERROR: ")]) == 1
    result.stdout.no_fnmatch_line("*FAILED*")
    result.stdout.no_fnmatch_line("*Traceback*")
    assert not (pytester.path / "file" / "store").exists()


def test_no_store_is_opened_without_specs_or_to_collect(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...], private_default_store: Path
) -> None:
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest(*xdist_args)
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("obuilder: *")
    pytester.makefile(".spec", hello=HELLO)
    result = pytester.runpytest(*xdist_args, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert not private_default_store.exists()


def test_the_header_names_the_store_its_contents_and_the_sandbox(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...], busybox_store: str
) -> None:
    pytester.makefile(".spec", hello=HELLO)
    result = pytester.runpytest(*xdist_args, f"--obuilder-store={busybox_store}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"obuilder: store {busybox_store} (* steps), runc *"])


def test_help_names_the_default_store(
    pytester: pytest.Pytester, private_default_store: Path
) -> None:
    help = pytester.runpytest("--help")
    text = "".join(help.stdout.str().split())  # argparse wraps long paths anywhere
    assert "--obuilder-store=KIND:ARGstoreforbuildresults" in text
    assert f"(default:auto:{private_default_store})" in text


def test_a_missing_base_image_says_how_to_import_it(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...], busybox_store: str
) -> None:
    pytester.makefile(".spec", hello=HELLO.replace("busybox", "no-such-image"))
    result = pytester.runpytest(
        *xdist_args,
        f"--obuilder-store={busybox_store}",
        "--obuilder-registry-mirror=http://127.0.0.1:9",  # nothing listens: fails at once
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            'hello.spec:1: image "no-such-image": not found locally, *; import it with: '
            f"obuilder image import no-such-image PATH --store={busybox_store}"
        ]
    )
