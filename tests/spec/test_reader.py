"""The S-expression reader: sexplib syntax, positions, and located syntax errors."""

from __future__ import annotations

import pytest

from obuilder_core.spec import SpecError, parse_spec
from obuilder_core.spec.model import Comment, Pos
from obuilder_core.spec.reader import MAX_DEPTH, Atom, SList, read_sexp


def comment_of(string_literal: str) -> str:
    """The text of `(comment LITERAL)` as the parser reads it."""
    op = parse_spec(f"((from a) (comment {string_literal}))").ops[0]
    assert isinstance(op, Comment)
    return op.text


def syntax_error(text: str | bytes) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "s.spec")
    return str(info.value)


def test_forms_carry_line_and_column() -> None:
    form = read_sexp('(a\n  ("b c" d))', "f")
    assert form == SList((Atom("a"), SList((Atom("b c"), Atom("d")))))
    assert isinstance(form, SList)
    inner = form.items[1]
    assert isinstance(inner, SList)
    assert inner.pos == Pos("f", 2, 3)
    assert inner.items[0].pos == Pos("f", 2, 4)
    assert inner.items[1].pos == Pos("f", 2, 10)


def test_model_positions() -> None:
    spec = parse_spec("((from a)\n\n   (workdir /x))", "p.spec")
    assert spec.from_pos == Pos("p.spec", 1, 2)
    assert spec.ops[0].pos == Pos("p.spec", 3, 4)


def test_comments_of_all_three_kinds() -> None:
    text = """
    ; a line comment (with parens
    ((from a) #| a block comment #| nested |# with "a |# string" |#
     #; (run (shell "commented out datum"))
     #; #; (env A B) (env C D)
     (workdir /x) ; trailing
    )
    """
    spec = parse_spec(text)
    assert [type(op).__name__ for op in spec.ops] == ["Workdir"]


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r'"a\nb\tc\\d\"e"', 'a\nb\tc\\d"e'),
        (r'"\065\x42\r\b"', "AB\r\b"),
        (r'"it\'s\ ok"', "it's ok"),
        (r'"\q\1\xZZ"', r"\q\1\xZZ"),  # unknown escapes are kept, as sexplib does
        ('"one \\\n      two"', "one two"),  # backslash-newline skips the indentation
        ('"one \\\r\n\ttwo"', "one two"),
        ('"multi\nline"', "multi\nline"),
        (r'"caf\195\169"', "café"),
        ('"café ☕"', "café ☕"),
        ('""', ""),
    ],
)
def test_string_escapes(literal: str, value: str) -> None:
    assert comment_of(literal) == value


def test_unquoted_atoms_may_hold_odd_characters() -> None:
    assert comment_of("a#b|c'd") == "a#b|c'd"
    assert comment_of("naïve") == "naïve"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "s.spec:1:1: the spec file is empty; a spec looks like ((from IMAGE) OP...)"),
        (
            "  ; only a comment\n",
            "s.spec:1:1: the spec file is empty; a spec looks like ((from IMAGE) OP...)",
        ),
        (
            "((from a)\n (run (shell x))",
            "s.spec:1:1: this '(' is never closed; add the missing ')'",
        ),
        ("((from a)))", "s.spec:1:11: unexpected ')' with no matching '('"),
        (
            "((from a))\n(x)",
            "s.spec:2:1: text after the end of the spec; a spec file holds "
            "exactly one (...) form; check for an extra ')' above",
        ),
        (
            '((from a)\n (run (shell "x)))',
            "s.spec:2:14: this string is never closed; end it with '\"'",
        ),
        (
            '((from a) (comment "\\400"))',
            "s.spec:1:21: escape \\400 is out of range; \\ddd must be 000-255",
        ),
        (
            '((from a) (comment "\\255"))',
            "s.spec:1:20: this string's escapes do not form UTF-8 "
            "text; \\ddd and \\xhh escapes must spell UTF-8 bytes",
        ),
        ("((from a) #| open", "s.spec:1:11: this '#|' comment is never closed; end it with '|#'"),
        ("((from a) (comment x|#y))", "s.spec:1:21: '|#' inside an atom; quote the atom: \"x|#y\""),
        ("((from a) #;)", "s.spec:1:11: '#;' comments out nothing before ')'"),
        ("((from a)) #;", "s.spec:1:12: '#;' comments out nothing before the end"),
        (
            b'((from a)\n (comment "caf\xc3\xa9 \xe9"))',
            "s.spec:2:17: invalid UTF-8 byte 0xe9; spec files must be UTF-8 text",
        ),
    ],
)
def test_syntax_errors(text: str | bytes, expected: str) -> None:
    assert syntax_error(text) == expected


def test_bytes_and_byte_order_mark_are_accepted() -> None:
    assert parse_spec("\ufeff((from a))".encode()).from_ == "a"


@pytest.mark.parametrize("n", [MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_a_spec_error_not_a_recursion_error(n: int) -> None:
    assert "nested more than" in syntax_error("(" * n + ")" * n)


def test_nesting_up_to_the_limit_reads() -> None:
    form = read_sexp("(" * MAX_DEPTH + ")" * MAX_DEPTH)
    for _ in range(MAX_DEPTH - 1):
        assert isinstance(form, SList)
        form = form.items[0]
    assert form == SList(())


def test_long_flat_input_is_fine() -> None:
    ops = " ".join(f"(env K{i} {i})" for i in range(20_000))
    assert len(parse_spec(f"((from a) {ops})").ops) == 20_000


def test_a_long_run_of_atoms_reads_lazily_and_the_same() -> None:
    words = [f"w{i}" for i in range(1000)]
    text = f'((from a) (copy (src .) (dst /d) (exclude {" ".join(words)} "q u" last)))'
    form = read_sexp(text, "s.spec")
    assert isinstance(form, SList)
    copy = form.items[1]
    assert isinstance(copy, SList)
    exclude = copy.items[3]
    assert isinstance(exclude, SList) and exclude.head() == "exclude"
    assert exclude.values(1) == [*words, "q u", "last"]  # without making 1,000 Atoms
    assert exclude.values(2)[:2] == ["w1", "w2"]  # type: ignore[index]
    assert exclude.items[500] == Atom("w499")
    assert exclude.items[500].pos == Pos("s.spec", 1, text.index("w499 ") + 1)
    assert exclude.items[-2] == Atom("q u") and exclude.items[-2].quoted
    assert parse_spec(text).ops[0].exclude == (*words, "q u", "last")  # type: ignore[attr-defined]


def test_datum_comments_inside_a_long_run() -> None:
    words = " ".join(f"w{i}" for i in range(40))
    form = read_sexp(f"(x {words} #; skipped y)")
    assert isinstance(form, SList)
    assert [a.value for a in form.items] == ["x", *(f"w{i}" for i in range(40)), "y"]  # type: ignore[union-attr]


def test_odd_blanks_are_atom_characters() -> None:
    # str.split() would take these for blanks; sexplib does not.
    form = read_sexp("(a\u00a0b c\x1cd " + " ".join(["e"] * 30) + ")")
    assert isinstance(form, SList)
    assert [a.value for a in form.items][:2] == ["a\u00a0b", "c\x1cd"]  # type: ignore[union-attr]


def test_a_lone_surrogate_is_refused_so_printing_always_reads_back() -> None:
    with pytest.raises(SpecError) as e:
        parse_spec("((from a\ud800))", "s.spec")
    assert str(e.value) == (
        "s.spec:1:9: invalid character U+D800 (a lone surrogate); "
        "spec text must be Unicode text that UTF-8 can encode"
    )


@pytest.mark.parametrize(
    "text",
    [
        "((from a) (user (uid " + "9" * 100_000 + ") (gid 1)))",
        "((from a) (run (shell " + " ".join(f"a{i}" for i in range(100_000)) + ")))",
        "((from a) (env K " + " ".join(["v" * 1000] * 100) + "))",
        "((from a) (frob " + "x" * 100_000 + "))",
    ],
    ids=["huge-uid", "many-atoms", "long-value", "unknown-op"],
)
def test_errors_repeat_a_bounded_part_of_the_input(text: str) -> None:
    message = syntax_error(text)
    assert "\n" not in message and len(message) < 300, message
