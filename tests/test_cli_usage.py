"""Bad command lines are one line on stderr and exit 2, like every other user error."""

from __future__ import annotations

import pytest

from tests.fixtures.cli import run_obuilder

BAD = [
    ([], "the following arguments are required: COMMAND; see obuilder --help"),
    (["frob"], "argument COMMAND: invalid choice: 'frob'"),
    (["--frob"], "see obuilder --help"),
    (["build"], "the following arguments are required: -f/--file, CONTEXT"),
    (["build", "-f"], "argument -f/--file: expected one argument"),
    (["build", "-f", "x.spec"], "the following arguments are required: CONTEXT"),
    (["build", "-f", "x.spec", ".", "--frob"], "unrecognized arguments: --frob"),
    (["build", "-f", "x.spec", ".", "--store", "nowhere"], "argument --store: invalid store"),
    (["build", "-f", "x.spec", ".", "--store", "btrfs:"], "argument --store: invalid store"),
    (["build", "-f", "x.spec", ".", "--memory", "lots"], "argument --memory: invalid size"),
    (["build", "-f", "x.spec", ".", "--pids-limit", "x"], "argument --pids-limit"),
    (["verify", "-f", "x", ".", "--source-date-epoch", "1e9"], "must be whole seconds since 1970"),
    (["delete"], "the following arguments are required: ID"),
    (["clean", "--older-than", "soon"], "argument --older-than: invalid duration 'soon'"),
    (["clean", "--keep-free", "200"], "argument --keep-free: invalid percentage '200'"),
    (["image"], "the following arguments are required: COMMAND; see obuilder image --help"),
    (["image", "import"], "the following arguments are required: NAME, SOURCE"),
    (["image", "import", "Busy Box", "x"], "argument NAME: invalid image name 'Busy Box'"),
    (["image", "ls", "--store", "nowhere"], "argument --store: invalid store"),
    (["fmt", "--check", "--write", "x"], "argument -w/--write: not allowed with argument --check"),
    (["dockerfile"], "the following arguments are required: -f/--file"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD, ids=[" ".join(a) or "-" for a, _ in BAD])
def test_bad_usage_is_one_line(argv: list[str], expected: str) -> None:
    r = run_obuilder(*argv, timeout=60)
    assert r.returncode == 2
    (line,) = r.stderr.splitlines()
    assert line.startswith("obuilder: error: ") and expected in line, line
    assert line.endswith(" --help"), line
    assert r.stdout == ""
