"""Property: no spec string can add a Dockerfile instruction or flag (reference §7 item 9).

`read_dockerfile` below is a small Dockerfile reader written after moby/buildkit's parser (escape
directive, line continuation, comment and blank lines inside continuations, builder flags), but
splitting lines at every character Python counts as a line break, so it is stricter than Docker.
For generated specs full of hostile strings, the conversion either raises a one-line
DockerfileError or yields exactly one instruction per emitting op, with the right keyword, the
expected flags and, where the lexer expands the value, the original value read back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from obuilder_core.spec.docker import DockerfileError, dockerfile
from obuilder_core.spec.model import (
    Cache,
    ChildBuild,
    Comment,
    Copy,
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

# --- a Dockerfile reader ---------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: tuple[str, ...]
    args: str


def _is_skipped(line: str) -> bool:
    stripped = line.lstrip()
    return stripped == "" or stripped.startswith("#")


def read_dockerfile(text: str) -> tuple[str, list[Instruction]]:
    """The escape character and the instructions of `text`, as Docker's parser groups them."""
    lines = text.splitlines()
    esc = "\\"
    start = 0
    if lines and (m := re.fullmatch(r"#\s*escape\s*=\s*(\S)\s*", lines[0])):
        esc, start = m.group(1), 1
    continuation = re.compile(re.escape(esc) + r"[ \t]*$")
    instructions = []
    i = start
    while i < len(lines):
        line = lines[i].lstrip()
        i += 1
        if _is_skipped(line):
            continue
        while continuation.search(line):
            line = continuation.sub("", line)
            while i < len(lines) and _is_skipped(lines[i]):
                i += 1  # Docker skips comment and blank lines inside a continuation
            if i == len(lines):
                break
            line += lines[i]
            i += 1
        keyword, _, rest = line.strip().partition(" ")
        flags, args = extract_flags(rest)
        instructions.append(Instruction(keyword, flags, args.strip()))
    return esc, instructions


def extract_flags(rest: str) -> tuple[tuple[str, ...], str]:
    """Leading `--flag` words (quotes and backslashes as buildkit's extractBuilderFlags)."""
    flags: list[str] = []
    pos = 0
    while True:
        while pos < len(rest) and rest[pos].isspace():
            pos += 1
        if not rest.startswith("--", pos):
            return tuple(flags), rest[pos:]
        word, quote = "", ""
        while pos < len(rest) and (quote or not rest[pos].isspace()):
            ch = rest[pos]
            if quote and ch == quote:
                quote = ""
            elif not quote and ch in "'\"":
                quote = ch
            elif ch == "\\" and pos + 1 < len(rest):
                pos += 1
                word += rest[pos]
            else:
                word += ch
            pos += 1
        if word == "--":
            return tuple(flags), rest[pos:]
        flags.append(word)


def process_word(word: str, esc: str) -> str:
    """Docker's lexer on one word (quotes, escapes); fails on an unescaped `$` (expansion)."""
    out: list[str] = []
    i = 0
    while i < len(word):
        ch = word[i]
        if ch == esc:
            out.append(word[i + 1 : i + 2])
            i += 2
        elif ch == "'":
            end = word.index("'", i + 1)
            out.append(word[i + 1 : end])
            i = end + 1
        elif ch == '"':
            i += 1
            while word[i] != '"':  # IndexError: unterminated quote
                assert word[i] != "$", f"unescaped $ in {word!r}"
                if word[i] == esc and word[i + 1 : i + 2] in ('"', "$", esc):
                    i += 1
                out.append(word[i])
                i += 1
            i += 1
        else:
            assert ch != "$", f"unescaped $ in {word!r}"
            out.append(ch)
            i += 1
    return "".join(out)


# --- what each op must become ------------------------------------------------------------


def check_instruction(ins: Instruction, op: Op, esc: str, buildkit: bool) -> None:
    match op:
        case Workdir(path=path):
            assert (ins.keyword, ins.flags) == ("WORKDIR", ())
            assert process_word(ins.args, esc) == path
        case Shell(args=args):
            assert (ins.keyword, ins.flags) == ("SHELL", ())
            assert json.loads(ins.args) == list(args)
        case SetUser(user=user):
            assert (ins.keyword, ins.flags) == ("USER", ())
            expected = f"{user.uid}:{user.gid}" if isinstance(user, UnixUser) else user.name
            assert process_word(ins.args, esc) == expected
        case Env(name=name, value=value):
            assert (ins.keyword, ins.flags) == ("ENV", ())
            key, _, quoted = ins.args.partition("=")
            assert (key, process_word(quoted, esc)) == (name, value)
        case Run(cache=cache, secrets=secrets, shell=shell):
            assert ins.keyword == "RUN"
            mounts = [*secrets, *cache] if buildkit else []
            assert len(ins.flags) == len(mounts)
            for flag, m in zip(ins.flags, mounts, strict=True):
                kind = "secret" if isinstance(m, Secret) else "cache"
                assert flag.startswith("--mount=")
                # BuildKit splits the mount at commas, then expands each value (parseMount).
                pairs = [p.partition("=") for p in flag.removeprefix("--mount=").split(",")]
                read = [(k, process_word(v, esc)) for k, _, v in pairs]
                assert read[:3] == [("type", kind), ("id", m.id), ("target", m.target)]
                assert read[3][0] == "uid" and read[4:] == list(m.buildkit_options)
            if "\n" not in shell:
                assert ins.args == shell.strip()  # Docker trims Unicode blanks too
        case Copy(src=src, dst=dst, from_=source):
            assert ins.keyword == "COPY"
            assert all(f.startswith(("--chown=", "--from=")) for f in ins.flags)
            if isinstance(source, FromBuild):
                assert f"--from={source.name}" in ins.flags
            words = json.loads(ins.args) if ins.args.startswith("[") else ins.args.split()
            assert [process_word(w, esc) for w in words] == [*src, dst]
        case _:
            raise AssertionError(f"no instruction expected for {op!r}")


def check_stage(spec: Spec, name: str | None, instructions: list[Instruction], esc: str, bk: bool):
    """Check `spec`'s instructions at the head of `instructions`; return the rest."""
    for child in spec.child_builds:
        instructions = check_stage(child.spec, child.name, instructions, esc, bk)
    head, instructions = instructions[0], instructions[1:]
    assert head.keyword == "FROM" and head.flags == ()
    assert head.args.split() == [spec.from_] + (["as", name] if name else [])
    for op in spec.ops:
        if isinstance(op, Comment):
            continue
        check_instruction(instructions[0], op, esc, bk)
        instructions = instructions[1:]
    return instructions


# --- hostile strings and specs -------------------------------------------------------------

FRAGMENTS = [
    "\n", "\r", "\r\n", "\t", " ", "\\", "`", '"', "'", "$", "${X}", "#", "[", "]", ",", "=",
    "--", "--mount=type=bind,source=/,target=/h", "\nRUN evil", "\n# c\n", " \\\n", "\\\n",
    "`\n", "\x85", "\u2028", "\xa0", "\x0b", "\x0c", "\x00", "é", "*", "-", ":", "/", "a", "x1",
    '["a"]', "\nFROM x", "\n\n", "   ",
]  # fmt: skip
hostile = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=6).map("".join)
# Mostly tame values, so that most specs convert and their instructions get checked.
tame = st.sampled_from(["a", "/src", "/t", "x y", "v1.0", "été", "C:\\w", "-x"])
value = st.one_of(tame, tame, tame, hostile)
good_names = ["a", "dev", "Tools", "x.y-z_1"]
names = st.sampled_from([*good_names * 8, "my build", "--x", "a\nb", "1a"])
good_images = ["busybox", "debian:12", "a/b@sha256:00"]
images = st.sampled_from([*good_images * 10, "a b", "--p=x y", "x\nRUN y"])


def mounts(kind: type[Cache] | type[Secret]) -> st.SearchStrategy[tuple[Cache | Secret, ...]]:
    keys = st.sampled_from(["sharing", "mode", "sharing", "mode", "type", "a b"])
    options = st.lists(st.tuples(keys, value), max_size=2).map(tuple)
    return st.lists(st.builds(kind, value, value, options), max_size=2).map(tuple)


users = st.one_of(
    st.builds(UnixUser, st.integers(0, 70000), st.integers(0, 70000)),
    st.builds(NamedUser, value),
)


def ops(stage_names: list[str]) -> st.SearchStrategy[Op]:
    sources = st.just(FromBuild(stage_names[0])) if stage_names else st.nothing()
    return st.one_of(
        st.builds(Comment, hostile),
        st.builds(Workdir, value),
        st.builds(Shell, st.lists(value, max_size=3).map(tuple)),
        st.builds(SetUser, users),
        st.builds(Env, st.one_of(st.just("K"), value), value),
        st.builds(Run, value, cache=mounts(Cache), secrets=mounts(Secret)),
        st.builds(
            Copy,
            st.lists(value, min_size=1, max_size=3).map(tuple),
            value,
            from_=st.one_of(st.just(FromContext()), sources),
        ),
    )


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    children = []
    for name in draw(st.lists(names, max_size=2, unique=True)):
        children.append(ChildBuild(name, Spec(draw(images), tuple(draw(st.lists(ops([])))))))
    own_ops = draw(st.lists(ops([c.name for c in children]), max_size=6))
    return Spec(draw(images), tuple(own_ops), tuple(children))


def convert_and_check(spec: Spec, buildkit: bool, escape: str) -> bool:
    """True if converted and checked, False if refused with a proper one-line error."""
    try:
        text = dockerfile(spec, buildkit=buildkit, escape=escape)  # type: ignore[arg-type]
    except DockerfileError as e:
        assert "\n" not in str(e) and str(e).startswith("cannot convert to a Dockerfile: ")
        return False
    esc, instructions = read_dockerfile(text)
    assert esc == ("`" if escape == "windows" else "\\")
    assert check_stage(spec, None, instructions, esc, buildkit) == []
    return True


@settings(max_examples=400, deadline=None)
@given(specs(), st.booleans(), st.sampled_from(["unix", "windows"]))
def test_hostile_specs_never_inject_instructions_or_flags(spec, buildkit, escape) -> None:
    event("converted" if convert_and_check(spec, buildkit, escape) else "refused")


no_breaks = hostile.map(lambda s: re.sub("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]", "", s))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(Comment, hostile),
            st.builds(Shell, st.lists(hostile, min_size=1, max_size=3).map(tuple)),
            st.builds(Env, st.just("K"), no_breaks),
            st.builds(Workdir, no_breaks.filter(bool)),
            st.builds(
                Copy,
                st.lists(
                    hostile.map(lambda s: re.sub("[*?[]", "", s)).filter(bool), min_size=1
                ).map(tuple),
                hostile.filter(bool),
            ),
        ),
        max_size=6,
    ),
    st.sampled_from(["unix", "windows"]),
)
def test_representable_hostile_values_are_converted_not_refused(ops_, escape) -> None:
    # Guards the property above against passing by refusing everything.
    assert convert_and_check(Spec("busybox", tuple(ops_)), False, escape)


def test_the_reader_catches_what_the_reference_would_emit() -> None:
    # The reference writes these values raw; the reader must see the damage, or the properties
    # above would prove nothing.
    _, ins = read_dockerfile("FROM a\nWORKDIR /a\nRUN evil\n")  # (workdir "/a\nRUN evil")
    assert [i.keyword for i in ins] == ["FROM", "WORKDIR", "RUN"]
    _, ins = read_dockerfile("FROM a\nRUN echo hi \\\n    \nCOPY a b\n")  # (shell "echo hi\n")
    assert [i.keyword for i in ins] == ["FROM", "RUN"]
    _, ins = read_dockerfile("FROM a\nRUN --mount=type=bind,target=/h cat /h/x\n")
    assert ins[1].flags == ("--mount=type=bind,target=/h",)
    with pytest.raises(IndexError):  # unterminated quote: the reference's ENV K="x`" (Windows)
        process_word('"x`"', "`")
    with pytest.raises(AssertionError, match="unescaped"):  # the reference leaves `$` as is
        process_word('"$HOME"', "\\")


windows_paths = st.text(alphabet="\\:/._-aZ09", min_size=1, max_size=12).filter(
    lambda s: not s.startswith("-")
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.builds(Cache, windows_paths, windows_paths), min_size=1, max_size=3),
    st.sampled_from(["unix", "windows"]),
)
def test_backslashes_in_mounts_are_converted_and_read_back(caches, escape) -> None:
    # Windows paths in caches (ocaml-ci: `c:\opam\.opam\download-cache`) are written so that
    # BuildKit reads them back as they are (checked in check_instruction), not refused.
    spec = Spec("busybox", (SetUser(UnixUser(1000, 1000)), Run("x", cache=tuple(caches))))
    assert convert_and_check(spec, True, escape)
