"""Canonical printing: OBuilder's Spec.pp layout, log headings and sexplib atom quoting."""

from __future__ import annotations

import pytest

from obuilder_core.spec import format_atom, heading, parse_spec, print_op, print_spec
from obuilder_core.spec.model import (
    Cache,
    ChildBuild,
    Comment,
    Copy,
    Env,
    FromBuild,
    FromContext,
    NamedUser,
    Run,
    Secret,
    SetUser,
    Shell,
    Spec,
    UnixUser,
    Workdir,
)
from obuilder_core.spec.printer import MARGIN

# Reference §1.3: the input of OBuilder's roundtrip test, printed exactly like this by Spec.pp.
LONG = "a very very very very very very very very very very very very very very very long command"
REFERENCE_EXAMPLE = f"""\
((build tools
        ((from base)
         (run (shell "make tools"))))
 (from base)
 (comment "A test comment")
 (workdir /src)
 (run (shell "a command"))
 (run (cache (a (target /data)) (b (target /srv)))
      (secrets (a (target /run/secrets/a)) (b (target /b)))
      (shell "{LONG}"))
 (copy (src a b) (dst c))
 (copy (src a b) (dst c) (exclude .git _build))
 (copy (from (build tools)) (src binary) (dst /usr/local/bin/))
 (env DEBUG 1)
 (user (uid 1) (gid 2))
)
"""

REFERENCE_MODEL = Spec(
    from_="base",
    child_builds=(ChildBuild("tools", Spec("base", (Run("make tools"),))),),
    ops=(
        Comment("A test comment"),
        Workdir("/src"),
        Run("a command"),
        Run(
            LONG,
            cache=(Cache("a", "/data"), Cache("b", "/srv")),
            secrets=(Secret("a", "/run/secrets/a"), Secret("b", "/b")),
        ),
        Copy(("a", "b"), "c"),
        Copy(("a", "b"), "c", exclude=(".git", "_build")),
        Copy(("binary",), "/usr/local/bin/", FromBuild("tools")),
        Env("DEBUG", "1"),
        SetUser(UnixUser(1, 2)),
    ),
)


def test_reference_example_parses_to_the_expected_model() -> None:
    assert parse_spec(REFERENCE_EXAMPLE) == REFERENCE_MODEL


def test_reference_example_prints_exactly() -> None:
    assert print_spec(REFERENCE_MODEL) == REFERENCE_EXAMPLE


def test_reference_example_round_trips_and_printing_is_idempotent() -> None:
    once = print_spec(parse_spec(REFERENCE_EXAMPLE))
    assert parse_spec(once) == REFERENCE_MODEL
    assert print_spec(parse_spec(once)) == once


def test_non_canonical_input_is_normalised() -> None:
    """Fields in any order, defaults spelled out, comments: all printed canonically."""
    text = """((from a) ; the base
      (run (shell x) (network host) (cache (c (target /t))))
      (copy (exclude) (dst d) (from context) (src s)))"""
    assert print_spec(parse_spec(text)) == (
        "((from a)\n"
        " (run (cache (c (target /t)))\n"
        "      (network host)\n"
        "      (shell x))\n"
        " (copy (src s) (dst d))\n"
        ")\n"
    )


def test_nested_builds_align_under_their_names() -> None:
    inner = Spec("b", (Run("x"),))
    middle = Spec("a", (Comment("m"),), (ChildBuild("in", inner),))
    spec = Spec("c", (), (ChildBuild("mid", middle), ChildBuild("two", Spec("d"))))
    assert print_spec(spec) == (
        "((build mid\n"
        "        ((build in\n"
        "                ((from b)\n"
        "                 (run (shell x))))\n"
        "         (from a)\n"
        "         (comment m)))\n"
        " (build two\n"
        "        ((from d)))\n"
        " (from c)\n"
        ")\n"
    )


def test_each_op_kind_prints_canonically() -> None:
    ops = [
        (Shell(()), "(shell)"),
        (Shell(("/bin/sh", "-c")), "(shell /bin/sh -c)"),
        (SetUser(NamedUser("builder")), "(user (name builder))"),
        (Env("EMPTY", ""), '(env EMPTY "")'),
        (Workdir("my dir"), '(workdir "my dir")'),
        (
            Run("x", cache=(Cache("c", "/t", (("sharing", "locked"),)),)),
            "(run (cache (c (target /t) (buildkit_options ((sharing locked)))))\n     (shell x))",
        ),
        (Copy(("a",), "b", FromContext()), "(copy (src a) (dst b))"),
    ]
    for op, text in ops:
        assert print_op(op) == text


def copy_of_width(width: int) -> Copy:
    """A copy whose one-line form `(copy (src X) (dst d))` is `width` characters long."""
    return Copy(("x" * (width - len("(copy (src ) (dst d))")),), "d")


def test_copy_stays_on_one_line_while_it_fits_the_margin() -> None:
    fits = print_spec(Spec("a", (copy_of_width(MARGIN - 1),)))
    assert fits.splitlines()[1] == " " + print_op(copy_of_width(MARGIN - 1))
    assert len(fits.splitlines()[1]) == MARGIN
    broken = print_spec(Spec("a", (copy_of_width(MARGIN),))).splitlines()
    assert broken[1].startswith(" (copy (src xxx")
    assert broken[2] == "       (dst d))"


def test_headings_prefix_the_workdir_and_align_continuations() -> None:
    run = Run(
        "Append", secrets=(Secret("test", "/testsecret"), Secret("test2", "/run/secrets/test2"))
    )
    assert heading("/", run) == (
        "/: (run (secrets (test (target /testsecret)) (test2 (target /run/secrets/test2)))\n"
        "        (shell Append))"
    )
    assert heading("/src", Run("make")) == "/src: (run (shell make))"
    long_copy = Copy(("a" * 30, "b" * 30), "/dst/")
    assert heading("/src", long_copy) == (
        f"/src: (copy (src {'a' * 30} {'b' * 30})\n            (dst /dst/))"
    )


def test_multi_line_commands_print_as_continued_strings() -> None:
    run = Run("apt-get update &&\n  apt-get install -y foo")
    text = heading("/", run)
    assert text == (
        '/: (run (shell "apt-get update &&\\\n               \\n  apt-get install -y foo"))'
    )
    spec = Spec("a", (run, Comment("one\ntwo\n")))
    assert parse_spec(print_spec(spec)) == spec


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        ("plain", "plain"),
        ("/usr/local/bin/", "/usr/local/bin/"),
        ("", '""'),
        ("two words", '"two words"'),
        ("tab\there", '"tab\\there"'),
        ("(paren", '"(paren"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("semi;colon", '"semi;colon"'),
        ("back\\slash", '"back\\\\slash"'),
        ("a#|b", '"a#|b"'),
        ("a|#b", '"a|#b"'),
        ("#", "#"),
        ("|", "|"),
        ("it's", "it's"),
        ("line\nbreak", '"line\\nbreak"'),
        ("nul\x00bell\x07del\x7f", '"nul\\000bell\\007del\\127"'),
        ("café", '"café"'),
        ("nbsp\u00a0", '"nbsp\\194\\160"'),
    ],
)
def test_format_atom_quotes_like_sexplib(value: str, printed: str) -> None:
    assert format_atom(value) == printed
    op = parse_spec(f"((from a) (comment {printed}))").ops[0]
    assert op == Comment(value)
