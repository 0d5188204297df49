"""Two machines, one registry: step results travel through a real `docker-registry`.

Machine A and machine B are two stores that share nothing (two directories, each with its own
index, secret key and images); the registry on loopback is the only link. A builds with
`cache_to`; B, empty (not even the base image), builds the same specs with `cache_from` and
executes no step, ends with the same ids and replays the same logs; then one file changes and
only the steps after it execute.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from obuilder_core.spec import parse_spec
from tests.builder.helpers import collect, ok, output, text
from tests.fixtures.registry import RunningRegistry
from tests.remote.helpers import Answer, executions, front, machine

SPEC = """
((from busybox)
 (shell /bin/sh -c)
 (run (shell "echo base step; mkdir /work; echo one > /work/a"))
 (copy (src src) (dst /src))
 (run (shell "cat /src/input; wc -c /src/input > /work/count; rm /work/a"))
 (run (shell "ls /work; cat /work/count")))
"""


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src/input").write_text("hello from the context\n")
    (ctx / "src/other").write_text("unchanged\n")
    return ctx


@pytest.mark.parametrize("b_kind", ["rsync", "btrfs", "overlayfs"])
def test_machine_b_gets_every_step_from_the_registry_that_machine_a_pushed(
    registry: RunningRegistry,
    busybox_oci: Path,
    context: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    b_kind: str,
) -> None:
    """A on rsync, B on another kind of store: the cache carries results, not a format."""
    cache = f"{registry.host}/two-machines/{b_kind}"
    b_store = request.getfixturevalue(f"{b_kind}_store_spec")
    spec = parse_spec(SPEC, "test.spec")
    events_a, log_a = collect()
    with machine(tmp_path / "a", busybox_oci, cache_to=cache) as a:
        built = ok(a.build(spec, context, log=log_a))
        assert executions(a) == 3  # the three runs (the host writes the copy)
    assert f"pushed 5 steps to registry cache {cache}" in text(events_a)  # with the base

    events_b, log_b = collect()
    with machine(b_store, None, cache_from=[cache]) as b:
        pulled = ok(b.build(spec, context, log=log_b))
        assert executions(b) == 0
        assert [s.id for s in pulled.steps] == [s.id for s in built.steps]
        assert pulled.id == built.id
        assert output(events_b) == output(events_a)  # the logs, replayed
        assert text(events_b).count(f"from registry cache {cache}") == 5
        with b.view(pulled.id) as rootfs:  # type: ignore[arg-type]
            assert sorted(p.name for p in (rootfs / "work").iterdir()) == ["count"]

        # One file changes: the copy and the steps after it execute, the first run does not.
        (context / "src/input").write_text("changed\n")
        events_c, log_c = collect()
        edited = ok(b.build(spec, context, log=log_c))
        assert executions(b) == 2  # the two runs after the copy
        assert edited.steps[1].cached and not edited.steps[2].cached
        assert "changed" in output(events_c).decode()


def test_clients_asking_for_a_step_being_pulled_share_one_pull(
    registry: RunningRegistry, busybox_oci: Path, context: Path, tmp_path: Path
) -> None:
    """Four builds of one spec at once on an empty machine: each step is downloaded once
    (the registry sees one manifest GET per step), however the builds interleave."""
    cache = f"{registry.host}/two-machines/shared"
    spec = parse_spec(SPEC, "test.spec")
    with machine(tmp_path / "a", busybox_oci, cache_to=cache) as a:
        built = ok(a.build(spec, context))
    gets: list[str] = []

    def count_gets(request: BaseHTTPRequestHandler) -> Answer | None:
        if request.command == "GET" and "/manifests/" in request.path:
            gets.append(request.path)
        return None

    with (
        front(registry.host, count_gets) as host,
        machine(tmp_path / "c", None, cache_from=[f"{host}/two-machines/shared"]) as c,
        ThreadPoolExecutor(4) as pool,
    ):
        results = list(pool.map(lambda _: ok(c.build(spec, context)), range(4)))
    assert {r.id for r in results} == {built.id}
    assert sorted(gets) == sorted(set(gets)) and len(gets) == len(built.steps)


def test_a_copy_pulled_from_the_cache_is_not_said_to_be_copied_onto_an_earlier_one(
    registry: RunningRegistry, busybox_oci: Path, context: Path, tmp_path: Path
) -> None:
    """B made the first version of a copy itself, so the second would start from it; but A
    pushed the second meanwhile: B pulls it, and says so, not that it copied anything."""
    cache = f"{registry.host}/two-machines/pulled-copy"
    spec = parse_spec("((from busybox) (copy (src src) (dst /src)))", "copy.spec")
    with machine(tmp_path / "b", busybox_oci, cache_from=[cache]) as b:
        ok(b.build(spec, context))  # the cache is empty: B copies
        (context / "src/input").write_text("changed\n")
        with machine(tmp_path / "a", busybox_oci, cache_to=cache) as a:
            ok(a.build(spec, context))
        events, log = collect()
        ok(b.build(spec, context, log=log))
    shown = text(events)
    assert f"from registry cache {cache}" in shown
    assert "the last result of this copy" not in shown
