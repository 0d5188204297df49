"""Two archives that differ, told as archives: which members differ and in what (name, order,
mtime, mode, owner, size, content), instead of a text diff full of NUL bytes.

Read here: tar (plain, gzip, bzip2, xz), a gzip of anything else (its header's name and mtime,
its contents), zip and jar, ar (a .deb: its members, and the tars inside it, one level down).
For a diff of the contents themselves, diffoscope does it all; the report names it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MAX_ARCHIVE = 64 << 20
"""Larger archives are not opened (the hex summary stands)."""
MAX_LINES = 20
NESTED_DEPTH = 1


@dataclass(frozen=True)
class Member:
    """One archive member, as compared."""

    name: str
    kind: str
    mode: str
    owner: str
    size: int
    mtime: str
    digest: str


@dataclass(frozen=True)
class Listing:
    """An archive's format and members, in archive order; `data` gives a member's bytes."""

    format: str
    members: tuple[Member, ...]
    data: Callable[[str], bytes | None]


def archive_detail(a: Path, b: Path) -> str | None:
    """The member differences of archives `a` and `b`, or None if they are not archives of
    one format (the caller then shows text or hex)."""
    try:
        if max(a.stat().st_size, b.stat().st_size) > MAX_ARCHIVE:
            return None
        da, db = a.read_bytes(), b.read_bytes()
    except OSError:
        return None
    return _detail(da, db, depth=0)


def _detail(da: bytes, db: bytes, depth: int) -> str | None:
    la, lb = listing(da), listing(db)
    if la is None or lb is None or la.format != lb.format:
        return None
    lines = [f"{la.format} archive; {len(la.members)} / {len(lb.members)} members"]
    names_a = [m.name for m in la.members]
    names_b = [m.name for m in lb.members]
    only_a = [n for n in names_a if n not in names_b]
    only_b = [n for n in names_b if n not in names_a]
    if only_a:
        lines.append(f"  only in A: {', '.join(only_a[:10])}")
    if only_b:
        lines.append(f"  only in B: {', '.join(only_b[:10])}")
    common_a = [n for n in names_a if n in names_b]
    common_b = [n for n in names_b if n in names_a]
    if common_a != common_b:
        lines.append(f"  member order differs: A {', '.join(common_a[:6])} ...")
        lines.append(f"                        B {', '.join(common_b[:6])} ...")
    by_name = {m.name: m for m in lb.members}
    for ma in la.members:
        mb = by_name.get(ma.name)
        if mb is None or ma == mb:
            continue
        lines.append(f"  {ma.name}: {_changes(ma, mb)}")
        if ma.digest != mb.digest and depth < NESTED_DEPTH:
            inner = _nested(la, lb, ma.name, depth)
            if inner:
                lines += ["    " + line for line in inner.splitlines()]
        if len(lines) >= MAX_LINES:
            lines.append("  ...")
            break
    if len(lines) == 1:
        lines.append("  members identical; the archive's own headers differ")
    return "\n".join(lines)


def _nested(la: Listing, lb: Listing, name: str, depth: int) -> str | None:
    inner_a, inner_b = la.data(name), lb.data(name)
    if inner_a is None or inner_b is None:
        return None
    return _detail(inner_a, inner_b, depth + 1)


def _changes(a: Member, b: Member) -> str:
    fields = ("kind", "mode", "owner", "size", "mtime", "digest")
    changed = [f for f in fields if getattr(a, f) != getattr(b, f)]
    shown = [f for f in changed if f != "digest"]
    parts = [f"{f} {getattr(a, f)} -> {getattr(b, f)}" for f in shown]
    if "digest" in changed:
        parts.append(f"content {a.digest} -> {b.digest}")
    return "; ".join(parts)


def listing(data: bytes) -> Listing | None:
    """The members of `data` if it is an archive this module reads, else None."""
    if data.startswith(b"!<arch>\n"):
        return _ar(data)
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return _zip(data)
    tar = _tar(data)
    if tar is not None:
        return tar
    if data.startswith(b"\x1f\x8b"):
        return _gzip(data)
    return None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tar(data: bytes) -> Listing | None:
    contents: dict[str, bytes] = {}
    members = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for info in tar:
                body = b""
                if info.isreg():
                    extracted = tar.extractfile(info)
                    body = extracted.read() if extracted is not None else b""
                    contents[info.name] = body
                members.append(_tar_member(info, body))
    except (tarfile.TarError, EOFError, OSError, ValueError):
        return None
    name = "tar" if data[257:262] == b"ustar" else "compressed tar"
    return Listing(name, tuple(members), contents.get)


def _tar_member(info: tarfile.TarInfo, body: bytes) -> Member:
    kinds = (("file", info.isreg()), ("dir", info.isdir()), ("symlink", info.issym()),
             ("hardlink", info.islnk()))  # fmt: skip
    kind = next((k for k, yes in kinds if yes), "other")
    digest = _digest(body) if info.isreg() else f"-> {info.linkname}" if info.linkname else "-"
    owner = f"{info.uid}:{info.gid}"
    return Member(info.name, kind, f"{info.mode:04o}", owner, info.size, _time(info.mtime), digest)


def _gzip(data: bytes) -> Listing | None:
    try:
        body = gzip.decompress(data)
    except (OSError, EOFError):
        return None
    mtime = int.from_bytes(data[4:8], "little")
    flags = data[3]
    name = "(contents)"
    if flags & 0x08:  # FNAME: a NUL-terminated name after the header (and FEXTRA, if any)
        start = 10 + (2 + int.from_bytes(data[10:12], "little") if flags & 0x04 else 0)
        name = data[start : data.index(b"\0", start)].decode("latin-1")
    member = Member(name, "file", "-", "-", len(body), _time(mtime), _digest(body))
    return Listing("gzip", (member,), lambda n: body if n == name else None)


def _zip(data: bytes) -> Listing | None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    members = []
    for info in infos:
        mode = f"{info.external_attr >> 16 & 0o7777:04o}" if info.external_attr >> 16 else "-"
        y, mo, d, h, mi, sec = info.date_time
        stamp = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{sec:02d}"
        members.append(Member(info.filename, "dir" if info.is_dir() else "file", mode, "-",
                              info.file_size, stamp, f"crc {info.CRC:08x}"))  # fmt: skip

    def member_data(name: str) -> bytes | None:
        try:
            return archive.read(name)
        except (KeyError, zipfile.BadZipFile, OSError):
            return None

    return Listing("zip", tuple(members), member_data)


def _ar(data: bytes) -> Listing | None:
    """An ar archive (a .deb): 60-byte headers `name mtime uid gid mode size` then data."""
    members, contents, offset = [], {}, 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        if header[58:60] != b"`\n":
            return None
        try:
            size = int(header[48:58])
            mtime, uid, gid = int(header[16:28]), int(header[28:34] or 0), int(header[34:40] or 0)
            mode = int(header[40:48], 8)
        except ValueError:
            return None
        name = header[:16].decode("latin-1").strip().rstrip("/")
        body = data[offset + 60 : offset + 60 + size]
        contents[name] = body
        members.append(Member(name, "file", f"{mode & 0o7777:04o}", f"{uid}:{gid}", size,
                              _time(mtime), _digest(body)))  # fmt: skip
        offset += 60 + size + size % 2
    return Listing("ar", tuple(members), contents.get)
