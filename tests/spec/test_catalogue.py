"""One test per row of the reference's parse-error catalogue (§1.5), plus the scope errors
of §1.4: each must be a SpecError at the offending form's line:col, with a clear message."""

from __future__ import annotations

import pytest

from obuilder_core.errors import ObuilderError
from obuilder_core.spec import SpecError, parse_spec
from obuilder_core.spec.model import SetUser, UnixUser


def error_of(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "example.spec")
    return info.value


# (id, spec text, expected str(error)); positions point at the offending form.
CATALOGUE = [
    (
        "atom-spec",
        "\n  foo\n",
        "example.spec:2:3: expected a spec ((from IMAGE) OP...), found the atom foo",
    ),
    (
        "empty-list",
        "; nothing here\n()\n",
        "example.spec:2:1: this spec has no (from IMAGE); e.g. ((from busybox) (run (shell ...)))",
    ),
    (
        "op-before-from",
        "(\n (workdir /x))",
        "example.spec:2:2: (workdir /x) comes before (from IMAGE); "
        "this spec has no (from IMAGE): add one before its operations",
    ),
    (
        "op-before-existing-from",
        "(\n (workdir /x)\n (from a))",
        "example.spec:2:2: (workdir /x) comes before (from IMAGE); a spec lists its (build ...) "
        "stages, then (from IMAGE), then its operations",
    ),
    (
        "only-builds",
        "((build x ((from a))))",
        "example.spec:1:1: this spec has no (from IMAGE); e.g. ((from busybox) (run (shell ...)))",
    ),
    (
        "unknown-item-before-from",
        "((frm a))",
        "example.spec:1:2: expected (build NAME SPEC) or (from IMAGE), found (frm a); "
        "did you mean from?",
    ),
    (
        "from-not-atom",
        "((from (a b)))",
        "example.spec:1:2: expected (from IMAGE) naming one image, found (from (a b)); "
        'e.g. (from busybox) or (from "debian:12")',
    ),
    (
        "build-without-name",
        "((build ((from a)))\n (from a))",
        "example.spec:1:2: expected (build NAME SPEC), found (build ((from a))); "
        "the stage needs a name: (build NAME ((from IMAGE) ...))",
    ),
    (
        "build-spec-atom",
        "((build x\n    foo)\n (from a))",
        "example.spec:2:5: expected a spec ((from IMAGE) OP...), found the atom foo",
    ),
    (
        "atom-op",
        "((from a)\n run)",
        "example.spec:2:2: operation run must be in parentheses; write (run ...)",
    ),
    (
        "build-after-from",
        "((from a)\n (build x ((from b))))",
        "example.spec:2:2: (build x ((from b))) comes after (from IMAGE); "
        "(build ...) stages go before the spec's (from IMAGE)",
    ),
    (
        "second-from",
        "((from a)\n (from b))",
        "example.spec:2:2: second (from ...) in one spec: (from b); a spec has one (from IMAGE); "
        "put other stages in (build NAME SPEC) before it",
    ),
    (
        "unknown-op",
        "((from a)\n (frob x))",
        "example.spec:2:2: unknown operation frob in (frob x); "
        "operations are comment, workdir, shell, run, copy, user or env",
    ),
    (
        "misspelt-op",
        "((from a)\n (rnu (shell x)))",
        "example.spec:2:2: unknown operation rnu in (rnu (shell x)); did you mean run?",
    ),
    (
        "run-missing-shell",
        "((from a)\n (run (network host)))",
        "example.spec:2:2: (run (network host)) is missing its (shell COMMAND) field; "
        'e.g. (run (shell "make install"))',
    ),
    (
        "run-extra-field",
        "((from a)\n (run (shell x) (foo bar)))",
        "example.spec:2:17: unknown field foo in (run ...); "
        "its fields are (cache ...), (network ...), (secrets ...), (uncached ...) "
        "or (shell ...)",
    ),
    (
        "run-duplicate-field",
        "((from a)\n (run (shell x)\n      (shell y)))",
        "example.spec:3:7: duplicate field (shell ...) in (run ...); "
        "it is already given at line 2, column 7",
    ),
    (
        "run-shell-two-atoms",
        "((from a)\n (run (shell x y)))",
        'example.spec:2:7: (shell x y): expected exactly one command string; quote it: (shell "x y")',  # noqa: E501
    ),
    (
        "capitalised-op",
        "((from a)\n (Run (shell x)))",
        "example.spec:2:2: unknown operation Run in (Run (shell x)); "
        "did you mean run? operation names are lower case",
    ),
    (
        "cache-no-target",
        "((from a)\n (run (shell x) (cache (c))))",
        "example.spec:2:24: cache c is missing its (target PATH) field; e.g. (c (target /path))",
    ),
    (
        "cache-atom",
        "((from a)\n (run (shell x) (cache c)))",
        "example.spec:2:24: expected a cache mount (ID (target PATH)), found the atom c; "
        "write (c (target /path))",
    ),
    (
        "buildkit-options-pairs",
        "((from a)\n (run (shell x)\n"
        "      (cache (c (target /t) (buildkit_options (sharing locked))))))",
        "example.spec:3:29: expected (buildkit_options ((KEY VALUE)...)), found "
        "(buildkit_options (sharing locked)); "
        "the pairs need their own parentheses: (buildkit_options ((sharing locked)))",
    ),
    (
        "secret-no-target",
        "((from a)\n (run (shell x) (secrets (s))))",
        "example.spec:2:26: secret s is missing its (target PATH) field; e.g. (s (target /path))",
    ),
    (
        "secret-atom",
        "((from a)\n (run (shell x) (secrets s)))",
        "example.spec:2:26: expected a secret mount (ID (target PATH)), found the atom s; "
        "write (s (target /path))",
    ),
    (
        "copy-missing-dst",
        "((from a)\n (copy (src a)))",
        "example.spec:2:2: (copy (src a)) is missing its (dst PATH) field; "
        "e.g. (copy (src main.c Makefile) (dst /src/))",
    ),
    (
        "copy-missing-src",
        "((from a)\n (copy (dst a)))",
        "example.spec:2:2: (copy (dst a)) is missing its (src PATH...) field; "
        "e.g. (copy (src main.c Makefile) (dst /src/))",
    ),
    (
        # The reference stops the build at this copy (§2.7); the parser says so, and where.
        "copy-src-dotdot",
        "((from a)\n (copy (src ok a/../b) (dst /x)))",
        "example.spec:2:16: Can't use .. in source paths! (in \"a/../b\"); "
        "a copy reads only what is inside its source directory",
    ),
    (
        "copy-dst-two-atoms",
        "((from a)\n (copy (src a) (dst b c)))",
        'example.spec:2:16: (dst b c): expected exactly one destination PATH; quote it: (dst "b c")',  # noqa: E501
    ),
    (
        "copy-bad-source",
        "((from a)\n (copy (from foo) (src a) (dst b)))",
        "example.spec:2:8: expected (from context) or (from (build NAME)), found (from foo); "
        "to copy from a stage, write (from (build foo))",
    ),
    (
        "user-missing-gid",
        "((from a)\n (user (uid 1)))",
        "example.spec:2:2: (user (uid 1)) is missing (gid N); e.g. (user (uid 1000) (gid 1000))",
    ),
    (
        "user-uid-not-int",
        "((from a)\n (user (uid x) (gid 2)))",
        "example.spec:2:13: uid must be a whole number from 0 to 4294967295, found x",
    ),
    (
        "user-gid-too-big",
        "((from a)\n (user (uid 1) (gid 4294967296)))",
        "example.spec:2:21: gid must be a whole number from 0 to 4294967295, found 4294967296",
    ),
    (
        "user-uid-huge",
        "((from a)\n (user (uid " + "9" * 5000 + ") (gid 1)))",
        # the message repeats at most 60 characters of the input: one readable line
        "example.spec:2:13: uid must be a whole number from 0 to 4294967295, found "
        + "9" * 57
        + "...",
    ),
    (
        "user-uid-negative",
        "((from a)\n (user (uid -1) (gid 1)))",
        "example.spec:2:13: uid must be a whole number from 0 to 4294967295, found -1",
    ),
    (
        "env-one-arg",
        "((from a)\n (env A))",
        "example.spec:2:2: (env A): expected (env NAME VALUE); "
        "e.g. (env PATH /usr/local/bin:/usr/bin:/bin)",
    ),
    (
        "env-three-args",
        "((from a)\n (env A B C))",
        'example.spec:2:2: (env A B C): expected (env NAME VALUE); quote the value: (env A "B C")',
    ),
    (
        "workdir-two-args",
        "((from a)\n (workdir a b))",
        'example.spec:2:2: (workdir a b): expected exactly one PATH; quote it: (workdir "a b")',
    ),
    (
        "workdir-no-arg",
        "((from a)\n (workdir))",
        "example.spec:2:2: (workdir): expected exactly one PATH; e.g. (workdir /src)",
    ),
    (
        "comment-two-args",
        "((from a)\n (comment a b))",
        'example.spec:2:2: (comment a b): expected exactly one TEXT; quote it: (comment "a b")',
    ),
    (
        "unknown-build-none-in-scope",
        "((from a)\n (copy (from (build x)) (src a) (dst b)))",
        'example.spec:2:2: unknown build "x" in (copy (from (build x)) (src a) (dst b)); '
        "no (build NAME SPEC) stage is in scope here",
    ),
    (
        "unknown-build-one-in-scope",
        "((build one ((from a)))\n (from a)\n (copy (from (build onf)) (src a) (dst b)))",
        'example.spec:3:2: unknown build "onf" in (copy (from (build onf)) (src a) (dst b)); '
        'did you mean "one"?',
    ),
    (
        "unknown-build-three-in-scope",
        "((build one ((from a)))\n (build two ((from a)))\n (build three ((from a)))\n (from a)\n"
        " (copy (from (build x)) (src a) (dst b)))",
        'example.spec:5:2: unknown build "x" in (copy (from (build x)) (src a) (dst b)); '
        'did you mean one of "one", "three" or "two"?',
    ),
    (
        "unknown-build-grandchild",
        "((build outer ((build inner ((from a))) (from a)))\n (from a)\n"
        " (copy (from (build inner)) (src a) (dst b)))",
        'example.spec:3:2: unknown build "inner" in (copy (from (build inner)) (src a) (dst b)); '
        'did you mean "outer"?',
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in CATALOGUE], ids=[c[0] for c in CATALOGUE]
)
def test_catalogue_row(text: str, expected: str) -> None:
    e = error_of(text)
    assert str(e) == expected
    assert "\n" not in str(e)
    assert isinstance(e, ObuilderError)


def test_error_attributes_split_position_message_and_hint() -> None:
    e = error_of("((from a)\n (Run (shell x)))")
    assert e.pos is not None
    assert (e.pos.file, e.pos.line, e.pos.col) == ("example.spec", 2, 2)
    assert e.message == "unknown operation Run in (Run (shell x))"
    assert e.hint == "did you mean run? operation names are lower case"


def test_long_forms_are_shortened_in_messages() -> None:
    text = "((from a)\n (run (network host) (cache (c (target /a/very/long/path/to/a/cache)))))"
    assert str(error_of(text)) == (
        "example.spec:2:2: (run ...) is missing its (shell COMMAND) field; "
        'e.g. (run (shell "make install"))'
    )


def test_user_fields_in_either_order() -> None:
    """Unlike OBuilder (reference §7.26), gid may come before uid."""
    spec = parse_spec("((from a) (user (gid 2) (uid 1)))")
    assert spec.ops == (SetUser(UnixUser(1, 2)),)


def test_user_name_and_uid_together_is_an_error() -> None:
    assert "either (name NAME) or (uid U) (gid G)" in str(
        error_of("((from a) (user (name x) (uid 1) (gid 1)))")
    )


def test_duplicate_sibling_builds_are_rejected() -> None:
    e = error_of("((build x ((from a)))\n (build x ((from b)))\n (from a))")
    assert str(e) == (
        'example.spec:2:2: build "x" is defined twice in this spec; '
        "the first one is at line 1, column 2; give each stage its own name"
    )


@pytest.mark.parametrize(
    "text",
    [
        "((from a) (shell))",
        "((from a) (copy (src) (dst a)))",
        "((from a) (run (network) (shell x)))",
        "((from a) (copy (src a) (dst b) (exclude)))",
        "((from a) (run (network host foo) (shell x)))",
        '((from a) (run (cache ("my cache" (target /t))) (shell x)))',
        "((from a) (workdir ../bar))",
        "((from a) (copy (from context) (src a) (dst b)))",
        "((from a) (run (shell x) (cache (c (buildkit_options ()) (target /t)))))",
    ],
)
def test_accepted_oddities(text: str) -> None:
    """Forms OBuilder accepts at parse time (failing, if at all, only at build time)."""
    parse_spec(text)
