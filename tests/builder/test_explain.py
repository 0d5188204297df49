"""Why a step missed the cache: one line naming what changed in its key since the last build of
the same spec step, in the build's output, in its result, and from `explain` without building."""

from __future__ import annotations

from pathlib import Path

import pytest

from obuilder_core.builder import Builder
from obuilder_core.builder.explain import why_missed
from obuilder_core.spec import parse_spec
from tests.builder.helpers import collect, ok, text
from tests.builder.wrappers import CountingSandbox
from tests.fixtures.cli import run_obuilder

RUN = {
    "kind": "run",
    "parent": "p1",
    "workdir": "/",
    "user": ["unix", 0, 0],
    "env": [["PATH", "/bin"], ["FOO", "1"]],
    "cmd": "make",
    "shell": ["/bin/sh", "-c"],
    "network": [],
    "secrets": [["/run/secrets/tok", "hmac-a"]],
}


def files(*entries: list[object]) -> list[object]:
    return [["dir", "src", list(entries)]]


COPY = {
    "kind": "copy",
    "parent": "p1",
    "user": ["unix", 0, 0],
    "dst": "/src",
    "shape": "dir",
    "algorithm": "xxh3",
    "manifests": files(*(["file", f"src/f{i:04}", f"d{i}", 1, 0o644] for i in range(5000))),
}


def changed(base: dict[str, object], **changes: object) -> dict[str, object]:
    return {**base, **changes}


@pytest.mark.parametrize(
    "old, new, says",
    [
        (None, RUN, "new step (not built from this spec here before)"),
        (COPY, RUN, "new step (this position held a copy step before)"),
        (RUN, changed(RUN, cmd="make check"), "command changed"),
        (RUN, changed(RUN, env=[["PATH", "/bin"], ["FOO", "2"]]), "env FOO changed"),
        (RUN, changed(RUN, env=[["PATH", "/bin"]]), "env FOO removed"),
        (RUN, changed(RUN, env=[*RUN["env"], ["BAR", "x"]]), "env BAR added"),  # type: ignore[list-item]
        (RUN, changed(RUN, secrets=[["/run/secrets/tok", "hmac-b"]]),
         "secret /run/secrets/tok rotated"),
        (RUN, changed(RUN, parent="p2"), "parent changed (step 3)"),
        (RUN, changed(RUN, workdir="/src"), "workdir changed: / -> /src"),
        (RUN, changed(RUN, user=["unix", 1000, 1000]), "user changed: 0:0 -> 1000:1000"),
        (RUN, changed(RUN, network=["host"]), "network changed: (none) -> host"),
        (RUN, changed(RUN, cmd="x", parent="p2"), "command changed; parent changed (step 3)"),
        (
            COPY,
            changed(COPY, manifests=files(*(["file", f"src/f{i:04}", "new" if i == 7 else
                                              f"d{i}", 1, 0o644] for i in range(5000)))),
            "copy: 1 of 5,000 files changed: src/f0007",
        ),
        (
            COPY,
            changed(COPY, manifests=files(*(["file", f"src/f{i:04}", f"d{i}", 1, 0o644]
                                             for i in range(4996)))),
            "copy: 4 of 5,000 files removed: src/f4996, src/f4997, src/f4998 (+1 more)",
        ),
        (COPY, changed(COPY, dst="/opt"), "dst changed: /src -> /opt"),
    ],
)  # fmt: skip
def test_the_reason_names_what_changed(old: object, new: object, says: str) -> None:
    steps = {"p2": 3}
    reason = why_missed(old, new, same_id=False, step_of=steps.get)  # type: ignore[arg-type]
    assert reason == says


def test_an_unchanged_key_says_the_result_was_not_kept() -> None:
    reason = why_missed(RUN, RUN, same_id=True)
    assert reason.startswith("same inputs as the last build, which did not save it")


SPEC = """((from busybox) (shell /bin/sh -c) (env FOO {foo})
 (run (shell "echo one"))
 (copy (src src) (dst /src))
 (run (shell "cat /src/a")))"""


def write_spec(tmp_path: Path, foo: str) -> Path:
    path = tmp_path / "t.spec"
    path.write_text(SPEC.format(foo=foo))
    return path


def load(path: Path) -> object:
    return parse_spec(path.read_text(), str(path))


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src/a").write_text("a\n")
    (ctx / "src/b").write_text("b\n")
    return ctx


def test_a_build_says_why_each_step_missed(
    rsync_builder: Builder, tmp_path: Path, context: Path
) -> None:
    path = write_spec(tmp_path, "1")
    first = ok(rsync_builder.build(load(path), context))  # type: ignore[arg-type]
    assert [s.miss_reason for s in first.steps] == [
        "new step (not built from this spec here before)"
    ] * 4

    (context / "src/a").write_text("changed\n")
    events, log = collect()
    second = ok(rsync_builder.build(load(path), context, log=log))  # type: ignore[arg-type]
    assert [s.miss_reason for s in second.steps] == [
        None,  # cached
        None,
        "copy: 1 of 2 files changed: src/a",
        "parent changed (step 3)",
    ]
    assert "---> miss: copy: 1 of 2 files changed: src/a\n" in text(events)

    write_spec(tmp_path, "2")
    third = ok(rsync_builder.build(load(path), context))  # type: ignore[arg-type]
    assert third.steps[1].miss_reason == "env FOO changed"


def test_explain_says_the_same_without_building(
    rsync_builder: Builder, tmp_path: Path, context: Path
) -> None:
    path = write_spec(tmp_path, "1")
    stopped = rsync_builder.explain(load(path), context)  # type: ignore[arg-type]
    assert stopped.failure is not None and "base image busybox is not in the store" in (
        stopped.failure.message
    )
    ok(rsync_builder.build(load(path), context))  # type: ignore[arg-type]
    counting = CountingSandbox(rsync_builder.sandbox)
    rsync_builder.sandbox = counting  # type: ignore[assignment]
    (context / "src/b").unlink()
    explained = rsync_builder.explain(load(path), context)  # type: ignore[arg-type]
    assert explained.failure is None and explained.id is None
    assert [s.cached for s in explained.steps] == [True, True, False, False]
    assert explained.steps[2].miss_reason == "copy: 1 of 2 files removed: src/b"
    assert counting.argvs == []  # nothing ran
    # Explaining is not building: the next build explains against the last *build* again.
    rebuilt = ok(rsync_builder.build(load(path), context))  # type: ignore[arg-type]
    assert rebuilt.steps[2].miss_reason == "copy: 1 of 2 files removed: src/b"


def test_a_rotated_secret_is_named(rsync_builder: Builder, tmp_path: Path) -> None:
    spec = parse_spec(
        "((from busybox) (shell /bin/sh -c)"
        ' (run (secrets (tok (target /run/secrets/tok))) (shell "test -s /run/secrets/tok")))',
        str(tmp_path / "s.spec"),
    )
    ok(rsync_builder.build(spec, tmp_path, secrets={"tok": b"one"}))
    again = ok(rsync_builder.build(spec, tmp_path, secrets={"tok": b"two"}))
    assert again.steps[1].miss_reason == "secret /run/secrets/tok rotated"


def test_the_explain_command(busybox_store: str, tmp_path: Path, context: Path) -> None:
    path = write_spec(tmp_path, "1")
    store = f"--store={busybox_store}"
    built = run_obuilder("build", "-f", str(path), str(context), store)
    assert built.returncode == 0, built.stderr
    assert "---> miss: new step" in built.stdout
    write_spec(tmp_path, "2")
    explained = run_obuilder("explain", "-f", str(path), str(context), store)
    assert explained.returncode == 0, explained.stderr
    lines = explained.stdout.splitlines()
    assert lines[0] == "(from busybox)" and lines[1].startswith("    cached ")
    assert lines[2:4] == ['/: (run (shell "echo one"))', "    miss: env FOO changed"]
    assert lines[-1] == "    miss: env FOO changed; parent changed (step 3)"
