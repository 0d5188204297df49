"""The `(uncached)` run field: parsing, canonical printing, Dockerfile conversion."""

from __future__ import annotations

import pytest

from obuilder_core.spec import SpecError, parse_spec, print_spec
from obuilder_core.spec.docker import dockerfile
from obuilder_core.spec.model import Run


def test_uncached_round_trips() -> None:
    s = parse_spec('((from a) (run (uncached) (shell "pytest")))', "t.spec")
    op = s.ops[0]
    assert isinstance(op, Run) and op.uncached
    printed = print_spec(s)
    assert "(run (uncached)" in printed
    assert parse_spec(printed, "t.spec") == s
    assert not parse_spec('((from a) (run (shell "x")))', "t.spec").ops[0].uncached  # type: ignore[union-attr]


def test_uncached_takes_no_arguments() -> None:
    with pytest.raises(SpecError, match=r"\(uncached\) takes no arguments"):
        parse_spec('((from a) (run (uncached yes) (shell "pytest")))', "t.spec")


def test_dockerfile_marks_the_step() -> None:
    s = parse_spec('((from a) (run (uncached) (shell "pytest")))', "t.spec")
    text = dockerfile(s)
    assert "# (uncached): obuilder re-runs this step on every build\nRUN pytest" in text
