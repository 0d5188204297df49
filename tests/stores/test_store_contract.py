"""The Store contract, run against every backend (`store_spec` is parametrised over them)."""

from __future__ import annotations

import os
import uuid

import pytest

from obuilder_core.errors import ObuilderError
from obuilder_core.index import Index
from obuilder_core.stores import Store, open_store
from tests.stores.helpers import (
    find_named,
    finish,
    reap,
    rootfs_files,
    spawn,
    step_files,
    store_area,
    tree_files,
    wait_ready,
    write_step,
)


@pytest.fixture
def store(store_spec: str) -> Store:
    """The store named by `store_spec`, opened in this process."""
    return open_store(store_spec)


def test_build_commits_on_success(store: Store) -> None:
    path = store.build("s1", None, write_step({"a": "A", "d/b": "B"}))
    assert store.result("s1") == path
    assert step_files(store, "s1") == {"a": "A", "d/b": "B"}
    assert (path / "log").read_text().startswith("wrote")
    assert "s1" in store.ids()


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt], ids=["error", "cancel"])
def test_failed_build_leaves_nothing(store: Store, exc: type[BaseException]) -> None:
    marker = f"marker-{uuid.uuid4().hex}"

    def fn(tmp):
        write_step({marker: "x"})(tmp)
        raise exc("stop")

    with pytest.raises(exc):
        store.build("s1", None, fn)
    assert store.result("s1") is None
    assert "s1" not in store.ids()
    assert find_named(store_area(store), marker) == []


def test_failed_child_leaves_parent_intact(store: Store) -> None:
    store.build("p", None, write_step({"a": "A"}))

    def fn(tmp):
        (tmp / "rootfs" / "a").write_text("changed")
        raise Boom

    with pytest.raises(Boom):
        store.build("c", "p", fn)
    assert store.result("c") is None
    assert step_files(store, "p") == {"a": "A"}


def test_child_sees_parent_and_parent_unchanged(store: Store) -> None:
    store.build("p", None, write_step({"a": "A", "gone": "G", "d/x": "X"}))
    seen = {}

    def fn(tmp):
        seen.update(rootfs_files(tmp))
        (tmp / "rootfs" / "gone").unlink()
        (tmp / "rootfs" / "a").write_text("A2")
        (tmp / "rootfs" / "new").write_text("N")

    store.build("c", "p", fn)
    assert seen == {"a": "A", "gone": "G", "d/x": "X"}
    assert step_files(store, "c") == {"a": "A2", "d/x": "X", "new": "N"}
    assert step_files(store, "p") == {"a": "A", "gone": "G", "d/x": "X"}


def test_missing_parent_is_a_clear_error(store: Store) -> None:
    with pytest.raises(ObuilderError, match="nope"):
        store.build("c", "nope", write_step({}))
    assert store.result("c") is None


def test_delete(store: Store) -> None:
    store.build("s1", None, write_step({"a": "A"}))
    store.build("s2", None, write_step({"b": "B"}))
    store.delete("s1")
    store.delete("s1")  # deleting a missing step is a no-op
    assert store.result("s1") is None
    assert store.ids() == ["s2"]
    # the id can be built again after a delete
    store.build("s1", None, write_step({"c": "C"}))
    assert step_files(store, "s1") == {"c": "C"}


def test_df_and_state_dir(store: Store) -> None:
    assert 0.0 <= store.df() <= 100.0
    state = store.state_dir()
    (state / "probe").write_text("ok")
    assert (state / "probe").read_text() == "ok"


def test_reopen_keeps_results(store_spec: str, store: Store) -> None:
    store.build("s1", None, write_step({"a": "A"}))
    again = open_store(store_spec)
    assert step_files(again, "s1") == {"a": "A"}


@pytest.mark.parametrize("first", ["c1", "c2"])
def test_cache_first_release_wins(store: Store, first: str) -> None:
    seed = store.cache("opam", (0, 0))
    (seed.path / "v1").write_text("v1")
    seed.release()
    leases = {"c1": store.cache("opam", (0, 0)), "c2": store.cache("opam", (0, 0))}
    for name, lease in leases.items():
        assert tree_files(lease.path) == {"v1": "v1"}
        (lease.path / name).write_text(name)
    second = "c1" if first == "c2" else "c2"
    leases[first].release()
    leases[second].release()
    after = store.cache("opam", (0, 0))
    assert tree_files(after.path) == {"v1": "v1", first: first}
    after.release()


def test_cache_generation_is_shared_between_processes(store_spec: str, store: Store) -> None:
    marker = f"other-{uuid.uuid4().hex}"
    other = spawn("cache", store_spec, "shared", marker=marker)
    try:
        wait_ready(other)  # the other process holds a clone with `marker` written in it
        mine = store.cache("shared", (0, 0))
        (mine.path / "mine").write_text("1")
        mine.release()  # released first: wins
        finish(other)  # released second: discarded
    finally:
        reap(other, store_spec)
    lease = store.cache("shared", (0, 0))
    assert tree_files(lease.path) == {"mine": "1"}
    lease.release()


def test_cache_sequential_users_persist_across_reopen(store_spec: str, store: Store) -> None:
    lease = store.cache("c", (0, 0))
    (lease.path / "one").write_text("1")
    lease.release()
    lease.release()  # releasing twice is harmless
    lease = store.cache("c", (0, 0))
    (lease.path / "one").unlink()
    (lease.path / "two").write_text("2")
    lease.release()
    again = open_store(store_spec)
    lease = again.cache("c", (0, 0))
    assert tree_files(lease.path) == {"two": "2"}
    lease.release()


def test_cache_created_empty_and_owned_by_user(store: Store) -> None:
    lease = store.cache("fresh", (1234, 2345))
    st = os.stat(lease.path)
    assert (st.st_uid, st.st_gid) == (1234, 2345)
    assert os.listdir(lease.path) == []
    lease.release()


def test_cache_names_cannot_escape_or_collide(store: Store) -> None:
    names = ["a/b", "a%2fb", "..", "../../escaped", "with space", "%", "%25", "\n1", "\xa1", ""]
    names += ["x" * 300 + "a", "x" * 300 + "b"]
    for i, name in enumerate(names):
        lease = store.cache(name, (0, 0))
        assert os.listdir(lease.path) == [], f"cache {name!r} is not fresh"
        (lease.path / f"f{i}").write_text(name)
        lease.release()
    for i, name in enumerate(names):
        lease = store.cache(name, (0, 0))
        assert tree_files(lease.path) == {f"f{i}": name}
        lease.release()
    area = store_area(store)
    assert find_named(area.parent, "escaped") == []
    assert not (area.parent / "escaped").exists()


def test_delete_cache(store: Store) -> None:
    lease = store.cache("c", (0, 0))
    (lease.path / "x").write_text("x")
    lease.release()
    store.delete_cache("c")
    store.delete_cache("never-made")
    lease = store.cache("c", (0, 0))
    assert os.listdir(lease.path) == []
    lease.release()


def test_release_after_delete_cache_is_discarded(store: Store) -> None:
    lease = store.cache("c", (0, 0))
    (lease.path / "x").write_text("x")
    try:
        store.delete_cache("c")
    except ObuilderError:
        lease.release()
        pytest.skip(f"{store.kind}: delete_cache is refused while a clone is in use")
    lease.release()
    lease = store.cache("c", (0, 0))
    assert os.listdir(lease.path) == []
    lease.release()


def test_bad_step_id_is_refused(store: Store) -> None:
    with pytest.raises(ObuilderError, match="invalid step id"):
        store.build("../x", None, write_step({}))


def test_reopen_does_not_remove_a_live_build(store_spec: str, store: Store) -> None:
    marker = f"live-{uuid.uuid4().hex}"
    child = spawn("build", store_spec, "live", marker=marker)
    try:
        wait_ready(child)
        open_store(store_spec)  # sweeps leftovers: must leave the live temp alone
        finish(child)
    finally:
        reap(child, store_spec)
    assert marker in step_files(store, "live")


def test_two_processes_build_concurrently(store_spec: str, store: Store) -> None:
    store.build("base", None, write_step({"base": "b"}))
    Index(store).add("base", None)
    procs = [spawn("chain", store_spec, name, "base", "4") for name in ("left", "right")]
    try:
        for proc in procs:
            finish(proc)
    finally:
        for proc in procs:
            reap(proc, store_spec)
    expected = {f"{n}-{i}" for n in ("left", "right") for i in range(4)} | {"base"}
    assert set(store.ids()) == expected
    assert step_files(store, "left-3") == {
        "base": "b",
        **{f"left-{i}": str(i) for i in range(4)},
    }
    index = Index(store)
    assert set(index.ids()) == expected
    assert index.get("right-0").parent == "base"
    assert index.children("base") == ["left-0", "right-0"]
