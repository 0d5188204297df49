"""A missing `)` is reported at the form that indentation says was left open, not at the
outermost `(` that a literal reading leaves unclosed."""

from __future__ import annotations

from pathlib import Path

import pytest

from obuilder_core.cli import main
from obuilder_core.spec import SpecError, check_spec, parse_spec
from obuilder_core.spec.layout import guess_unclosed

REAL_SPECS = Path(__file__).parent / "real_specs"


def long_spec(missing_at: int, lines: int = 40) -> str:
    """A spec of `lines` lines, header comments first, whose run on line `missing_at` lacks
    its `)`."""
    out = [f"; header {i}" for i in range(1, 9)] + ["((from busybox)", " (shell /bin/sh -c)"]
    while len(out) < lines - 1:
        n = len(out) + 1
        out.append(f' (run (shell "step {n}")' + ("" if n == missing_at else ")"))
    return "\n".join(out) + "\n)\n"


def error_of(text: str) -> SpecError:
    [error] = check_spec(text, "s.spec")
    return error


def test_a_paren_missing_deep_in_a_long_spec_is_found_by_indentation() -> None:
    text = long_spec(missing_at=28)
    assert text.splitlines()[8] == "((from busybox)"  # read literally, line 9 is left open
    assert str(error_of(text)) == (
        "s.spec:28:2: this '(' is probably never closed: line 29 is indented as if the form "
        "had ended; add the missing ')'"
    )


def test_the_error_is_one_file_line_col_line_from_the_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "long.spec"
    spec.write_text(long_spec(missing_at=28))
    assert main(["check", str(spec)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{spec}:28:2: this '(' is probably never closed")


def test_the_last_form_left_open_is_the_innermost_one() -> None:
    # Nothing dedents after the open run: it is the last form, as a literal reading says.
    assert str(error_of("((from a)\n (run (shell x)")) == (
        "s.spec:2:2: this '(' is never closed; add the missing ')'"
    )
    assert str(error_of("((from a)\n (run (shell x))")) == (
        "s.spec:1:1: this '(' is never closed; add the missing ')'"
    )


def test_odd_indentation_before_the_open_form_does_not_mislead() -> None:
    # Line 2 is indented as if the spec had ended, but the `(` left open is on line 3: only
    # forms inside the innermost list left open at the end are candidates.
    assert error_of("((from a)\n(run (shell x))\n (run (shell y)\n").pos.line == 3  # type: ignore[union-attr]


def test_a_run_left_open_inside_a_stage() -> None:
    text = (
        "((build tools\n"
        "        ((from base)\n"
        '         (run (shell "make tools")\n'
        "         (run (shell y))))\n"
        " (from base)\n"
        " (run (shell z))\n"
        ")\n"
    )
    error = error_of(text)
    assert (error.pos.line, error.pos.col) == (3, 10)  # type: ignore[union-attr]
    assert "line 4 is indented" in error.message


def test_tabs_count_to_the_next_tab_stop() -> None:
    # OBuilder's example.spec indents its stage with a tab: `\t((from ...)` is inside
    # `(build dev` at column 2, not dedented to it.
    text = (REAL_SPECS / "obuilder-example.spec").read_text()
    broken = text.replace('(run (shell "opam pin add -yn ."))', '(run (shell "opam pin add -yn .")')
    line = next(i for i, s in enumerate(broken.splitlines(), 1) if "opam pin add -yn ." in s)
    error = error_of(broken)
    assert error.pos.line == line  # type: ignore[union-attr]


@pytest.mark.parametrize("path", sorted(REAL_SPECS.glob("*.spec")), ids=lambda p: p.stem)
def test_real_specs_have_nothing_left_open(path: Path) -> None:
    text = path.read_text()
    parse_spec(text)
    assert guess_unclosed(text) is None


def test_a_closing_paren_left_of_the_form_it_closes_was_meant_for_another() -> None:
    error = error_of("((from a)\n (run (shell x)\n)\n")
    assert (error.pos.line, error.pos.col) == (2, 2)  # type: ignore[union-attr]
    assert "line 3 is indented" in error.message


def test_strings_and_comments_do_not_count_as_lines() -> None:
    # A string's continuation line and a comment at column 1 are not forms that dedent.
    text = '((from a)\n (run (shell "one\ntwo"))\n; at column 1\n (run (shell "x")\n)\n'
    assert str(error_of(text)).startswith("s.spec:5:2: this '(' is probably never closed: line 6")
