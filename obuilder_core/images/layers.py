"""Apply image layers (tar files, maybe compressed) to a rootfs, safely.

Every entry is created relative to a directory file descriptor reached from the rootfs by an
openat-style walk that never follows a symlink (O_NOFOLLOW on each component), so no entry can
write outside the rootfs whatever the layer contains: `..` components and absolute names are
rejected, and so is any entry (or hard-link target, or whiteout) whose parent path goes through a
symlink -- including one the same layer created ("symlink then write through it"). Docker-built
layers never need that, because they record the real path of every file.

Whiteouts follow the OCI layer spec: `.wh.NAME` deletes NAME from the lower layers and
`.wh..wh..opq` empties its directory of everything the lower layers put there.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from obuilder_core.errors import ObuilderError
from obuilder_core.images.base import ImageError
from obuilder_core.in_root import lstat_at, remove_at
from obuilder_core.log import Emit
from obuilder_core.process import run_cmd

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
AUFS_META = ".wh..wh."
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GZIP, _ZSTD, _XZ, _BZ2 = b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00", b"BZh"

Parts = tuple[str, ...]


def apply_layers(rootfs: Path, layers: Sequence[Path], log: Emit, *, where: str) -> None:
    """Apply `layers` in order (lowest first) into `rootfs`; `where` names the image in errors."""
    for i, layer in enumerate(layers, 1):
        log(f"applying layer {i}/{len(layers)}\n".encode())
        apply_layer(rootfs, layer, where=where)


def apply_layer(rootfs: Path, layer: Path, *, where: str) -> None:
    """Apply one tar layer (plain, gzip, zstd, xz or bzip2) into `rootfs`.

    Raises ImageError naming the entry if the layer is malformed or tries to write outside
    `rootfs`; nothing is ever written outside, but `rootfs` is left half-written (discard it).
    """
    root_fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with open_tar(layer, where=where) as tar:
            _Applier(root_fd, where, as_root=os.geteuid() == 0).apply(tar)
    finally:
        os.close(root_fd)


@contextlib.contextmanager
def open_tar(path: Path, *, where: str) -> Iterator[tarfile.TarFile]:
    """Open a (maybe compressed) tar file for streaming; errors become ImageError."""
    with open(path, "rb") as f:
        magic = f.read(6)
        f.seek(0)
        try:
            if magic.startswith(_ZSTD):
                with (
                    _zstd_decompressed(path, where) as plain,
                    open(plain, "rb") as pf,
                    tarfile.open(fileobj=pf, mode="r|") as tar,
                ):
                    yield tar
                return
            mode = "r|"
            if magic.startswith(_GZIP):
                mode = "r|gz"
            elif magic.startswith(_XZ):
                mode = "r|xz"
            elif magic.startswith(_BZ2):
                mode = "r|bz2"
            with tarfile.open(fileobj=f, mode=mode) as tar:  # type: ignore[call-overload]
                yield tar
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as e:
            raise ImageError(f"{where}: layer {path.name} is not a valid tar file: {e}") from None


@contextlib.contextmanager
def _zstd_decompressed(path: Path, where: str) -> Iterator[Path]:
    # Python 3.11 has no zstd module; the zstd CLI (apt) avoids a new Python dependency.
    with tempfile.TemporaryDirectory(prefix="obuilder-zstd-") as tmp:
        out = Path(tmp) / "layer.tar"
        try:
            run_cmd(["zstd", "-d", "-q", "-o", str(out), str(path)])
        except ObuilderError as e:
            raise ImageError(f"{where}: cannot decompress zstd layer {path.name}: {e}") from None
        yield out


def split_name(name: str, where: str, what: str = "entry") -> Parts:
    """The components of a tar member name; rejects absolute names and `..`."""
    if name.startswith("/"):
        raise ImageError(f"{where}: layer {what} {name!r} has an absolute path; refusing it")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ImageError(f"{where}: layer {what} {name!r} contains '..'; refusing it")
    return parts


class _Applier:
    """Applies one layer's members relative to `root_fd` (see the module docstring)."""

    def __init__(self, root_fd: int, where: str, *, as_root: bool) -> None:
        self.root_fd = root_fd
        self.where = where
        self.as_root = as_root
        self.unpacked: set[Parts] = set()  # paths this layer wrote: opaque dirs keep them
        self.dirs: list[tuple[Parts, tarfile.TarInfo]] = []

    def apply(self, tar: tarfile.TarFile) -> None:
        for member in tar:
            try:
                self.member(tar, member)
            except OSError as e:
                raise ImageError(
                    f"{self.where}: cannot apply layer entry {member.name!r}: {e.strerror or e}"
                ) from None
        # Directory modes and mtimes last, deepest first, so read-only dirs can still be
        # filled and writing children does not bump a parent's mtime.
        for parts, member in reversed(self.dirs):
            self.finish_dir(parts, member)

    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = split_name(m.name, self.where)
        if not parts:
            return  # the rootfs itself: keep the directory the caller made
        base = parts[-1]
        if any(p.startswith(AUFS_META) for p in parts) and base != OPAQUE:
            return  # aufs bookkeeping (.wh..wh.plnk, ...): never image content (as docker)
        if base.startswith(WHITEOUT):
            self.whiteout(parts[:-1], base, m.name)
            return
        pfd = self.walk(parts[:-1], m.name, create=True)
        assert pfd is not None
        try:
            self.create(tar, m, pfd, parts)
        finally:
            os.close(pfd)
        self.unpacked.add(parts)

    def walk(self, parents: Parts, entry: str, *, create: bool) -> int | None:
        """An fd for directory `parents` under the root, never following symlinks.

        Missing directories are created (mode 0755) when `create`, else None is returned.
        """
        fd = os.dup(self.root_fd)
        try:
            for i, comp in enumerate(parents):
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    self.unpacked.add(parents[: i + 1])
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    st = os.stat(comp, dir_fd=fd, follow_symlinks=False)
                    path = "/".join(parents[: i + 1])
                    if stat.S_ISLNK(st.st_mode):
                        raise ImageError(
                            f"{self.where}: layer entry {entry!r} goes through symlink {path!r};"
                            " refusing to write through it"
                        ) from None
                    raise ImageError(
                        f"{self.where}: layer entry {entry!r}: {path!r} is not a directory"
                    ) from None
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def create(self, tar: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, parts: Parts) -> None:
        base = parts[-1]
        existing = lstat_at(base, pfd)
        if m.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                remove_at(base, pfd, existing)
                os.mkdir(base, 0o755, dir_fd=pfd)
            if self.as_root:
                os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            self.dirs.append((parts, m))
            return
        remove_at(base, pfd, existing)
        if m.isreg():
            self.create_file(tar, m, pfd, base)
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=pfd)
            if self.as_root:
                os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(base, ns=_mtime_ns(m), dir_fd=pfd, follow_symlinks=False)
        elif m.islnk():
            self.create_hardlink(m, pfd, base)
        elif m.ischr() or m.isblk() or m.isfifo():
            self.create_special(m, pfd, base)
        # Other types (GNU volume headers, ...) carry no file: skip them.

    def create_file(self, tar: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, base: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=pfd)
        with os.fdopen(fd, "wb") as out:
            src = tar.extractfile(m)
            if src is not None:
                shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            if self.as_root:
                os.fchown(fd, m.uid, m.gid)
                _set_xattrs(fd, m)
            os.fchmod(fd, m.mode & 0o7777)  # after chown, which clears setuid bits
            os.utime(fd, ns=_mtime_ns(m))

    def create_hardlink(self, m: tarfile.TarInfo, pfd: int, base: str) -> None:
        target = split_name(m.linkname, self.where, what="hard link target")
        if not target:
            raise ImageError(f"{self.where}: layer entry {m.name!r} is a hard link to the root")
        tfd = self.walk(target[:-1], m.name, create=False)
        if tfd is None or lstat_at(target[-1], tfd) is None:
            if tfd is not None:
                os.close(tfd)
            raise ImageError(
                f"{self.where}: layer entry {m.name!r} is a hard link to missing {m.linkname!r}"
            )
        try:
            os.link(target[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def create_special(self, m: tarfile.TarInfo, pfd: int, base: str) -> None:
        if m.isfifo():
            os.mkfifo(base, 0o600, dir_fd=pfd)
        elif not self.as_root:
            return  # only root may create device nodes; images work without them
        else:
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        if self.as_root:
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(base, m.mode & 0o7777, dir_fd=pfd)
        os.utime(base, ns=_mtime_ns(m), dir_fd=pfd, follow_symlinks=False)

    def whiteout(self, parents: Parts, base: str, entry: str) -> None:
        pfd = self.walk(parents, entry, create=base == OPAQUE)
        if pfd is None:
            return  # nothing below to hide
        try:
            if base == OPAQUE:
                for child in os.listdir(pfd):
                    if (*parents, child) not in self.unpacked:
                        remove_at(child, pfd, lstat_at(child, pfd))
            else:
                victim = base[len(WHITEOUT) :]
                if victim and (*parents, victim) not in self.unpacked:
                    remove_at(victim, pfd, lstat_at(victim, pfd))
        finally:
            os.close(pfd)

    def finish_dir(self, parts: Parts, m: tarfile.TarInfo) -> None:
        try:
            pfd = self.walk(parts[:-1], m.name, create=False)
        except ImageError:
            return  # a parent was replaced by a symlink later in the layer: nothing to finish
        if pfd is None:
            return
        try:
            fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=pfd)
        except OSError:
            return  # removed or replaced later in the same layer
        finally:
            os.close(pfd)
        try:
            os.fchmod(fd, m.mode & 0o7777)
            os.utime(fd, ns=_mtime_ns(m))
        finally:
            os.close(fd)


def _mtime_ns(m: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in ns: exact from a PAX `mtime` record (`SECONDS.FRACTION`, which tarfile
    reads as a float that loses the nanoseconds), else the header's seconds."""
    record = m.pax_headers.get("mtime")
    if record is not None:
        whole, _, frac = record.partition(".")
        if whole.lstrip("-").isdigit() and (frac == "" or frac.isdigit()):
            sign = -1 if whole.startswith("-") else 1
            ns = int(whole) * 1_000_000_000 + sign * int((frac + "0" * 9)[:9] or 0)
            return ns, ns
    ns = int(m.mtime * 1_000_000_000)
    return ns, ns


def _set_xattrs(fd: int, m: tarfile.TarInfo) -> None:
    # File capabilities (e.g. ping's cap_net_raw) travel as PAX SCHILY.xattr headers.
    for key, value in m.pax_headers.items():
        name = key.removeprefix("SCHILY.xattr.")
        if name != key:
            with contextlib.suppress(OSError):
                os.setxattr(fd, name, value.encode("utf-8", "surrogateescape"))
