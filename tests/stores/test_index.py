"""The sqlite index: records, LRU prune and its protections, delete with descendants, gc."""

from __future__ import annotations

import sqlite3

import pytest

from obuilder_core.index import Index
from obuilder_core.stores import Store, open_store
from tests.stores.helpers import finish, spawn, wait_ready, write_step


@pytest.fixture
def store(rsync_store_spec: str) -> Store:
    """Index logic does not depend on the backend: run it on the fastest one."""
    return open_store(rsync_store_spec)


def _step(store: Store, index: Index, id: str, parent: str | None, used: float) -> None:
    store.build(id, parent, write_step({id: id}))
    index.add(id, parent)
    index.touch(id, used)


def test_add_records_parent_times_and_size(store: Store) -> None:
    index = Index(store)
    store.build("p", None, write_step({"f": "x" * 5000}))
    index.add("p", None)
    store.build("c", "p", write_step({}))
    index.add("c", "p")
    assert index.get("p").size is None  # measured on demand: a walk costs too much per step
    index.measure_missing()
    p, c = index.get("p"), index.get("c")
    assert p.parent is None and c.parent == "p"
    assert p.size >= 5000
    assert p.created <= p.used and c.created >= p.created
    assert index.children("p") == ["c"]
    assert index.count() == 2
    assert (store.state_dir() / "index.sqlite").exists()
    mode = sqlite3.connect(store.state_dir() / "index.sqlite").execute("PRAGMA journal_mode")
    assert mode.fetchone()[0] == "wal"


def test_touch_updates_last_use(store: Store) -> None:
    index = Index(store)
    _step(store, index, "a", None, 5.0)
    index.touch("a", 42.0)
    assert index.get("a").used == 42.0


def test_prune_removes_least_recently_used_first(store: Store) -> None:
    index = Index(store)
    for id, used in [("b", 2.0), ("a", 1.0), ("c", 3.0)]:
        _step(store, index, id, None, used)
    assert index.prune(before=100.0, limit=2) == ["a", "b"]
    assert store.ids() == ["c"] and index.ids() == ["c"]


def test_prune_keeps_steps_used_after_before(store: Store) -> None:
    index = Index(store)
    for id, used in [("a", 1.0), ("b", 2.0), ("c", 3.0)]:
        _step(store, index, id, None, used)
    assert index.prune(before=2.5, limit=10) == ["a", "b"]
    assert index.ids() == ["c"]


def test_prune_never_removes_a_parent_before_its_children(store: Store) -> None:
    index = Index(store)
    _step(store, index, "p", None, 1.0)
    _step(store, index, "c", "p", 5.0)
    _step(store, index, "other", None, 3.0)
    # p is the oldest but has a child: "other" and then "c" go first, then p (now a leaf)
    assert index.prune(before=100.0, limit=2) == ["other", "c"]
    assert index.prune(before=100.0, limit=10) == ["p"]
    assert store.ids() == []


def test_prune_skips_protected_steps_and_keeps_going(store: Store) -> None:
    index = Index(store)
    for id, used in [("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0)]:
        _step(store, index, id, None, used)
    # OBuilder stopped when the first rows fetched were all protected (reference §7 item 29)
    assert index.prune(before=100.0, limit=1, protected={"a", "b"}) == ["c"]
    assert index.prune(before=100.0, limit=10, protected={"a", "b"}) == ["d"]
    assert store.ids() == ["a", "b"]


def test_protect_blocks_prune_in_other_processes(rsync_store_spec: str, store: Store) -> None:
    index = Index(store)
    for id, used in [("a", 1.0), ("b", 2.0), ("c", 3.0)]:
        _step(store, index, id, None, used)
    other = spawn("protect", rsync_store_spec, "a")
    try:
        wait_ready(other)
        with index.protect(["b"]):
            assert index.protected() == {"a", "b"}
            assert index.prune(before=100.0, limit=10) == ["c"]
        assert index.prune(before=100.0, limit=10) == ["b"]
        finish(other)
    finally:
        other.kill()
        other.wait()
    assert index.protected() == set()
    assert index.prune(before=100.0, limit=10) == ["a"]


def test_protection_ends_when_its_process_dies(rsync_store_spec: str, store: Store) -> None:
    index = Index(store)
    _step(store, index, "a", None, 1.0)
    other = spawn("protect", rsync_store_spec, "a")
    try:
        wait_ready(other)
        assert index.protected() == {"a"}
    finally:
        other.kill()
        other.wait()
    assert index.protected() == set()
    assert index.prune(before=100.0, limit=10) == ["a"]


def test_protecting_a_step_protects_its_ancestors(store: Store) -> None:
    index = Index(store)
    _step(store, index, "base", None, 1.0)
    _step(store, index, "mid", "base", 2.0)
    _step(store, index, "leaf", "mid", 3.0)
    assert index.prune(before=100.0, limit=10, protected={"leaf"}) == []
    assert store.ids() == ["base", "leaf", "mid"]


def test_delete_removes_descendants_children_first(store: Store) -> None:
    index = Index(store)
    _step(store, index, "r", None, 1.0)
    _step(store, index, "a", "r", 1.0)
    _step(store, index, "a1", "a", 1.0)
    _step(store, index, "b", "r", 1.0)
    _step(store, index, "keep", None, 1.0)
    removed = index.delete("r")
    assert sorted(removed) == ["a", "a1", "b", "r"]
    assert removed.index("a1") < removed.index("a") < removed.index("r")
    assert removed[-1] == "r"
    assert store.ids() == ["keep"] and index.ids() == ["keep"]


def test_delete_of_unindexed_step_still_removes_it_from_the_store(store: Store) -> None:
    index = Index(store, reconcile=False)
    store.build("x", None, write_step({}))
    assert index.delete("x") == ["x"]
    assert store.ids() == []


def test_gc_prunes_until_enough_is_free(store: Store) -> None:
    index = Index(store)
    for id, used in [("a", 1.0), ("b", 2.0), ("c", 3.0)]:
        _step(store, index, id, None, used)
    assert index.gc(keep_free_pct=0.0) == []  # already enough free
    # 101% can never be reached: everything unprotected goes, then gc stops
    assert index.gc(keep_free_pct=101.0, protected={"b"}) == ["a", "c"]
    assert store.ids() == ["b"]


def test_two_connections_see_each_other(store: Store) -> None:
    one, two = Index(store), Index(store)
    _step(store, one, "a", None, 1.0)
    assert two.get("a") is not None
    assert two.prune(before=100.0, limit=5) == ["a"]
    assert one.get("a") is None


def test_unknown_sizes_are_measured_on_demand(store: Store) -> None:
    """A step found by reconcile has no size either until `measure_missing` (which
    `obuilder df` calls)."""
    store.build("p", None, write_step({"f": "x" * 5000}))
    index = Index(store)
    assert index.get("p").size is None
    index.measure_missing()
    assert index.get("p").size >= 5000
