"""copy_host: a copy's members written by the host give what GNU tar, extracting the copy's
stream as root, gives; paths resolve inside the rootfs. (The real builder with runc and
busybox: tests/builder/test_copy_on_host.py.)"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from obuilder_core.builder.steps import copy_files, deadline_check
from obuilder_core.builder.tree_diff import compare_trees
from obuilder_core.copy_host import CopyWriteError, HostSink
from obuilder_core.copy_tar import Listing, missing_dirs, send_copy, write_copy_tar
from obuilder_core.log import ByteCounter
from obuilder_core.manifest import generate
from obuilder_core.paths import CopyShape, copy_destination
from obuilder_core.sandbox import Cancelled, Limits, TimedOut
from obuilder_core.sandbox.rules import UnavailableSandbox
from obuilder_core.spec.model import UnixUser
from tests.fixtures.root import require_tool

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (gives files away)")

USER = UnixUser(1000, 1001)
NO_SANDBOX = UnavailableSandbox("the host writes the copy")

Setup = Callable[[Path], None]


def _source(ctx: Path) -> None:
    src = ctx / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "a.txt").write_text("a\n")
    (src / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (src / "sub" / "run.sh").chmod(0o700)
    (src / "sub" / "deeper" / "big").write_bytes(os.urandom(3 << 20))
    (src / "rel-link").symlink_to("sub/run.sh")
    (src / "abs-link").symlink_to("/etc/passwd")
    for i, p in enumerate(sorted(src.rglob("*"))):
        os.utime(p, (1_600_000_000 + i, 1_600_000_000 + i), follow_symlinks=False)


def _nothing(rootfs: Path) -> None:
    pass


def _occupied(rootfs: Path) -> None:
    """Every kind of thing already at the members' paths, and a directory of other mode."""
    src = rootfs / "app" / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub").chmod(0o700)
    os.chown(src / "sub", 5, 5)
    (src / "a.txt").write_text("old contents, longer than the new\n")
    (src / "rel-link").write_text("a file where a symlink goes\n")
    (src / "empty").symlink_to("sub")  # a symlink where a directory goes: replaced
    (src / "abs-link").mkdir()  # an empty directory where a symlink goes
    (src / "sub" / "keep").write_text("not in the copy\n")
    (src / "sub" / "run.sh").symlink_to("../a.txt")  # a symlink where a file goes: replaced


def _dst_is_a_symlink(rootfs: Path) -> None:
    """/app -> srv/real, relative (GNU tar on the host follows it the same way)."""
    (rootfs / "srv" / "real").mkdir(parents=True)
    (rootfs / "app").symlink_to("srv/real")


def _dst_below_a_symlink(rootfs: Path) -> None:
    """/app -> srv, and the copy goes to /app/deep/: the host makes srv/deep, as tar does."""
    (rootfs / "srv").mkdir()
    (rootfs / "app").symlink_to("srv")


CASES: list[tuple[str, Setup, str]] = [
    ("fresh", _nothing, "/app/"),
    ("occupied", _occupied, "/app/"),
    ("dst is a symlink", _dst_is_a_symlink, "/app/"),
    ("dst below a symlink", _dst_below_a_symlink, "/app/deep/"),
    ("single", _nothing, "/opt/x/renamed"),
]


def _copy_into(rootfs: Path, ctx: Path, dst: str, write: Callable[..., Listing]) -> Listing:
    dst, shape = copy_destination("/", dst, 1)
    items = [generate(ctx, "src", [])]
    return write(items, dst, shape, missing_dirs(rootfs, dst, shape))


def _by_host(rootfs: Path, ctx: Path, dst: str) -> Listing:
    def write(items: list, dst: str, shape: CopyShape, create: list[str]) -> Listing:
        with HostSink(rootfs, USER, lambda: None, ByteCounter(None)) as sink:
            return send_copy(sink, ctx, items, dst, shape, create_dirs=create)

    return _copy_into(rootfs, ctx, dst, write)


def _by_gnu_tar(rootfs: Path, ctx: Path, dst: str) -> Listing:
    require_tool("tar")

    def write(items: list, dst: str, shape: CopyShape, create: list[str]) -> Listing:
        tar = subprocess.Popen(["tar", "-xf", "-", "-C", str(rootfs)], stdin=subprocess.PIPE)
        assert tar.stdin is not None
        with tar.stdin:
            listing = write_copy_tar(tar.stdin, ctx, items, dst, shape, USER, create_dirs=create)
        assert tar.wait() == 0
        return listing

    return _copy_into(rootfs, ctx, dst, write)


def _rootfs(tmp_path: Path, name: str, setup: Setup) -> Path:
    rootfs = tmp_path / name
    rootfs.mkdir()
    setup(rootfs)
    return rootfs


@pytest.mark.parametrize(("setup", "dst"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_host_writes_what_gnu_tar_extracts(tmp_path: Path, setup: Setup, dst: str) -> None:
    """Contents, types, modes, owners, symlink targets and every member's mtime, directories
    included (GNU tar also sets them last); only directories the copy did not send (made
    or written into) have the time of the copy, which differs between the two."""
    ctx = tmp_path / "ctx"
    _source(ctx)
    os.umask(0o022)  # tar, like a container's shell, makes missing ancestors 0755
    by_host, by_tar = _rootfs(tmp_path, "host", setup), _rootfs(tmp_path, "tar", setup)
    listing = _by_host(by_host, ctx, dst)
    assert _by_gnu_tar(by_tar, ctx, dst) == listing
    diff = compare_trees(by_host, by_tar, check_mtimes=True)
    real = os.path.realpath
    sent = {real(by_host / m) for m in listing}
    found = [
        (d.kind, d.path)
        for d in diff.differences
        if not (d.kind == "mtime" and real(by_host / d.path) not in sent)
    ]
    assert found == []
    assert len(listing) >= 9


def test_owner_mode_and_mtime_are_the_streams(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    _source(ctx)
    rootfs = _rootfs(tmp_path, "rootfs", _occupied)
    _by_host(rootfs, ctx, "/app/")
    src = rootfs / "app" / "src"
    for path, mode in [
        (src / "sub", 0o755),
        (src / "sub" / "run.sh", 0o755),
        (src / "a.txt", 0o644),
    ]:
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1001, mode), path
    assert (src / "a.txt").read_text() == "a\n"
    assert not (src / "sub" / "run.sh").is_symlink()  # the symlink there was replaced
    assert (src / "sub" / "keep").exists()  # a directory member keeps what else it holds
    assert not (src / "empty").is_symlink() and (src / "empty").is_dir()
    for path in ("a.txt", "sub", "."):  # whole seconds, as in the tar stream
        assert os.lstat(src / path).st_mtime == int(os.lstat(ctx / "src" / path).st_mtime)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory standing for the host's, with a file to keep."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "a.txt").write_text("keep\n")
    return host


@pytest.mark.parametrize("link", ["absolute", "climbing"])
def test_symlinks_in_the_rootfs_never_lead_to_the_host(
    tmp_path: Path, outside: Path, link: str
) -> None:
    """/app points at the host's directory (absolute, or by `..` past the root): inside the
    rootfs there is no such directory, so the copy fails as tar in the container does."""
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src" / "a.txt").write_text("copied\n")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    target = outside if link == "absolute" else Path("../../..", *outside.parts[1:])
    (rootfs / "app").symlink_to(target)
    items = [generate(ctx / "src", "a.txt", [])]
    with (
        pytest.raises(CopyWriteError, match=r"Can't write /app in the rootfs"),
        HostSink(rootfs, USER, lambda: None, ByteCounter(None)) as sink,
    ):
        send_copy(sink, ctx / "src", items, "/app", CopyShape.MULTI)
    assert (outside / "a.txt").read_text() == "keep\n"
    assert sorted(os.listdir(outside)) == ["a.txt"]


def test_a_symlink_at_a_member_is_replaced_not_followed(tmp_path: Path, outside: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src" / "a.txt").write_text("copied\n")
    rootfs = tmp_path / "rootfs"
    (rootfs / "app").mkdir(parents=True)
    (rootfs / "app" / "a.txt").symlink_to(outside / "a.txt")
    items = [generate(ctx / "src", "a.txt", [])]
    with HostSink(rootfs, USER, lambda: None, ByteCounter(None)) as sink:
        send_copy(sink, ctx / "src", items, "/app", CopyShape.MULTI)
    assert (rootfs / "app" / "a.txt").read_text() == "copied\n"
    assert not (rootfs / "app" / "a.txt").is_symlink()
    assert (outside / "a.txt").read_text() == "keep\n"


def test_a_file_over_a_non_empty_directory_fails_naming_it(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src" / "a.txt").write_text("copied\n")
    rootfs = tmp_path / "rootfs"
    (rootfs / "app" / "a.txt").mkdir(parents=True)
    (rootfs / "app" / "a.txt" / "inner").write_text("stays\n")
    items = [generate(ctx / "src", "a.txt", [])]
    with (
        pytest.raises(
            CopyWriteError, match=r"^Can't write /app/a.txt in the rootfs: Directory not empty$"
        ),
        HostSink(rootfs, USER, lambda: None, ByteCounter(None)) as sink,
    ):
        send_copy(sink, ctx / "src", items, "/app", CopyShape.MULTI)
    assert (rootfs / "app" / "a.txt" / "inner").read_text() == "stays\n"


def test_a_cancelled_copy_stops(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    _source(ctx)
    tmp = tmp_path / "step"
    (tmp / "rootfs").mkdir(parents=True)
    cancel = threading.Event()
    cancel.set()
    items = [generate(ctx, "src", [])]
    with pytest.raises(Cancelled):
        copy_files(
            tmp, ctx, items, "/app", CopyShape.MULTI, USER,
            sandbox=NO_SANDBOX, write=lambda b: None, cancel=cancel,
        )  # fmt: skip
    assert not (tmp / "rootfs" / "app").exists()


def test_a_large_file_is_stopped_between_its_chunks(tmp_path: Path) -> None:
    """Cancelling or the time limit stop the copy within a chunk (1 MiB) of a large file, as
    they stop a container's tar within about a second, not after the whole file."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "big").write_bytes(os.urandom(5 << 20))
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    written = ByteCounter(None)
    checks = []

    def check() -> None:
        checks.append(written.total)
        if written.total >= 2 << 20:
            raise Cancelled(("copy", "/"))

    items = [generate(ctx, "big", [])]
    with pytest.raises(Cancelled), HostSink(rootfs, USER, check, written) as sink:
        send_copy(sink, ctx, items, "/", CopyShape.MULTI)
    assert written.total == 2 << 20  # two chunks of five
    assert checks == [0, 0, 1 << 20, 2 << 20]  # the member, then before each chunk


def test_the_time_limit_is_checked_before_each_member() -> None:
    now = [100.0]
    check = deadline_check(
        ("copy", "/app"), threading.Event(), Limits(timeout=5), clock=lambda: now[0]
    )
    check()
    now[0] = 104.9
    check()
    now[0] = 105.1
    with pytest.raises(TimedOut, match=r'"copy" "/app" killed: step timeout 5s'):
        check()


def test_copy_files_writes_on_the_host_without_the_sandbox(tmp_path: Path) -> None:
    """The sandbox here cannot run anything: the copy does not need it, and saves its listing."""
    ctx = tmp_path / "ctx"
    _source(ctx)
    tmp = tmp_path / "step"
    (tmp / "rootfs").mkdir(parents=True)
    sent: list[int] = []
    items = [generate(ctx, "src", [])]
    copy_files(
        tmp, ctx, items, "/app", CopyShape.MULTI, USER,
        sandbox=NO_SANDBOX, write=lambda b: None, cancel=threading.Event(), progress=sent.append,
    )  # fmt: skip
    assert (tmp / "rootfs" / "app" / "src" / "sub" / "deeper" / "big").stat().st_size == 3 << 20
    assert sent and sent[-1] >= 3 << 20
    assert (tmp / "copied.json").exists()
