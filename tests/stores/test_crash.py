"""Crash safety on every backend: kill -9 in the middle of a build or a cache use, then reopen."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from obuilder_core.index import Index
from obuilder_core.stores import Store, open_store
from obuilder_core.stores.temps import TempArea
from tests.stores.helpers import (
    find_named,
    spawn,
    step_files,
    store_area,
    tree_files,
    wait_ready,
    write_step,
)


def _kill_when_ready(spec: str, mode: str, name: str, parent: str, marker: str) -> None:
    proc = spawn(mode, spec, name, parent, marker)
    try:
        wait_ready(proc)
    finally:
        proc.kill()  # SIGKILL: no cleanup handler runs
        proc.communicate(timeout=30)


@pytest.mark.parametrize("parent", ["", "p"], ids=["base", "child"])
def test_kill_9_during_build_leaves_nothing(store_spec: str, parent: str) -> None:
    store = open_store(store_spec)
    store.build("p", None, write_step({"a": "A"}))
    Index(store).add("p", None)
    marker = f"killed-{uuid.uuid4().hex}"
    _kill_when_ready(store_spec, "build", "victim", parent, marker)

    store = open_store(store_spec)  # reopening removes the dead build's temporaries
    index = Index(store)
    assert store.result("victim") is None
    assert index.get("victim") is None
    assert find_named(store_area(store), marker) == []
    assert sorted(index.ids()) == sorted(store.ids()) == ["p"]
    assert step_files(store, "p") == {"a": "A"}
    # the same id builds fine afterwards
    store.build("victim", parent or None, write_step({"b": "B"}))
    assert "b" in step_files(store, "victim")


def test_kill_9_while_holding_a_cache(store_spec: str) -> None:
    store = open_store(store_spec)
    lease = store.cache("c", (0, 0))
    (lease.path / "kept").write_text("1")
    lease.release()
    marker = f"killed-{uuid.uuid4().hex}"
    _kill_when_ready(store_spec, "cache", "c", "", marker)

    store = open_store(store_spec)
    assert find_named(store_area(store), marker) == []
    lease = store.cache("c", (0, 0))
    assert tree_files(lease.path) == {"kept": "1"}
    lease.release()


def test_reconcile_adds_result_committed_before_a_crash(store_spec: str) -> None:
    store = open_store(store_spec)
    store.build("p", None, write_step({"a": "A"}))
    Index(store).add("p", None)
    # the process "crashed" between the store's commit and the index add:
    store.build("orphan", "p", write_step({"b": "B"}))

    index = Index(open_store(store_spec))
    record = index.get("orphan")
    assert record is not None and record.parent is None
    # Both go: the orphan is no longer unprunable. Their order is not asserted: it compares
    # the orphan's dir mtime with p's row time, which the clock, not the test, decides.
    assert sorted(index.prune(float("inf"), 10)) == ["orphan", "p"]
    assert open_store(store_spec).ids() == []


def test_reconcile_drops_rows_without_results(store_spec: str) -> None:
    store = open_store(store_spec)
    store.build("s", None, write_step({}))
    Index(store).add("s", None)
    store.delete("s")  # "crashed" after deleting the result, before the index row
    index = Index(open_store(store_spec))
    assert index.get("s") is None
    assert index.ids() == []


def test_re_adding_a_reconciled_step_fills_in_its_parent(store_spec: str) -> None:
    store = open_store(store_spec)
    store.build("p", None, write_step({}))
    store.build("c", "p", write_step({}))
    index = Index(store)  # finds both, parents unknown
    index.add("p", None)
    index.add("c", "p")
    assert index.get("c").parent == "p"
    assert index.children("p") == ["c"]


def test_temp_area_sweeps_only_dead_owners(tmp_path: Path) -> None:
    area = TempArea(tmp_path / "tmp")
    live = area.claim("live")
    live.path.mkdir()
    dead_name = "99999999-deadbeef-dead"  # a temp whose owner left no lock held
    (area.dir / dead_name).mkdir()
    (area.locks / dead_name).write_text("")

    removed = TempArea(tmp_path / "tmp").sweep(lambda p: os.rmdir(p))

    assert removed == [area.dir / dead_name]
    assert area.names() == [live.path.name]
    os.rmdir(live.path)
    live.release()
    assert area.names() == []
    assert sorted(p.name for p in area.locks.iterdir()) == [".sweep"]


def test_store_fixture_is_empty(store_spec: str) -> None:
    store: Store = open_store(store_spec)
    assert store.ids() == []
