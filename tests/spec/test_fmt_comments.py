"""`fmt` keeps comments: a commented spec in canonical form is left as it is (so `fmt --check`
passes and `fmt --write` leaves the file alone), every comment survives formatting, and
formatting twice changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obuilder_core.cli import main
from obuilder_core.spec import format_spec, parse_spec, print_spec
from obuilder_core.spec.layout import scan
from tests.spec.test_properties import specs

# A canonical spec with pytest marks above it and comments between and beside operations.
CANONICAL = """\
; pytest: mark.xfail(reason="the test step fails on purpose", strict=True)
; pytest: mark.slow

((build tools
        ((from busybox)
         ; the tools stage
         (run (shell "make tools")))) ; built first
 (from busybox) ; the base image
 ; run everything with sh
 (shell /bin/sh -c)
 #| a block comment
    over two lines |#
 (run (network host) ; needs the network
      ; the command:
      (shell "apk add make"))
 #; (run (shell "not today"))
 (copy (from (build tools)) (src /bin/tools) (dst /bin/))
 ; the last step
 (run (shell "make check"))
)

; the end
"""


def fmt(text: str) -> str:
    once = format_spec(text, "t.spec")
    assert format_spec(once, "t.spec") == once, "fmt is not idempotent"
    assert parse_spec(once) == parse_spec(text)
    return once


def comments(text: str) -> list[str]:
    return [c.text for c in scan(text).comments]


def test_a_commented_canonical_spec_is_unchanged() -> None:
    assert fmt(CANONICAL) == CANONICAL


def test_fmt_check_and_write_accept_a_commented_canonical_spec(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "marked.spec"
    spec.write_text(CANONICAL)
    mtime = spec.stat().st_mtime_ns
    assert main(["fmt", "--check", str(spec)]) == 0
    assert main(["fmt", "--write", str(spec)]) == 0
    assert spec.read_text() == CANONICAL and spec.stat().st_mtime_ns == mtime
    assert main(["fmt", str(spec)]) == 0
    assert capsys.readouterr().out == CANONICAL


def test_fmt_write_keeps_marks_of_a_scrambled_spec(tmp_path: Path) -> None:
    spec = tmp_path / "marked.spec"
    spec.write_text('; pytest: mark.xfail(reason="flaky")\n( (from busybox)  (run (shell x)))')
    assert main(["fmt", "--write", str(spec)]) == 0
    assert spec.read_text() == (
        '; pytest: mark.xfail(reason="flaky")\n((from busybox)\n (run (shell x))\n)\n'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "((from a)\n ; note\n (run (shell x)))",
            "((from a)\n ; note\n (run (shell x))\n)\n",
            id="own-line-before-an-op",
        ),
        pytest.param(
            "((from a)   ; base\n (env A B)   ; why\n)",
            "((from a) ; base\n (env A B) ; why\n)\n",
            id="end-of-line-after-an-op",
        ),
        pytest.param(
            "((from a)\n (run (shell x)))   ; last",
            "((from a)\n (run (shell x)) ; last\n)\n",
            id="after-the-spec-on-the-last-op-line-stays-with-the-op",
        ),
        pytest.param(
            "((from a)\n (run (shell x))\n) ; closing",
            "((from a)\n (run (shell x))\n) ; closing\n",
            id="after-the-closing-paren",
        ),
        pytest.param(
            "((from a)\n (run (shell x))\n ; the end\n)",
            "((from a)\n (run (shell x))\n ; the end\n)\n",
            id="before-the-closing-paren",
        ),
        pytest.param(
            "(\n ; first\n (from a))",
            "(\n ; first\n (from a)\n)\n",
            id="before-the-first-item",
        ),
        pytest.param(
            "((from a)\n (env A ; inside\n   B))",
            "((from a)\n ; inside\n (env A B)\n)\n",
            id="inside-a-one-line-form-moves-above-it",
        ),
        pytest.param(
            "((from a)\n (run (shell x) ; which\n (network host)))",
            "((from a)\n (run (network host)\n      (shell x)) ; which\n)\n",
            id="field-comments-follow-their-field-in-canonical-order",
        ),
        pytest.param(
            "((from a)\n (run\n  ; first\n  (shell x)\n  ; after\n  ))",
            "((from a)\n (run\n      ; first\n      (shell x)\n      ; after\n )\n)\n",
            id="own-line-comments-inside-run",
        ),
        pytest.param(
            "((from a)\n (copy (src a) ; src\n (dst b)))",
            "((from a)\n ; src\n (copy (src a) (dst b))\n)\n",
            id="one-line-copy-comments-move-above-it",
        ),
        pytest.param(
            "((build b ; stage\n  ((from a) ; base\n   ; end\n   ))\n (from a))",
            "((build b ; stage\n        ((from a) ; base\n         ; end\n        ))\n"
            " (from a)\n)\n",
            id="in-a-stage",
        ),
        pytest.param(
            "; head\n\n\n; more\n((from a))\n; foot",
            "; head\n\n; more\n((from a)\n)\n; foot\n",
            id="header-and-footer-blank-lines-collapse",
        ),
        pytest.param(
            "((from a)\n  #; (env X Y)\n  #| b |# (run (shell x)))",
            "((from a)\n #; (env X Y)\n #| b |#\n (run (shell x))\n)\n",
            id="datum-and-block-comments",
        ),
    ],
)
def test_comment_places(text: str, expected: str) -> None:
    out = fmt(text)
    assert out == expected
    assert sorted(comments(out)) == sorted(comments(text))


def test_a_comment_on_the_shell_line_stays_with_its_run() -> None:
    text = '((from a)\n (run (shell "x")) ; ok\n (run (shell "y")))'
    assert fmt(text).splitlines()[1:3] == [" (run (shell x)) ; ok", " (run (shell y))"]


def test_specs_without_comments_print_as_before() -> None:
    text = "((from a) (run (shell x)) (copy (src a) (dst b)))"
    assert format_spec(text) == print_spec(parse_spec(text))


# --- property: comments anywhere a line may end ---------------------------------------------


def _with_comments(text: str, data: st.DataObject) -> str:
    """`text` with `; cN` comments at the ends of lines and on lines of their own, wherever
    a line may end outside a string (canonical strings only break after a backslash)."""
    out = []
    for i, line in enumerate(text.splitlines()):
        if not line.endswith("\\") and data.draw(st.booleans()):
            line += f" ; t{i}"
        out.append(line)
        if not line.endswith("\\") and data.draw(st.booleans()):
            out.append(f"; c{i}")
    return "\n".join(out) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.data())
def test_comments_anywhere_survive_and_fmt_is_idempotent(spec, data) -> None:
    text = _with_comments(print_spec(spec), data)
    out = fmt(text)
    assert comments(out) == comments(text)  # all kept, in order: the input was canonical


def _boundaries(text: str) -> list[int]:
    """Offsets where a comment may go: before and after every form, outside strings."""
    todo = list(scan(text).forms)
    out = set()
    while todo:
        form = todo.pop()
        out.update((form.start, form.end))
        todo.extend(form.items)
    return sorted(out)


COMMENTS = [" ; c{n}\n", "\n; o{n}\n", " #| b{n} |# ", "\n#; (x{n})\n"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.data())
def test_comments_between_any_forms_are_kept(spec, data) -> None:
    text = print_spec(spec)
    spots = data.draw(st.sets(st.sampled_from(_boundaries(text)), max_size=6))
    for n, at in enumerate(sorted(spots, reverse=True)):
        comment = data.draw(st.sampled_from(COMMENTS)).format(n=n)
        text = text[:at] + comment + text[at:]
    out = fmt(text)
    assert sorted(comments(out)) == sorted(comments(text))
