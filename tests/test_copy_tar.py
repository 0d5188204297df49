"""The copy tar stream, extracted by real GNU tar and busybox tar as the sandbox would."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obuilder_core.copy_tar import (
    CopyStreamError,
    gnu_header,
    member_kinds,
    missing_dirs,
    write_copy_tar,
)
from obuilder_core.manifest import Manifest, ManifestError, generate
from obuilder_core.paths import CopyShape, copy_destination
from obuilder_core.process import run_cmd
from obuilder_core.spec.model import NamedUser, UnixUser, User
from tests.fixtures.root import require_tool

BUSYBOX = "/bin/busybox"
OPAM = UnixUser(1000, 1001)
LONG = "d" * 60 + "/" + "n" * 80 + ".txt"  # 145 characters: needs GNU long names


def _gnu_tar(data: bytes, dest: Path) -> None:
    require_tool("tar")
    run_cmd(["tar", "-xf", "-", "-C", str(dest)], input=data)


def _busybox_tar(data: bytes, dest: Path) -> None:
    if not os.access(BUSYBOX, os.X_OK):
        pytest.skip("needs /bin/busybox (busybox-static)")
    run_cmd([BUSYBOX, "tar", "-xf", "-", "-C", str(dest)], input=data)


Extract = Callable[[bytes, Path], None]


@pytest.fixture(params=[_gnu_tar, _busybox_tar], ids=["gnu-tar", "busybox-tar"])
def extract(request: pytest.FixtureRequest) -> Extract:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    """A context with a tree, an executable, symlinks, a long name and a hard link."""
    root = tmp_path / "ctx"
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "main.ml").write_text("let () = ()\n")
    (root / "src" / "sub" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "src" / "sub" / "run.sh").chmod(0o700)
    (root / "src" / "link").symlink_to("sub/run.sh")
    (root / "src" / "etc").symlink_to("/etc")
    (root / "src" / LONG).parent.mkdir()
    (root / "src" / LONG).write_text("long\n")
    os.link(root / "src" / "main.ml", root / "src" / "hard.ml")
    (root / "file").write_text("a file\n")
    (root / "src" / "private").mkdir(mode=0o700)
    return root


def _stream(
    ctx: Path,
    srcs: Sequence[str],
    dst: str,
    rootfs: Path,
    user: User = OPAM,
    workdir: str = "/",
) -> bytes:
    """What the builder does: manifests, destination, missing dirs, then the stream."""
    items = [generate(ctx, s, []) for s in srcs]
    path, shape = copy_destination(workdir, dst, len(items))
    out = io.BytesIO()
    dirs = missing_dirs(rootfs, path, shape)
    write_copy_tar(out, ctx, items, path, shape, user, create_dirs=dirs)
    return out.getvalue()


def _owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _is_root() -> bool:
    return os.geteuid() == 0


# --- layouts -------------------------------------------------------------------------------


def test_tree_copied_into_a_directory(ctx: Path, tmp_path: Path, extract: Extract) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    extract(_stream(ctx, ["src", "file"], "/home/opam/", rootfs), rootfs)
    home = rootfs / "home" / "opam"
    assert (home / "file").read_text() == "a file\n"
    assert (home / "src" / "main.ml").read_text() == "let () = ()\n"
    assert (home / "src" / "hard.ml").read_text() == "let () = ()\n"
    assert os.stat(home / "src" / "hard.ml").st_nlink == 1  # hard links arrive as copies
    assert (home / "src" / LONG).read_text() == "long\n"
    assert os.readlink(home / "src" / "link") == "sub/run.sh"
    assert os.readlink(home / "src" / "etc") == "/etc"
    assert (home / "src" / "private").is_dir() and not (home / "src" / "private").is_symlink()
    assert _mode(home / "src" / "sub" / "run.sh") == 0o755
    assert _mode(home / "src" / "main.ml") == 0o644
    assert _mode(home / "src" / "private") == 0o755
    if _is_root():
        for p in [home, home.parent, home / "src", home / "src" / "sub" / "run.sh"]:
            assert _owner(p) == (1000, 1001), p
        # busybox tar does not lchown symlinks: they stay root-owned (harmless, documented).
        link_owner = (0, 0) if extract is _busybox_tar else (1000, 1001)
        assert _owner(home / "src" / "link") == link_owner


def test_whole_context_goes_into_dst_itself(ctx: Path, tmp_path: Path, extract: Extract) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "work").mkdir(parents=True)
    extract(_stream(ctx, ["."], "./", rootfs, workdir="/work"), rootfs)
    assert sorted(os.listdir(rootfs / "work")) == ["file", "src"]
    assert (rootfs / "work" / "src" / "sub" / "run.sh").exists()


def test_single_item_is_renamed_to_dst(ctx: Path, tmp_path: Path, extract: Extract) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "bin").mkdir(parents=True)
    extract(_stream(ctx, ["src/sub/run.sh"], "/usr/bin/tool", rootfs), rootfs)
    extract(_stream(ctx, ["src/sub"], "/opt/scripts", rootfs), rootfs)
    extract(_stream(ctx, ["."], "/ctx", rootfs), rootfs)
    assert (rootfs / "usr" / "bin" / "tool").read_text() == "#!/bin/sh\necho hi\n"
    assert os.listdir(rootfs / "opt" / "scripts") == ["run.sh"]
    assert sorted(os.listdir(rootfs / "ctx")) == ["file", "src"]


def test_single_symlink_item(ctx: Path, tmp_path: Path, extract: Extract) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    extract(_stream(ctx, ["src/etc"], "/etc-link", rootfs), rootfs)
    assert os.readlink(rootfs / "etc-link") == "/etc"


def test_long_symlink_target(tmp_path: Path, extract: Extract) -> None:
    ctx, rootfs = tmp_path / "ctx", tmp_path / "rootfs"
    ctx.mkdir()
    rootfs.mkdir()
    target = "/".join(["x" * 50] * 5)
    (ctx / ("l" * 120)).symlink_to(target)
    extract(_stream(ctx, ["."], "/out/", rootfs), rootfs)
    assert os.readlink(rootfs / "out" / ("l" * 120)) == target


def test_non_utf8_names_round_trip(tmp_path: Path, extract: Extract) -> None:
    ctx, rootfs = tmp_path / "ctx", tmp_path / "rootfs"
    ctx.mkdir()
    rootfs.mkdir()
    name = os.fsdecode(b"caf\xe9-\xff")
    (ctx / name).write_text("latin-1")
    extract(_stream(ctx, ["."], "/out/", rootfs), rootfs)
    assert os.listdir(os.fsencode(rootfs / "out")) == [b"caf\xe9-\xff"]


# --- headers -------------------------------------------------------------------------------


def test_directories_are_real_directory_entries(ctx: Path, tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    data = _stream(ctx, ["src"], "/a/b/", tmp_path / "rootfs")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    dirs = [m for m in members if m.name.endswith("/") or m.isdir()]
    assert {m.name for m in dirs} == {
        "a",
        "a/b",
        "a/b/src",
        "a/b/src/sub",
        "a/b/src/private",
        "a/b/src/" + LONG.split("/")[0],
    }
    assert all(m.type == tarfile.DIRTYPE for m in dirs)
    assert all(m.uid == 1000 and m.gid == 1001 and m.uname == "" for m in members)
    assert len(data) % 10240 == 0


def test_named_user_is_sent_by_name(ctx: Path, tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    data = _stream(ctx, ["file"], "/f", tmp_path / "rootfs", user=NamedUser("opam"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        (member,) = tar.getmembers()
    assert (member.uname, member.gname, member.uid, member.gid) == ("opam", "opam", 0, 0)


def test_large_ids(ctx: Path, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    data = _stream(ctx, ["file"], "/f", rootfs, user=UnixUser(3_000_000, 3_000_001))
    _gnu_tar(data, rootfs)
    if _is_root():
        assert _owner(rootfs / "f") == (3_000_000, 3_000_001)


_names = st.text(st.sampled_from(["a", "é", "/", "\udcff", "-"]), min_size=1, max_size=120)


@settings(max_examples=300, deadline=None)
@given(
    name=_names,
    kind=st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE]),
    mode=st.sampled_from([0o644, 0o755, 0o777]),
    mtime=st.integers(0, 8**11 + 1),
    size=st.integers(0, 8**11 + 1),
    linkname=st.text(st.sampled_from(["x", "/", "é"]), max_size=120),
    uid=st.integers(0, 8**7 + 1),
    gid=st.integers(0, 8**7 + 1),
    uname=st.sampled_from(["", "opam", "n" * 32, "n" * 33]),
)
def test_fast_headers_match_tarfile(
    name: str,
    kind: bytes,
    mode: int,
    mtime: int,
    size: int,
    linkname: str,
    uid: int,
    gid: int,
    uname: str,
) -> None:
    fast = gnu_header(name, kind, mode, mtime, size, linkname, uid, gid, uname, uname)
    if fast is None:  # the writer falls back to tarfile: only for what needs extensions
        assert (
            len(os.fsencode(name)) > 100
            or len(os.fsencode(linkname)) > 100
            or max(uid, gid) >= 8**7
            or max(size, mtime) >= 8**11
            or len(uname) > 32
        )
        return
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size, info.linkname = kind, mode, mtime, size, linkname
    info.uid, info.gid, info.uname, info.gname = uid, gid, uname, uname
    assert fast == info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def test_long_directory_names(tmp_path: Path, extract: Extract) -> None:
    ctx, rootfs = tmp_path / "ctx", tmp_path / "rootfs"
    deep = ctx / ("a" * 90) / ("b" * 90)
    deep.mkdir(parents=True)
    (deep / "f").write_text("deep")
    rootfs.mkdir()
    data = _stream(ctx, ["."], "/" + "c" * 90 + "/", rootfs)
    extract(data, rootfs)
    assert (rootfs / ("c" * 90) / ("a" * 90) / ("b" * 90) / "f").read_text() == "deep"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert [m.type for m in tar.getmembers()] == [tarfile.DIRTYPE] * 3 + [tarfile.REGTYPE]


# --- existing directories ------------------------------------------------------------------


def test_existing_parents_keep_owner_and_mode(ctx: Path, tmp_path: Path, extract: Extract):
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "local").mkdir(parents=True)
    for d, mode in [(rootfs / "usr", 0o700), (rootfs / "usr" / "local", 0o750)]:
        d.chmod(mode)
        os.utime(d, (86400, 86400))
    data = _stream(ctx, ["file"], "/usr/local/bin/", rootfs)
    extract(data, rootfs)
    assert _mode(rootfs / "usr") == 0o700
    assert _mode(rootfs / "usr" / "local") == 0o750
    assert os.stat(rootfs / "usr").st_mtime == 86400
    assert (rootfs / "usr" / "local" / "bin" / "file").read_text() == "a file\n"
    if _is_root():
        assert _owner(rootfs / "usr") == (0, 0)
        assert _owner(rootfs / "usr" / "local") == (0, 0)
        assert _owner(rootfs / "usr" / "local" / "bin") == (1000, 1001)  # created for the copy


def test_missing_dirs(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "local").mkdir(parents=True)
    (rootfs / "etc-link").symlink_to("/etc")
    (rootfs / "file").write_text("")
    assert missing_dirs(rootfs, "/usr/local/bin", CopyShape.MULTI) == ["/usr/local/bin"]
    assert missing_dirs(rootfs, "/usr/local/bin/x", CopyShape.SINGLE) == ["/usr/local/bin"]
    assert missing_dirs(rootfs, "/usr/local", CopyShape.MULTI) == []
    assert missing_dirs(rootfs, "/a/b", CopyShape.MULTI) == ["/a", "/a/b"]
    assert missing_dirs(rootfs, "/a/b", CopyShape.SINGLE) == ["/a"]
    assert missing_dirs(rootfs, "/", CopyShape.MULTI) == []
    # Never looked through on the host: resolved by the tar inside the container.
    assert missing_dirs(rootfs, "/etc-link/new", CopyShape.MULTI) == []
    assert missing_dirs(rootfs, "/file/new", CopyShape.MULTI) == []


# --- the source changing under us ----------------------------------------------------------


def _items(ctx: Path, src: str) -> list[Manifest]:
    return [generate(ctx, src, [])]


def _send(ctx: Path, items: list[Manifest]) -> bytes:
    out = io.BytesIO()
    write_copy_tar(out, ctx, items, "/dst", CopyShape.MULTI, OPAM)
    return out.getvalue()


def test_content_changed_after_the_manifest_fails(ctx: Path) -> None:
    items = _items(ctx, "src")
    (ctx / "src" / "sub" / "run.sh").write_text("#!/bin/sh\necho ho\n")  # same size
    with pytest.raises(ManifestError, match=r'Source file "src/sub/run\.sh" changed during'):
        _send(ctx, items)


def test_size_changed_after_the_manifest_fails(ctx: Path) -> None:
    items = _items(ctx, "file")
    (ctx / "file").write_text("longer content\n")
    with pytest.raises(ManifestError, match='Source file "file" changed during the copy'):
        _send(ctx, items)


def test_dir_swapped_for_a_symlink_is_not_followed(ctx: Path, tmp_path: Path) -> None:
    items = _items(ctx, "src")
    (ctx / "src" / "sub").rename(tmp_path / "moved")
    (ctx / "src" / "sub").symlink_to(tmp_path / "moved")
    with pytest.raises(ManifestError, match='Source file "src/sub" changed during the copy'):
        _send(ctx, items)


def test_symlink_retargeted_after_the_manifest_fails(ctx: Path) -> None:
    items = _items(ctx, "src")
    (ctx / "src" / "link").unlink()
    (ctx / "src" / "link").symlink_to("/etc/shadow")
    with pytest.raises(ManifestError, match='Source file "src/link" changed during the copy'):
        _send(ctx, items)


def test_closed_reader_is_a_clear_error(ctx: Path) -> None:
    r, w = os.pipe()
    os.close(r)
    with open(w, "wb") as out, pytest.raises(CopyStreamError, match="closed by the receiving"):
        write_copy_tar(out, ctx, _items(ctx, "src"), "/dst", CopyShape.MULTI, OPAM)


@pytest.mark.parametrize(
    ("srcs", "dst"),
    [
        (["src", "file"], "/home/opam/"),
        (["."], "/ctx"),
        (["."], "/"),
        (["."], "/app/"),
        (["src/sub"], "/opt/s"),
    ],
)
def test_the_listing_names_every_member_sent(ctx: Path, srcs: list[str], dst: str) -> None:
    """`member_kinds` (from the manifests alone) names what the stream holds, as the listing
    does; the listing records each member as sent."""
    items = [generate(ctx, s, []) for s in srcs]
    path, shape = copy_destination("/", dst, len(items))
    out = io.BytesIO()
    listing = write_copy_tar(out, ctx, items, path, shape, OPAM)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = {m.name.rstrip("/"): m for m in tar.getmembers()}
    assert set(listing) == set(members) == set(member_kinds(items, path, shape))
    for name, (kind, what, size, mode, mtime) in listing.items():
        m = members[name]
        assert kind == {tarfile.REGTYPE: "f", tarfile.SYMTYPE: "l", tarfile.DIRTYPE: "d"}[m.type]
        assert (size, mode, mtime) == (m.size, m.mode, m.mtime)
        if kind != "f":  # a file's is its digest
            assert what == (m.linkname if kind == "l" else "")


def test_an_edit_sends_directories_and_what_changed(ctx: Path) -> None:
    """With the previous copy's listing, unchanged files and symlinks are listed, not sent."""
    items = _items(ctx, "src")
    previous = write_copy_tar(io.BytesIO(), ctx, items, "/dst", CopyShape.MULTI, OPAM)
    (ctx / "src" / "main.ml").write_text("changed\n")
    os.utime(ctx / "src" / "link", (5, 5), follow_symlinks=False)
    items = _items(ctx, "src")
    out = io.BytesIO()
    listing = write_copy_tar(out, ctx, items, "/dst", CopyShape.MULTI, OPAM, previous=previous)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        sent = {m.name.rstrip("/") for m in tar.getmembers()}
    dirs = {m for m, r in listing.items() if r[0] == "d"}
    changed = {"dst/src/main.ml", "dst/src/hard.ml", "dst/src/link"}  # hard.ml: a hard link
    assert sent == dirs | changed
    assert listing["dst/src/link"][4] == 5
    assert set(listing) == set(previous)
