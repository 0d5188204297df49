"""Dockerfile conversion: the reference's output byte for byte, and clear errors for values a
Dockerfile cannot carry. (Hostile strings in bulk: test_docker_safety.py.)"""

from __future__ import annotations

import pytest

from obuilder_core.errors import ObuilderError
from obuilder_core.spec.docker import DockerfileError, dockerfile
from obuilder_core.spec.model import (
    Cache,
    ChildBuild,
    Comment,
    Copy,
    Env,
    FromBuild,
    NamedUser,
    Pos,
    Run,
    Secret,
    SetUser,
    Shell,
    Spec,
    UnixUser,
    Workdir,
)
from tests.spec.test_docker_safety import process_word, read_dockerfile

# The example of reference §1.7, as a model.
DEV = Spec(
    from_="ocaml/opam:debian",
    ops=(
        SetUser(UnixUser(1000, 1000)),
        Run(shell="a\nb", cache=(Cache("c", "/t"),), secrets=(Secret("s", "/s"),)),
    ),
)
EXAMPLE = Spec(
    from_="debian:12",
    child_builds=(ChildBuild("dev", DEV),),
    ops=(
        SetUser(UnixUser(1000, 1000)),
        Copy(src=("/x",), dst="/y", from_=FromBuild("dev")),
        Env("K", 'v"q\\'),
        SetUser(UnixUser(0, 0)),
        Copy(src=("a",), dst="b"),
        Run(shell="x", cache=(Cache("c", "/t", (("sharing", "locked"),)),)),
    ),
)

EXAMPLE_BUILDKIT_UNIX = """\
FROM ocaml/opam:debian as dev
USER 1000:1000
RUN --mount=type=secret,id=s,target=/s,uid=1000 --mount=type=cache,id=c,target=/t,uid=1000 a \\
    b

FROM debian:12
USER 1000:1000
COPY --chown=1000:1000 --from=dev /x /y
ENV K="v\\"q\\\\"
USER 0:0
COPY a b
RUN --mount=type=cache,id=c,target=/t,uid=0,sharing=locked x
"""

EXAMPLE_PLAIN_UNIX = """\
FROM ocaml/opam:debian as dev
USER 1000:1000
RUN a \\
    b

FROM debian:12
USER 1000:1000
COPY --chown=1000:1000 --from=dev /x /y
ENV K="v\\"q\\\\"
USER 0:0
COPY a b
RUN x
"""

# Windows (reference `dockerfile_of_spec ~os:`Windows`): directive line, backtick escape;
# the backslash in the ENV value is an ordinary character there.
EXAMPLE_BUILDKIT_WINDOWS = """\
#escape=`
FROM ocaml/opam:debian as dev
USER 1000:1000
RUN --mount=type=secret,id=s,target=/s,uid=1000 --mount=type=cache,id=c,target=/t,uid=1000 a `
    b

FROM debian:12
USER 1000:1000
COPY --chown=1000:1000 --from=dev /x /y
ENV K="v`"q\\"
USER 0:0
COPY a b
RUN --mount=type=cache,id=c,target=/t,uid=0,sharing=locked x
"""

EXAMPLE_PLAIN_WINDOWS = """\
#escape=`
FROM ocaml/opam:debian as dev
USER 1000:1000
RUN a `
    b

FROM debian:12
USER 1000:1000
COPY --chown=1000:1000 --from=dev /x /y
ENV K="v`"q\\"
USER 0:0
COPY a b
RUN x
"""


@pytest.mark.parametrize(
    ("buildkit", "escape", "expected"),
    [
        (True, "unix", EXAMPLE_BUILDKIT_UNIX),
        (False, "unix", EXAMPLE_PLAIN_UNIX),
        (True, "windows", EXAMPLE_BUILDKIT_WINDOWS),
        (False, "windows", EXAMPLE_PLAIN_WINDOWS),
    ],
)
def test_reference_example_byte_for_byte(buildkit: bool, escape: str, expected: str) -> None:
    assert dockerfile(EXAMPLE, buildkit=buildkit, escape=escape) == expected  # type: ignore[arg-type]


def test_every_simple_op_as_the_reference_prints_it() -> None:
    spec = Spec(
        from_="busybox",
        ops=(
            Comment("A test comment"),
            Workdir("/src"),
            Shell(("/bin/sh", "-c")),
            SetUser(NamedUser("opam")),
            Run(shell="  make  ", network=("host",)),
            Env("DEBUG", "1"),
        ),
    )
    assert dockerfile(spec) == (
        "FROM busybox\n"
        "# A test comment\n"
        "WORKDIR /src\n"
        'SHELL [ "/bin/sh", "-c" ]\n'
        "USER opam\n"
        "RUN make\n"
        'ENV DEBUG="1"\n'
    )


def test_a_named_user_owns_copies_unlike_the_reference() -> None:
    # The reference writes `COPY a b c/`: its copy step leaves a named user's files owned by
    # root. Ours sends the name in the tar entries, so the Dockerfile says the same
    # (docs/spec-language.md, "Differences from OBuilder").
    spec = Spec(
        from_="busybox",
        ops=(SetUser(NamedUser("opam")), Copy(src=("a", "b"), dst="c/", exclude=(".git",))),
    )
    assert dockerfile(spec).splitlines()[1:] == ["USER opam", "COPY --chown=opam a b c/"]
    # Windows containers take no --chown: there the output is the reference's.
    assert dockerfile(spec, escape="windows").splitlines()[2:] == ["USER opam", "COPY a b c/"]


@pytest.mark.parametrize(
    ("escape", "written"),
    [("windows", "c:\\\\opam\\\\cache"), ("unix", "c:\\\\\\\\opam\\\\\\\\cache")],
)
def test_a_windows_cache_target_is_converted_for_buildkit(escape: str, written: str) -> None:
    # ocaml-ci's Windows spec: `(target "c:\\opam\\cache")`. BuildKit's flag parser drops one
    # level of backslashes, then expands the value with the file's escape character; the
    # reference writes the backslashes once, which BuildKit would read as `c:opamcache`.
    spec = Spec(
        from_="w",
        ops=(SetUser(UnixUser(1000, 1000)), Run(shell="x", cache=(Cache("c", "c:\\opam\\cache"),))),
    )
    text = dockerfile(spec, buildkit=True, escape=escape)  # type: ignore[arg-type]
    run = text.splitlines()[-1]
    assert run == f"RUN --mount=type=cache,id=c,target={written},uid=1000 x"
    esc, instructions = read_dockerfile(text)  # what BuildKit makes of it
    (flag,) = instructions[-1].flags
    target = flag.split(",")[2].removeprefix("target=")
    assert process_word(target, esc) == "c:\\opam\\cache"


def test_nested_child_builds_come_first_each_followed_by_an_empty_line() -> None:
    inner = Spec(from_="alpine", ops=(Run(shell="make"),))
    outer = Spec(from_="debian", child_builds=(ChildBuild("inner", inner),))
    spec = Spec(
        from_="busybox",
        child_builds=(ChildBuild("outer", outer), ChildBuild("tools", Spec(from_="busybox"))),
        ops=(Copy(src=("/bin/x",), dst="/x", from_=FromBuild("tools")),),
    )
    assert dockerfile(spec) == (
        "FROM alpine as inner\nRUN make\n\n"
        "FROM debian as outer\n\n"
        "FROM busybox as tools\n\n"
        "FROM busybox\nCOPY --from=tools /bin/x /x\n"
    )


def test_each_stage_starts_as_root() -> None:
    child = Spec(from_="a", ops=(SetUser(UnixUser(5, 6)),))
    spec = Spec(from_="b", child_builds=(ChildBuild("c", child),), ops=(Copy(("x",), "y"),))
    assert dockerfile(spec).endswith("FROM b\nCOPY x y\n")


def test_windows_stages_start_as_container_administrator() -> None:
    spec = Spec(
        from_="mcr.microsoft.com/windows/servercore:ltsc2022",
        ops=(
            Copy(("a",), "b"),
            SetUser(NamedUser("ContainerUser")),
            Copy(("c",), "d"),
            Run(shell="dir", cache=(Cache("c", "/t"),)),
        ),
    )
    # No --chown for a named user on Windows (reference), and no mounts without --buildkit.
    assert dockerfile(spec, escape="windows").splitlines()[2:] == [
        "COPY a b",
        "USER ContainerUser",
        "COPY c d",
        "RUN dir",
    ]


def test_windows_named_user_with_buildkit_mounts_is_a_clear_error() -> None:
    spec = Spec(
        from_="servercore",
        ops=(Run(shell="dir", cache=(Cache("c", "/t"),), pos=Pos("w.spec", 3, 2)),),
    )
    with pytest.raises(DockerfileError) as info:
        dockerfile(spec, buildkit=True, escape="windows")
    message = str(info.value)
    assert message.startswith("w.spec:3:2: cannot convert to a Dockerfile: cache mount")
    assert "ContainerAdministrator" in message and "(user (uid U) (gid G))" in message


# --- values that need quoting -----------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "line"),
    [
        (Workdir("/my dir"), 'WORKDIR "/my dir"'),
        (Workdir('/$HOME/"x"\\'), 'WORKDIR "/\\$HOME/\\"x\\"\\\\"'),
        (Workdir("--help"), 'WORKDIR "--help"'),
        (Env("PATH", "$PATH:/x"), 'ENV PATH="\\$PATH:/x"'),
        (Shell(('a"b', "c\\d", "e\nf")), 'SHELL [ "a\\"b", "c\\\\d", "e\\nf" ]'),
        (Copy(("a b",), "/c d/"), 'COPY ["a b", "/c d/"]'),
        (Copy(("--from=x",), "/y"), 'COPY ["--from=x", "/y"]'),
        (Copy(("new\nline", "$x"), "/"), 'COPY ["new\\nline", "\\\\$x", "/"]'),
        (SetUser(NamedUser("my user")), 'USER "my user"'),
        (Comment("two\nlines"), "# two\n# lines"),
        (Comment(""), "# "),
    ],
)
def test_unusual_values_are_quoted(op: object, line: str) -> None:
    text = dockerfile(Spec(from_="busybox", ops=(op,)))  # type: ignore[arg-type]
    assert text == f"FROM busybox\n{line}\n"


def test_run_continuation_lines_that_docker_would_skip_are_dropped() -> None:
    # A trailing blank or `# ...` line would end with no continuation: Docker would then read
    # the next instruction as part of this RUN.
    spec = Spec(from_="b", ops=(Run(shell="echo a &&\n# note\n\n  echo b\n\n"), Copy(("x",), "y")))
    assert dockerfile(spec) == "FROM b\nRUN echo a && \\\n    echo b\nCOPY x y\n"


@pytest.mark.parametrize(
    ("op", "fragment"),
    [
        (Workdir("/a\nRUN evil"), 'workdir path "/a\\nRUN evil" contains a line break'),
        (Workdir(""), "workdir path is empty"),
        (Env("K", "a\nRUN x"), 'env K value "a\\nRUN x" contains a line break'),
        (Env("A B", "v"), 'env name "A B" is not a valid Dockerfile ENV name'),
        (Env("A=B", "v"), 'env name "A=B"'),
        (SetUser(NamedUser("a:b")), "contains ':'"),
        (SetUser(NamedUser("a\rb")), "contains a line break"),
        (Shell(()), "(shell) with no arguments"),
        (Run(shell=""), "run command is empty"),
        (Run(shell="--mount=type=bind,target=/h cat /h"), "would be read as a RUN flag"),
        (Run(shell='["/bin/evil", "x"]'), "would be read as a JSON argv"),
        (Run(shell="echo \\"), "line continuation"),
        (Run(shell="a\rRUN b"), "contains a line break"),
        (Copy((), "/x"), "copy has no source paths"),
        (Copy(("*.ml",), "/x"), "wildcard"),
        (Copy(("a",), "b", from_=FromBuild("nope")), 'unknown build "nope"'),
    ],
)
def test_unrepresentable_values_are_one_line_errors(op: object, fragment: str) -> None:
    spec = Spec(from_="busybox", ops=(op,))  # type: ignore[arg-type]
    with pytest.raises(DockerfileError) as info:
        dockerfile(spec)
    assert isinstance(info.value, ObuilderError)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("mount", "fragment"),
    [
        (Cache("my cache", "/t"), 'cache mount id "my cache" cannot be written in a'),
        (Cache("c", "/t,type=bind"), "cache mount target"),
        (Cache("c", "/t", (("type", "bind"),)), 'buildkit option "type" is not allowed'),
        (Cache("c", "/t", (("sharing", "a b"),)), "cache mount sharing"),
        (Cache("c", "/càche"), "cache mount target"),
    ],
)
def test_mount_values_that_would_break_the_flag_are_errors(mount: Cache, fragment: str) -> None:
    spec = Spec(from_="busybox", ops=(Run(shell="x", cache=(mount,)),))
    with pytest.raises(DockerfileError, match="cannot convert") as info:
        dockerfile(spec, buildkit=True)
    assert fragment in str(info.value)
    # Without --buildkit the mounts are dropped, so nothing is wrong.
    assert dockerfile(spec) == "FROM busybox\nRUN x\n"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (Spec(from_="a b"), 'base image "a b" is not an image reference'),
        (Spec(from_="--platform=x y"), "is not an image reference"),
        (
            Spec(from_="b", child_builds=(ChildBuild("my build", Spec(from_="a")),)),
            'build name "my build" is not a valid Docker stage name',
        ),
        (
            Spec(
                from_="b",
                child_builds=(
                    ChildBuild("x", Spec(from_="a", child_builds=(ChildBuild("y", Spec("a")),))),
                    ChildBuild("Y", Spec(from_="a")),
                ),
            ),
            'build name "Y" is used by two stages',
        ),
        (
            Spec(from_="tools", child_builds=(ChildBuild("tools", Spec(from_="a")),)),
            "has the name of a build stage",
        ),
    ],
)
def test_stage_errors(spec: Spec, fragment: str) -> None:
    with pytest.raises(DockerfileError) as info:
        dockerfile(spec)
    assert fragment in str(info.value)


def test_error_names_the_position_of_the_op() -> None:
    spec = Spec(from_="b", ops=(Workdir("a\nb", pos=Pos("x.spec", 4, 2)),))
    with pytest.raises(DockerfileError) as info:
        dockerfile(spec)
    assert str(info.value).startswith("x.spec:4:2: cannot convert to a Dockerfile: workdir path")


def test_unknown_escape_style() -> None:
    with pytest.raises(ObuilderError, match="unknown Dockerfile escape style"):
        dockerfile(Spec(from_="b"), escape="mac")  # type: ignore[arg-type]
