"""Step ids: stable, sensitive to every input that matters, blind to cache mounts, leak-free."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obuilder_core import keys, secret_key
from obuilder_core.errors import ObuilderError
from obuilder_core.keys import BaseKey, CopyKey, RunKey, encode, run_key, step_id
from obuilder_core.manifest import Dir, Entry, File, Manifest, Symlink
from obuilder_core.paths import CopyShape, CopySpecError, copy_destination, normalize_path
from obuilder_core.secret_key import secret_digest
from obuilder_core.spec.model import Cache, NamedUser, Run, Secret, UnixUser, User

PARENT = "cae66" + "0" * 59
STORE_KEY = bytes(range(32))

MANIFEST = Manifest(
    Dir(
        "src",
        (
            File("src/a.txt", "0" * 32, 5, 0o644, 1_600_000_000),
            Symlink("src/link", "a.txt"),
            Dir("src/sub", (File("src/sub/run.sh", "1" * 32, 9, 0o755, 0),)),
        ),
    ),
    "xxh3_128",
)

RUN = RunKey(
    parent=PARENT,
    workdir="/src",
    user=UnixUser(1000, 1000),
    env=(("PATH", "/usr/bin:/bin"), ("HOME", "/home/opam")),
    cmd="make test",
    shell=("/bin/sh", "-c"),
    network=("host",),
    secrets=(("/run/secrets/token", secret_digest(STORE_KEY, b"hunter2")),),
)

COPY = CopyKey(
    parent=PARENT,
    user=UnixUser(1000, 1000),
    dst="/src",
    shape=CopyShape.MULTI,
    manifests=(MANIFEST,),
    algorithm="xxh3_128",
)


# --- stability: these ids pin the encoding; changing it needs a KEY_FORMAT bump ------------


def test_golden_ids() -> None:
    assert encode(BaseKey("busybox")) == (
        b'{"format":"pytest-obuilder/step-key/1","step":{"image":"busybox","kind":"base"}}'
    )
    assert step_id(BaseKey("busybox")) == (
        "3e236d51c00ee09ae31a37d19176096717bd7adecd05db5aa80db17cb66898bb"
    )
    assert step_id(RUN) == "6bf711527c4d2b310741866b2ca2482b08f19539bccf399f469c40afdf7ddd1a"
    assert step_id(COPY) == "df51f21331a96b225da35c204f96838c570e0d1d8bf5cbd7c9c5ab150e18ff1b"


def test_encoding_is_versioned_canonical_json() -> None:
    value = json.loads(encode(RUN))
    assert value["format"] == keys.KEY_FORMAT
    assert value["step"]["kind"] == "run"
    assert json.loads(encode(COPY))["step"]["algorithm"] == "xxh3_128"
    assert step_id(RUN) == step_id(dataclasses.replace(RUN))


# --- sensitivity ---------------------------------------------------------------------------

RUN_CHANGES = {
    "parent": "f" * 64,
    "workdir": "/",
    "user": UnixUser(1000, 1001),
    "env": (("PATH", "/usr/bin:/bin"),),
    "cmd": "make check",
    "shell": ("/bin/bash", "-c"),
    "network": (),
    "secrets": (("/run/secrets/other", RUN.secrets[0][1]),),
}


@pytest.mark.parametrize("field", list(RUN_CHANGES))
def test_each_run_input_changes_the_id(field: str) -> None:
    assert step_id(dataclasses.replace(RUN, **{field: RUN_CHANGES[field]})) != step_id(RUN)


def _manifest_variant(**changes: object) -> Manifest:
    root = MANIFEST.root
    assert isinstance(root, Dir)
    first = dataclasses.replace(root.entries[0], **changes)
    return Manifest(dataclasses.replace(root, entries=(first, *root.entries[1:])), "xxh3_128")


COPY_CHANGES = {
    "parent": "f" * 64,
    "user": NamedUser("opam"),
    "dst": "/src2",
    "shape": CopyShape.SINGLE,
    "manifests": (_manifest_variant(digest="2" * 32),),
}


@pytest.mark.parametrize("field", list(COPY_CHANGES))
def test_each_copy_input_changes_the_id(field: str) -> None:
    assert step_id(dataclasses.replace(COPY, **{field: COPY_CHANGES[field]})) != step_id(COPY)


@pytest.mark.parametrize(
    "variant",
    [
        _manifest_variant(mode=0o755),
        _manifest_variant(path="src/b.txt"),
        _manifest_variant(size=6),
        Manifest(MANIFEST.root, "sha256"),
    ],
    ids=["exec-bit", "name", "size", "algorithm"],
)
def test_manifest_details_change_the_copy_id(variant: Manifest) -> None:
    key = dataclasses.replace(COPY, manifests=(variant,), algorithm=variant.algorithm)
    assert step_id(key) != step_id(COPY)


def test_copy_key_rejects_mixed_algorithms() -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(COPY, algorithm="sha256")


def test_base_key_is_the_image_name() -> None:
    assert step_id(BaseKey("busybox")) == step_id(BaseKey("busybox"))
    assert step_id(BaseKey("busybox")) != step_id(BaseKey("busybox:latest"))


def _run_op(**kw: object) -> Run:
    return Run(shell="make", secrets=(Secret("tok", "/run/secrets/tok"),), **kw)  # type: ignore[arg-type]


def _key_of(op: Run, value: bytes = b"s3cret", store_key: bytes = STORE_KEY) -> RunKey:
    return run_key(
        PARENT,
        workdir="/",
        user=UnixUser(0, 0),
        env=[("PATH", "/bin")],
        shell=["/bin/sh", "-c"],
        op=op,
        secret_digests=[secret_digest(store_key, value) for _ in op.secrets],
    )


def test_cache_mounts_do_not_change_the_run_id() -> None:
    plain = _key_of(_run_op())
    cached = _key_of(_run_op(cache=(Cache("opam", "/home/opam/.opam/download-cache"),)))
    assert step_id(plain) == step_id(cached)


def test_secret_id_and_options_are_not_in_the_key_but_target_is() -> None:
    base = _key_of(_run_op())
    renamed = _key_of(
        Run(shell="make", secrets=(Secret("other", "/run/secrets/tok", (("a", "b"),)),))
    )
    moved = _key_of(Run(shell="make", secrets=(Secret("tok", "/elsewhere"),)))
    assert step_id(base) == step_id(renamed)
    assert step_id(base) != step_id(moved)


def test_secret_values_change_the_id_but_never_appear_in_it() -> None:
    a = _key_of(_run_op(), b"correct horse battery staple")
    b = _key_of(_run_op(), b"correct horse battery stapler")
    assert step_id(a) != step_id(b)
    assert b"correct horse" not in encode(a)
    # The digest is keyed: the same value under another store's key gives another id, so ids
    # from one store tell nothing about values used in another.
    other_store = _key_of(_run_op(), b"correct horse battery staple", store_key=b"k" * 32)
    assert step_id(other_store) != step_id(a)
    plain_hash = hashlib.sha256(b"correct horse battery staple").hexdigest()
    assert plain_hash.encode() not in encode(a)


def test_secret_digest_is_hmac_sha256() -> None:
    expected = hmac.new(STORE_KEY, b"v", "sha256").hexdigest()
    assert secret_digest(STORE_KEY, b"v") == expected


# --- injectivity ---------------------------------------------------------------------------

# A small alphabet full of JSON/concatenation hazards makes near-collisions likely.
_tricky = st.text(
    alphabet=["a", '"', "\\", ",", "[", "]", ":", "/", "\x00", "é", "\udcff"], max_size=4
)
_hex = st.sampled_from(["", "0", "00", "a0"])
_users = st.one_of(
    st.builds(UnixUser, st.integers(0, 2), st.integers(0, 2)),
    st.builds(NamedUser, _tricky),
)
_pairs = st.lists(st.tuples(_tricky, _tricky), max_size=2).map(tuple)
_strs = st.lists(_tricky, max_size=3).map(tuple)


def _entries(depth: int) -> st.SearchStrategy:
    leaves = st.one_of(
        st.builds(File, _tricky, _hex, st.integers(0, 1), st.sampled_from([0o644, 0o755])),
        st.builds(Symlink, _tricky, _tricky),
    )
    if depth == 0:
        return leaves
    return st.one_of(
        leaves,
        st.builds(Dir, _tricky, st.lists(_entries(depth - 1), max_size=2).map(tuple)),
    )


_algorithms = st.sampled_from(["xxh3_128", "sha256"])


@st.composite
def _copy_keys(draw: st.DrawFn) -> CopyKey:
    algo = draw(_algorithms)
    roots = draw(st.lists(_entries(2), max_size=2))
    return CopyKey(
        parent=draw(_hex),
        user=draw(_users),
        dst=draw(_tricky),
        shape=draw(st.sampled_from(list(CopyShape))),
        manifests=tuple(Manifest(r, algo) for r in roots),
        algorithm=algo,
    )


_keys = st.one_of(
    st.builds(BaseKey, _tricky),
    st.builds(RunKey, _hex, _tricky, _users, _pairs, _tricky, _strs, _strs, _pairs),
    _copy_keys(),
)


def _decode_user(u: list[Any]) -> User:
    if u[0] == "unix":
        assert len(u) == 3
        return UnixUser(u[1], u[2])
    assert u[0] == "named" and len(u) == 2
    return NamedUser(u[1])


def _decode_entry(e: list[Any]) -> Entry:
    if e[0] == "file":
        assert len(e) == 5
        return File(e[1], e[2], e[3], e[4], 0)  # the mtime is not in the key
    if e[0] == "symlink":
        assert len(e) == 3
        return Symlink(e[1], e[2])
    assert e[0] == "dir" and len(e) == 3
    return Dir(e[1], tuple(_decode_entry(c) for c in e[2]))


def _decode(data: bytes) -> keys.StepKey:
    """A left inverse of `encode`: its existence proves `encode` injective."""
    value = json.loads(data.decode("ascii"))
    assert value["format"] == keys.KEY_FORMAT
    s = value["step"]
    if s.pop("kind") == "base":
        return BaseKey(**s)
    s["user"] = _decode_user(s["user"])
    if "cmd" in s:
        for name in ("env", "secrets"):
            s[name] = tuple(tuple(pair) for pair in s[name])
        s["shell"], s["network"] = tuple(s["shell"]), tuple(s["network"])
        return RunKey(**s)
    s["shape"] = CopyShape(s["shape"])
    s["manifests"] = tuple(Manifest(_decode_entry(m), s["algorithm"]) for m in s["manifests"])
    return CopyKey(**s)


@settings(max_examples=500, deadline=None)
@given(_keys)
def test_encoding_decodes_back_to_the_key(a: keys.StepKey) -> None:
    assert _decode(encode(a)) == a


@st.composite
def _near_pairs(draw: st.DrawFn) -> tuple[keys.StepKey, keys.StepKey]:
    """A key and either itself or a copy with one field redrawn: near-collisions."""
    a = draw(_keys)
    other = draw(_keys)
    if type(other) is not type(a) or draw(st.booleans()):
        return a, other
    field = draw(st.sampled_from([f.name for f in dataclasses.fields(a)]))
    if field == "algorithm":
        return a, a
    value = getattr(other, field)
    if field == "manifests":
        assert isinstance(a, CopyKey)
        value = tuple(Manifest(m.root, a.algorithm) for m in value)
    return a, dataclasses.replace(a, **{field: value})


@settings(max_examples=500, deadline=None)
@given(_near_pairs())
def test_distinct_keys_have_distinct_encodings(pair: tuple[keys.StepKey, keys.StepKey]) -> None:
    a, b = pair
    assert (a == b) == (encode(a) == encode(b))


@settings(max_examples=100, deadline=None)
@given(_keys)
def test_encoding_is_deterministic(a: keys.StepKey) -> None:
    copy = type(a)(**{f.name: getattr(a, f.name) for f in dataclasses.fields(a)})
    assert encode(copy) == encode(a)


# --- the store key -------------------------------------------------------------------------


def test_load_or_create_key_creates_a_private_32_byte_key(tmp_path: Path) -> None:
    path = tmp_path / "secret-key"
    key = secret_key.load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key.load_or_create_key(path) == key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret-key"]


def test_two_stores_get_different_keys(tmp_path: Path) -> None:
    assert secret_key.load_or_create_key(tmp_path / "a") != secret_key.load_or_create_key(
        tmp_path / "b"
    )


def test_concurrent_creators_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "secret-key"
    with ProcessPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(secret_key.load_or_create_key, [path] * 32))
    assert len(set(results)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret-key"]


def test_corrupt_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "secret-key"
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(ObuilderError, match=r"secret-key is corrupt \(5 bytes, expected 32\)"):
        secret_key.load_or_create_key(path)


def test_readable_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret-key"
    secret_key.load_or_create_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(ObuilderError, match=r"accessible by others \(mode 0644\); run: chmod 600"):
        secret_key.load_or_create_key(path)


# --- paths and copy shapes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/", "/"), ("/src/..", "/"), ("//a/./b/", "/a/b"), ("/../../x", "/x"), ("/a/b/../c", "/a/c")],
)
def test_normalize_path(path: str, expected: str) -> None:
    assert normalize_path(path) == expected


@pytest.mark.parametrize(
    ("workdir", "dst", "n", "expected"),
    [
        ("/", "/dst", 1, ("/dst", CopyShape.SINGLE)),
        ("/src", "file", 1, ("/src/file", CopyShape.SINGLE)),
        ("/src", "./", 1, ("/src", CopyShape.MULTI)),
        ("/src", ".", 2, ("/src", CopyShape.MULTI)),
        ("/src/", "../out/", 2, ("/out", CopyShape.MULTI)),
        ("/", "/", 1, ("/", CopyShape.MULTI)),
        ("/", "/home/opam/src/", 1, ("/home/opam/src", CopyShape.MULTI)),
    ],
)
def test_copy_destination(workdir: str, dst: str, n: int, expected: tuple[str, CopyShape]) -> None:
    assert copy_destination(workdir, dst, n) == expected


def test_copy_destination_errors() -> None:
    with pytest.raises(CopySpecError, match=r"^No source items for copy!$"):
        copy_destination("/", "/dst/", 0)
    with pytest.raises(
        CopySpecError, match=r"^When copying multiple items, the destination must end with '/'$"
    ):
        copy_destination("/", "/dst", 2)
