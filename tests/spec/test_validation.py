"""Build scope (reference §1.4), check_spec's multi-error reports, load_spec and examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from obuilder_core.spec import (
    SpecError,
    check_spec,
    load_spec,
    parse_spec,
    print_spec,
    validate_spec,
)
from obuilder_core.spec.model import ChildBuild, Copy, FromBuild, Pos, Spec

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.spec"))


def copy_from(name: str) -> str:
    return f"(copy (from (build {name})) (src /a) (dst /b))"


def test_a_stage_sees_earlier_siblings_and_its_parents_scope() -> None:
    parse_spec(f"""
    ((build one ((from a)))
     (build two ((from a) {copy_from("one")}))
     (build three ((build inner ((from a) {copy_from("two")}))
                   (from a) {copy_from("inner")} {copy_from("one")}))
     (from a) {copy_from("one")} {copy_from("two")} {copy_from("three")})
    """)


def test_a_stage_does_not_see_later_siblings() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(f"((build one ((from a) {copy_from('two')})) (build two ((from a))) (from a))")
    assert str(info.value).startswith('<spec>:1:23: unknown build "two" in (copy ')
    assert info.value.hint == "no (build NAME SPEC) stage is in scope here"


def test_a_stage_does_not_see_itself() -> None:
    errors = check_spec(f"((build one ((from a) {copy_from('one')})) (from a))")
    assert [e.message.split(" in ")[0] for e in errors] == ['unknown build "one"']


def test_validate_spec_checks_specs_built_in_code() -> None:
    good = Spec("a", (Copy(("x",), "y", FromBuild("s")),), (ChildBuild("s", Spec("b")),))
    assert validate_spec(good) == []
    where = Pos("gen", 3, 1)
    bad = Spec("a", (Copy(("x",), "y", FromBuild("t"), pos=where),), (ChildBuild("s", Spec("b")),))
    [error] = validate_spec(bad)
    assert str(error) == (
        'gen:3:1: unknown build "t" in (copy (from (build t)) (src x) (dst y)); did you mean "s"?'
    )


def test_check_spec_reports_every_bad_op_and_field() -> None:
    text = """((build s ((from a) (frob)))
 (from a)
 (run (shell x y) (foo 1))
 (copy (src a))
 (user (uid x) (gid -2))
 (env A)
 (copy (from (build t)) (src a) (dst b))
 (workdir /ok)
)"""
    errors = check_spec(text, "multi.spec")
    assert [(e.pos.line, e.pos.col) for e in errors if e.pos] == [
        (1, 21),
        (3, 7),
        (3, 19),
        (4, 2),
        (5, 13),
        (5, 21),
        (6, 2),
        (7, 2),
    ]
    assert [e.message.split(":")[0].split(" in ")[0] for e in errors] == [
        "unknown operation frob",
        "(shell x y)",
        "unknown field foo",
        "(copy (src a)) is missing its (dst PATH) field",
        "uid must be a whole number from 0 to 4294967295, found x",
        "gid must be a whole number from 0 to 4294967295, found -2",
        "(env A)",
        'unknown build "t"',
    ]


def test_check_spec_reports_the_fields_of_a_bad_run_together() -> None:
    errors = check_spec("((from a) (run (network (x)) (shell x y) (cache c)))")
    assert len(errors) == 3


def test_a_broken_stage_still_puts_its_name_in_scope() -> None:
    errors = check_spec(f"((build s ((from a) (frob))) (from a) {copy_from('s')})")
    assert [e.message for e in errors] == ["unknown operation frob in (frob)"]


def test_check_spec_stops_at_a_syntax_error() -> None:
    [error] = check_spec('((from a) (frob) (run (shell "x)))')
    assert error.message == "this string is never closed"


def test_check_spec_of_a_valid_spec_is_empty() -> None:
    assert check_spec("((from a))") == []


def test_load_spec_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.spec"
    path.write_text("((from a)\n (wrkdir /x))")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}:2:2: unknown operation wrkdir")
    assert str(info.value).endswith("did you mean workdir?")


def test_load_spec_of_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"cannot read spec file .*nope\.spec: No such file"):
        load_spec(tmp_path / "nope.spec")
    with pytest.raises(SpecError, match=r"cannot read spec file .*: Is a directory"):
        load_spec(tmp_path)


def test_spec_errors_pickle() -> None:
    import pickle

    error = check_spec("((from a) (Run))", "p.spec")[0]
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.pos, copy.hint) == (str(error), error.pos, error.hint)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid_and_canonical(path: Path) -> None:
    spec = load_spec(path)
    assert print_spec(spec) == path.read_text()
    assert spec.from_ == "busybox"


def test_the_examples_are_there() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "hello.spec",
        "multi-stage.spec",
        "caches-and-secrets.spec",
        "copy-excludes.spec",
    }
