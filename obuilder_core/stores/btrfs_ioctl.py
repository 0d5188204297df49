"""btrfs subvolume operations as direct ioctls, so that a step starts no `btrfs` process.

A `btrfs subvolume ...` command is one ioctl behind a process start (5-10 ms); the store issues
the ioctl itself. Numbers and layouts are those of the kernel's include/uapi/linux/btrfs.h.
Every function raises OSError, with the errno the kernel gave and the path it refused as
`filename` (the snapshot's source as `filename2`); the caller words the message.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from pathlib import Path

BTRFS_IOCTL_MAGIC = 0x94
BTRFS_PATH_NAME_MAX = 4087
BTRFS_SUBVOL_NAME_MAX = 4039
BTRFS_SUBVOL_RDONLY = 1 << 1
"""Subvolume flag: read-only (set at creation by a snapshot, reported by SUBVOL_GETFLAGS)."""

# struct btrfs_ioctl_vol_args { __s64 fd; char name[BTRFS_PATH_NAME_MAX + 1]; }
_VOL_ARGS = struct.Struct(f"=q{BTRFS_PATH_NAME_MAX + 1}s")
# struct btrfs_ioctl_vol_args_v2 { __s64 fd; __u64 transid; __u64 flags;
#   union { struct { __u64 size; struct btrfs_qgroup_inherit *qgroup_inherit; }; __u64 unused[4]; };
#   union { char name[BTRFS_SUBVOL_NAME_MAX + 1]; __u64 devid; __u64 subvolid; }; }
_VOL_ARGS_V2 = struct.Struct(f"=qQQ32x{BTRFS_SUBVOL_NAME_MAX + 1}s")
assert _VOL_ARGS.size == _VOL_ARGS_V2.size == 4096

# The generic encoding of asm-generic/ioctl.h: nr 8 bits, type 8, size 14, direction 2 (x86,
# arm, arm64, riscv, s390; powerpc, mips and sparc encode differently and are not supported).
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (BTRFS_IOCTL_MAGIC << 8) | nr


def _io(nr: int) -> int:
    return _ioc(_IOC_NONE, nr, 0)


def _ior(nr: int, size: int) -> int:
    return _ioc(_IOC_READ, nr, size)


def _iow(nr: int, size: int) -> int:
    return _ioc(_IOC_WRITE, nr, size)


BTRFS_IOC_SYNC = _io(8)
BTRFS_IOC_SNAP_DESTROY = _iow(15, _VOL_ARGS.size)
BTRFS_IOC_SNAP_CREATE_V2 = _iow(23, _VOL_ARGS_V2.size)
BTRFS_IOC_SUBVOL_CREATE_V2 = _iow(24, _VOL_ARGS_V2.size)
BTRFS_IOC_SUBVOL_GETFLAGS = _ior(25, 8)


def create_subvolume(path: Path) -> None:
    """Create an empty subvolume at `path`; its parent directory must exist (EEXIST if `path`
    does)."""
    name = _name(path)
    with _dir_fd(path.parent) as parent:
        args = bytearray(_VOL_ARGS_V2.pack(0, 0, 0, name))
        _ioctl(parent, BTRFS_IOC_SUBVOL_CREATE_V2, args, path)


def snapshot(src: Path, dst: Path, *, read_only: bool) -> None:
    """Create `dst` as a snapshot of subvolume `src` (read-only if asked, in the same ioctl).

    One ioctl: `dst` appears complete and with its final flags, or not at all; EEXIST if `dst`
    exists (the kernel never puts the snapshot inside it, as the `btrfs` command would).
    Subvolumes nested in `src` are not included: they appear as empty directories.
    """
    name = _name(dst)
    with _dir_fd(src) as source, _dir_fd(dst.parent) as parent:
        flags = BTRFS_SUBVOL_RDONLY if read_only else 0
        args = bytearray(_VOL_ARGS_V2.pack(source, 0, flags, name))
        _ioctl(parent, BTRFS_IOC_SNAP_CREATE_V2, args, dst, src)


def delete_subvolume(path: Path) -> None:
    """Delete subvolume (or snapshot, read-only or not) `path`; ENOTEMPTY if other subvolumes
    are nested in it. The name is gone on return; the cleaner frees the space later."""
    # BTRFS_IOC_SNAP_DESTROY takes a name on every kernel; its _V2 (5.7) adds only deleting
    # by subvolume id. btrfs-progs uses the same one for a path.
    name = _name(path)
    with _dir_fd(path.parent) as parent:
        args = bytearray(_VOL_ARGS.pack(0, name))
        _ioctl(parent, BTRFS_IOC_SNAP_DESTROY, args, path)


def is_read_only(path: Path) -> bool:
    """Whether subvolume `path` is read-only (EINVAL if `path` is not a subvolume's top)."""
    flags = array.array("Q", [0])
    with _dir_fd(path) as fd:
        _ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, flags, path)
    return bool(flags[0] & BTRFS_SUBVOL_RDONLY)


def sync(path: Path) -> None:
    """Commit the transaction of the filesystem of `path` (`btrfs filesystem sync`); this also
    wakes the cleaner, which frees the space of deleted subvolumes."""
    with _dir_fd(path) as fd:
        _ioctl(fd, BTRFS_IOC_SYNC, 0, path)


def _name(path: Path) -> bytes:
    """`path`'s last component as the kernel takes it: a name of one to NAME_MAX bytes."""
    name = os.fsencode(path.name)
    if not name or name in (b".", b".."):
        raise OSError(errno.EINVAL, "not a subvolume name", str(path))
    if len(name) > BTRFS_SUBVOL_NAME_MAX:  # the kernel would cut it short, not refuse it
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))
    return name


@contextlib.contextmanager
def _dir_fd(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _ioctl(
    fd: int,
    request: int,
    arg: bytearray | array.array[int] | int,
    path: Path,
    path2: Path | None = None,
) -> None:
    try:
        fcntl.ioctl(fd, request, arg)
    except OSError as e:
        raise OSError(
            e.errno, e.strerror, str(path), None, None if path2 is None else str(path2)
        ) from None
