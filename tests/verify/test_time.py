"""The `time` variation (real runc, btrfs): the rebuild's dynamically linked programs see a
clock years ahead through the host's libfaketime; nothing of it is left in the result; without
libfaketime, naming `time` is a one-line error and `--vary all` skips it with a note."""

from __future__ import annotations

from pathlib import Path

import pytest

from obuilder_core.builder import Builder, varying
from obuilder_core.builder.verify import (
    VARIATIONS,
    VerifyError,
    format_report,
    parse_vary,
    verify,
)
from tests.builder.helpers import spec
from tests.verify.glibc_image import IMAGE_NAME

needs_libfaketime = pytest.mark.skipif(
    varying.libfaketime() is None, reason="needs libfaketime (apt-get install libfaketime)"
)


def check(builder: Builder, context: Path, command: str, **kw: object):
    """Verify a glibc-image spec running `command`, varying the time alone (and no clock gap:
    the shift is the point)."""
    ops = (f'(run (shell "{command}"))',)
    return verify(builder, spec(*ops, image=IMAGE_NAME), context, vary=("time",), clock_gap=0.0,
                  **kw)  # fmt: skip


@needs_libfaketime
def test_a_dynamically_linked_date_is_shifted_years(glibc_builder: Builder, context: Path) -> None:
    result = check(glibc_builder, context, "date -u +%Y > /year", keep=True)
    report = format_report(result)
    d = result.divergence
    assert d is not None and d.kept is not None, report
    try:
        assert [(x.kind, x.path) for x in d.diff.differences] == [("content", "year")], report
        assert d.blame == "differs under: time", report
        shifted = int((d.diff.b / "year").read_text()) - int((d.diff.a / "year").read_text())
        assert shifted in (3, 4), report  # 3 years 40 days later
    finally:
        glibc_builder.store.delete(d.rebuilt_id)


@needs_libfaketime
def test_a_step_not_reading_the_clock_passes_and_leaves_no_trace(
    glibc_builder: Builder, context: Path
) -> None:
    # The library is bound in the container's /dev tmpfs: no mount point is left in the result.
    result = check(glibc_builder, context, "date -u -d @1700000000 +%Y > /year")
    assert result.exit_code == 0, format_report(result)
    assert result.checked == 1


def test_without_libfaketime_time_is_an_error_when_named_and_skipped_in_all(
    verify_builder: Builder, context: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(varying, "FAKETIME_GLOBS", ())
    with pytest.raises(VerifyError, match=r"^variation time needs libfaketime: libfaketime is not"):
        parse_vary("tz,time")
    result = verify(
        verify_builder, spec('(run (shell "echo same > /same"))'), context, vary=tuple(VARIATIONS)
    )
    assert "time" not in result.vary
    assert "note: time not varied: libfaketime is not installed" in format_report(result)
