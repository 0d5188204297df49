"""Real specs written by others (real_specs/, each naming its source on its first line): every
one parses, checks clean, formats stably with its comments kept, and converts to the
Dockerfile that OBuilder writes.

`NAME.KIND.Dockerfile` beside `NAME.spec` is the expected conversion (KIND: plain, buildkit,
windows, windows-buildkit). Those in OBUILDER_OUTPUT are OBuilder's own output, copied from
its tests (ocurrent/obuilder test/test.ml) and from opam-repo-ci's expectations
(test/specs.expected, written by OBuilder's `Docker.dockerfile_of_spec`). The others are our
output, checked by hand against OBuilder's rules (lib_spec/docker.ml, reference §1.7).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from obuilder_core.cli import main
from obuilder_core.spec import check_spec, format_spec, parse_spec
from obuilder_core.spec.docker import DockerfileError, Escape, dockerfile
from obuilder_core.spec.layout import scan

HERE = Path(__file__).parent / "real_specs"
SPECS = sorted(HERE.glob("*.spec"))
DOCKERFILES = sorted(HERE.glob("*.Dockerfile"))
KINDS: dict[str, tuple[bool, Escape]] = {
    "plain": (False, "unix"),
    "buildkit": (True, "unix"),
    "windows": (False, "windows"),
    "windows-buildkit": (True, "windows"),
}
OBUILDER_OUTPUT = {
    "obuilder-test-docker-buildkit.buildkit",
    "obuilder-test-docker-multi-stage.plain",
    "obuilder-test-docker-multi-stage.windows",
    "obuilder-test-docker-secrets.buildkit",
    "obuilder-test-docker-unix.plain",
    "obuilder-test-docker-windows.windows",
    "opam-repo-ci-debian-13-ocaml-4.08-amd64-lower-bounds.buildkit",
    "opam-repo-ci-debian-13-ocaml-5.4-amd64-with-tests.buildkit",
    "opam-repo-ci-debian-13-ocaml-5.4-amd64.buildkit",
    "opam-repo-ci-freebsd-15.0-ocaml-5.4-amd64.buildkit",
    "opam-repo-ci-list-revdeps-debian-13-ocaml-5.4-amd64.buildkit",
    "opam-repo-ci-macos-homebrew-ocaml-5.4-arm64.buildkit",
}
# OBuilder crashes (`assert false`) on these: a cache mount under the initial Windows user
# has no numeric uid for `--mount=...,uid=`. We refuse them with a located error instead.
WINDOWS_USER_MOUNTS = [
    "obuilder-7e02f0c-example.windows",
    "obuilder-doc-qemu-test",
    "obuilder-example.windows",
]
_SOURCE = re.compile(r"; from [\w.-]+/[\w.-]+/\S+")


def _id(path: Path) -> str:
    return path.name.removesuffix(".spec").removesuffix(".Dockerfile")


def _comments(text: str) -> list[str]:
    return [c.text for c in scan(text).comments]


def test_the_corpus_is_all_there() -> None:
    assert len(SPECS) >= 38
    assert {_id(p).rsplit(".", 1)[0] for p in DOCKERFILES} <= {_id(p) for p in SPECS}
    assert {_id(p) for p in DOCKERFILES} >= OBUILDER_OUTPUT


@pytest.mark.parametrize("path", SPECS, ids=_id)
def test_names_its_source_parses_and_checks_clean(path: Path) -> None:
    text = path.read_text()
    assert _SOURCE.match(text.splitlines()[0]), "first line: ; from OWNER/REPO/PATH ..."
    parse_spec(text, path.name)
    assert check_spec(text, path.name) == []


@pytest.mark.parametrize("path", SPECS, ids=_id)
def test_fmt_is_stable_and_keeps_every_comment(path: Path) -> None:
    text = path.read_text()
    once = format_spec(text, path.name)
    assert format_spec(once, path.name) == once
    assert parse_spec(once) == parse_spec(text)
    assert _comments(once) == _comments(text)


def test_obuilders_own_canonical_printing_is_left_as_it_is() -> None:
    # The expected `Spec.pp` text of OBuilder's test_sexp, under our `; from` line.
    path = HERE / "obuilder-test-sexp-copy.spec"
    assert format_spec(path.read_text()) == path.read_text()


@pytest.mark.parametrize("path", DOCKERFILES, ids=_id)
def test_dockerfile_matches_obuilder(path: Path) -> None:
    name, kind = _id(path).rsplit(".", 1)
    buildkit, escape = KINDS[kind]
    spec = parse_spec((HERE / f"{name}.spec").read_text())
    assert dockerfile(spec, buildkit=buildkit, escape=escape) == path.read_text()


@pytest.mark.parametrize("name", WINDOWS_USER_MOUNTS)
def test_mounts_under_the_windows_user_are_a_located_error(name: str) -> None:
    spec = parse_spec((HERE / f"{name}.spec").read_text(), f"{name}.spec")
    with pytest.raises(DockerfileError, match=r"needs a numeric user") as info:
        dockerfile(spec, buildkit=True, escape="windows")
    assert str(info.value).startswith(f"{name}.spec:")


@pytest.mark.parametrize(("kind", "times"), [("windows-buildkit", 2), ("buildkit", 4)])
def test_ocaml_ci_windows_cache_target_is_the_one_difference(kind: str, times: int) -> None:
    # OBuilder writes `target=c:\opam\...` with single backslashes, which BuildKit's flag
    # parser would read as `c:opam...`; ours are doubled (twice more with the Unix escape,
    # where a backslash is also the expansion's escape). See docs/spec-language.md.
    ours = (HERE / f"ocaml-ci-test-spec-windows.{kind}.Dockerfile").read_text()
    as_obuilder_writes = ours.replace("\\" * times, "\\")
    changed = [
        theirs
        for mine, theirs in zip(ours.splitlines(), as_obuilder_writes.splitlines(), strict=True)
        if mine != theirs
    ]
    mount = "--mount=type=cache,id=opam-archives,target=c:\\opam\\.opam\\download-cache,uid=1000 "
    assert len(changed) == 4 and all(line.startswith("RUN " + mount) for line in changed)


def test_cli_output_ends_with_obuilders_extra_empty_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = HERE / "obuilder-test-docker-buildkit.spec"
    assert main(["dockerfile", "--buildkit", "--escape", "unix", "-f", str(spec)]) == 0
    expected = (HERE / "obuilder-test-docker-buildkit.buildkit.Dockerfile").read_text()
    assert capsys.readouterr().out == expected + "\n"
