"""Archives that differ are reported as archives: members, order, mtimes, modes, contents."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from obuilder_core.builder import diffoscope
from obuilder_core.builder.archive_diff import archive_detail
from obuilder_core.builder.tree_diff import content_detail
from obuilder_core.builder.verify import format_report
from tests.verify.test_steps import STABLE, check


def tar_of(members: list[tuple[str, bytes, int]], *, compress: bool = False) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz" if compress else "w") as tar:
        for name, data, mtime in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def zip_of(members: list[tuple[str, bytes]]) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return raw.getvalue()


def ar_of(members: list[tuple[str, bytes, int]]) -> bytes:
    out = b"!<arch>\n"
    for name, data, mtime in members:
        header = f"{name + '/':<16}{mtime:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    return out


def detail(tmp_path: Path, a: bytes, b: bytes) -> str:
    (tmp_path / "a").write_bytes(a)
    (tmp_path / "b").write_bytes(b)
    return content_detail(tmp_path / "a", tmp_path / "b")


def test_a_tar_is_listed_by_member_not_diffed_as_text(tmp_path: Path) -> None:
    a = tar_of([("x", b"one\n", 100), ("y", b"same\n", 100)])
    b = tar_of([("y", b"same\n", 200), ("x", b"two\n", 100), ("z", b"new\n", 100)])
    text = detail(tmp_path, a, b)
    assert "\0" not in text
    lines = text.splitlines()
    assert lines[0] == "tar archive; 2 / 3 members"
    assert "  only in B: z" in lines
    assert "  member order differs: A x, y ..." in lines
    assert any(line.startswith("  x: content ") for line in lines)
    assert "  y: mtime 1970-01-01T00:01:40Z -> 1970-01-01T00:03:20Z" in lines


def test_a_compressed_tar_and_a_gzip_and_a_zip(tmp_path: Path) -> None:
    a, b = (tar_of([("x", d, 0)], compress=True) for d in (b"1", b"2"))
    assert detail(tmp_path, a, b).startswith("compressed tar archive; 1 / 1 members\n  x: content")
    ga = gzip.compress(b"hello", mtime=1)
    gb = gzip.compress(b"hello", mtime=2)
    assert detail(tmp_path, ga, gb).splitlines()[1].startswith("  (contents): mtime")
    za, zb = zip_of([("m.txt", b"a")]), zip_of([("m.txt", b"b")])
    assert detail(tmp_path, za, zb).splitlines()[1].startswith("  m.txt: content crc")


def test_a_deb_like_ar_is_read_one_level_down(tmp_path: Path) -> None:
    inner_a = tar_of([("./usr/bin/tool", b"v1", 0)], compress=True)
    inner_b = tar_of([("./usr/bin/tool", b"v2", 0)], compress=True)
    a = ar_of([("debian-binary", b"2.0\n", 0), ("data.tar.gz", inner_a, 0)])
    b = ar_of([("debian-binary", b"2.0\n", 0), ("data.tar.gz", inner_b, 0)])
    lines = detail(tmp_path, a, b).splitlines()
    assert lines[0] == "ar archive; 2 / 2 members"
    assert lines[1].startswith("  data.tar.gz: ")
    assert lines[2] == "    compressed tar archive; 1 / 1 members"
    assert lines[3].startswith("      ./usr/bin/tool: content ")


def test_non_archives_are_left_to_the_text_and_hex_views(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("plain text\n")
    (tmp_path / "b").write_text("other text\n")
    assert archive_detail(tmp_path / "a", tmp_path / "b") is None


def test_verify_reports_a_nondeterministic_tar_as_members(verify_builder, context) -> None:  # type: ignore[no-untyped-def]
    op = (
        '(run (shell "mkdir /d && echo $RANDOM$RANDOM > /d/x && echo same > /d/y'
        ' && tar -cf /out.tar -C /d x y"))'
    )
    report = format_report(check(verify_builder, context, STABLE, op, vary="none"))
    assert "/out.tar" in report and "tar archive; 2 / 2 members" in report
    assert "      x: " in report and "\0" not in report


def test_a_deep_diff_follows_archives_and_binaries_not_text(tmp_path: Path) -> None:
    asked: list[str] = []

    def deep(a: Path, b: Path) -> str:
        asked.append(a.name)
        return "DEEP"

    pairs = [
        ("tar", tar_of([("x", b"1", 0)]), tar_of([("x", b"2", 0)])),
        ("bin", b"\x7fELF\0\1", b"\x7fELF\0\2"),
        ("text", b"1\n", b"2\n"),
    ]
    for name, a, b in pairs:
        (tmp_path / f"{name}-a").write_bytes(a)
        (tmp_path / f"{name}-b").write_bytes(b)
        shown = content_detail(tmp_path / f"{name}-a", tmp_path / f"{name}-b", deep=deep)
        assert shown.endswith("\nDEEP") == (name != "text"), shown
    assert asked == ["tar-a", "bin-a"]


@pytest.mark.skipif(not diffoscope.installed(), reason="diffoscope is not installed")
def test_verify_adds_diffoscope_s_report_on_an_archive(verify_builder, context) -> None:  # type: ignore[no-untyped-def]
    # gzip -n leaves no name or time in the header: only the compressed member differs, which
    # our own listing shows as a digest and diffoscope shows decompressed.
    op = '(run (shell "echo $RANDOM$RANDOM | gzip -n > /out.gz"))'
    report = format_report(check(verify_builder, context, STABLE, op, vary="none"))
    assert "gzip" in report, report
    assert "    --- " in report and "    +++ " in report, report  # diffoscope's header
    assert "│ -" in report and "│ +" in report, report  # ... and its diff of the contents
