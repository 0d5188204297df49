"""Property tests: generated specs print and parse back equal; no input raises anything but
SpecError (random bytes, mutated valid specs, deep nesting)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obuilder_core.spec import SpecError, check_spec, format_atom, parse_spec, print_spec
from obuilder_core.spec.model import (
    Cache,
    ChildBuild,
    Comment,
    Copy,
    CopySource,
    Env,
    FromBuild,
    FromContext,
    NamedUser,
    Op,
    Run,
    Secret,
    SetUser,
    Shell,
    Spec,
    UnixUser,
    Workdir,
)
from obuilder_core.spec.reader import read_sexp

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.spec"))
SEEDS = [p.read_text() for p in EXAMPLES] + [
    '((build a ((from x) (run (shell "make")))) (from b)'
    " (copy (from (build a)) (src /o) (dst /p) (exclude .git))"
    ' #| block |# #; (env X Y) (comment "esc\\n\\x41\\065") (user (name n)))'
]

# Any text at all: control characters, quotes, parens, non-ASCII, empty.
atoms = st.text(max_size=12)
ids = st.integers(min_value=0, max_value=2**32 - 1)
options = st.lists(st.tuples(atoms, atoms), max_size=2).map(tuple)


def mounts(cls: type[Cache] | type[Secret]) -> st.SearchStrategy[tuple]:
    return st.lists(st.builds(cls, atoms, atoms, options), max_size=2).map(tuple)


def ops(scope: tuple[str, ...]) -> st.SearchStrategy[Op]:
    sources: st.SearchStrategy[CopySource] = st.just(FromContext())
    if scope:
        sources = st.one_of(sources, st.sampled_from(scope).map(FromBuild))
    strs = st.lists(atoms, max_size=3).map(tuple)
    return st.one_of(
        st.builds(Comment, atoms),
        st.builds(Workdir, atoms),
        st.builds(Shell, strs),
        st.builds(Run, atoms, mounts(Cache), strs, mounts(Secret)),
        st.builds(Copy, strs, atoms, sources, strs),
        st.builds(SetUser, st.one_of(st.builds(UnixUser, ids, ids), st.builds(NamedUser, atoms))),
        st.builds(Env, atoms, atoms),
    )


@st.composite
def specs(draw: st.DrawFn, scope: tuple[str, ...] = (), depth: int = 0) -> Spec:
    names = draw(st.lists(atoms, max_size=2 if depth < 2 else 0, unique=True))
    children = []
    visible = scope
    for name in names:
        children.append(ChildBuild(name, draw(specs(visible, depth + 1))))
        visible += (name,)
    body = draw(st.lists(ops(visible), max_size=5))
    return Spec(draw(atoms), tuple(body), tuple(children))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_generated_specs_round_trip(spec: Spec) -> None:
    text = print_spec(spec)
    assert parse_spec(text) == spec
    assert print_spec(parse_spec(text)) == text
    assert check_spec(text) == []


@settings(deadline=None)
@given(atoms)
def test_format_atom_reads_back_as_the_same_string(value: str) -> None:
    printed = format_atom(value)
    assert "\n" not in printed
    assert read_sexp(printed).value == value  # type: ignore[union-attr]


@settings(deadline=None)
@given(st.text())
def test_format_atom_is_bare_only_when_safe(value: str) -> None:
    printed = format_atom(value)
    if printed == value:
        assert value and not any(c in ' \t\n\r\f()";\\' for c in value)


def parse_or_spec_error(data: str | bytes) -> None:
    try:
        parse_spec(data)
    except SpecError as e:
        assert "\n" not in str(e)
    errors = check_spec(data)
    assert all(isinstance(e, SpecError) for e in errors)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_spec_errors(data: bytes) -> None:
    parse_or_spec_error(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='()"\\;#| \nabcrunshellfromcopy0129é\x00', max_size=120))
def test_random_sexp_like_text_raises_only_spec_errors(text: str) -> None:
    parse_or_spec_error(text)


edits = st.lists(
    st.tuples(
        st.sampled_from(["delete", "insert", "swap"]),
        st.integers(0, 10_000),
        st.sampled_from(list('()"\\;#|x 1\n\x00é')),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SEEDS), edits)
def test_mutated_valid_specs_raise_only_spec_errors(seed: str, changes: list) -> None:
    text = list(seed)
    for kind, at, char in changes:
        i = at % (len(text) + 1)
        if kind == "insert":
            text.insert(i, char)
        elif kind == "delete" and i < len(text):
            del text[i]
        elif kind == "swap" and i + 1 < len(text):
            text[i], text[i + 1] = text[i + 1], text[i]
    parse_or_spec_error("".join(text))


@settings(deadline=None)
@given(st.integers(1, 5000), st.sampled_from(["(", "((from a) ", "#| ", "#; ", '"', "(build x "]))
def test_deep_or_unbalanced_nesting_raises_only_spec_errors(n: int, unit: str) -> None:
    parse_or_spec_error(unit * n)
    parse_or_spec_error(unit * n + ")" * n)


def test_deeply_nested_stages_within_the_limit_parse() -> None:
    text = "((from a))"
    for _ in range(40):
        text = f"((build x {text}) (from a))"
    spec = parse_spec(text)
    assert parse_spec(print_spec(spec)) == spec
