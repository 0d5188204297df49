"""Real runc builds on a tiny glibc image: output sorted under the current locale is caught by
the `locale` variation at its step, and the fixed version (`LC_ALL=C sort`) passes."""

from __future__ import annotations

from pathlib import Path

from obuilder_core.builder import Builder
from obuilder_core.builder.verify import format_report, verify
from tests.builder.helpers import spec
from tests.verify.glibc_image import IMAGE_NAME

STABLE = '(run (shell "echo stable > /stable.txt"))'
# The spec text has `\\n` (an escaped backslash), so the shell runs printf 'b\nA\na\nB\n'.
LINES = "printf 'b\\\\nA\\\\na\\\\nB\\\\n'"


def check(builder: Builder, context: Path, command: str, **kw: object):
    """Verify a glibc-image spec: a stable step, then `command`, varying only the locale."""
    ops = (STABLE, f'(run (shell "{command}"))')
    return verify(
        builder,
        spec(*ops, image=IMAGE_NAME),
        context,
        spec_name="t.spec",
        vary=("locale",),
        clock_gap=0.0,  # no step reads the time
        **kw,
    )


def test_locale_sorted_output_is_reported(glibc_builder: Builder, context: Path) -> None:
    command = f"{LINES} | sort > /sorted"
    result = check(glibc_builder, context, command, keep=True)
    report = format_report(result)
    assert result.exit_code == 1, report
    d = result.divergence
    assert d is not None and d.kept is not None
    try:
        assert d.heading == f'/: (run (shell "{command}"))', report
        assert [(x.kind, x.path) for x in d.diff.differences] == [("content", "sorted")], report
        assert result.checked == 2  # the stable step, then this one
        # The image's sort really follows the locale: POSIX (no LANG) vs fr_CH.UTF-8.
        assert (d.diff.a / "sorted").read_text() == "A\nB\na\nb\n"
        assert (d.diff.b / "sorted").read_text() == "a\nA\nb\nB\n"
        assert f"NOT deterministic at step {d.heading}" in report
        assert "/sorted" in report
    finally:
        glibc_builder.store.delete(d.rebuilt_id)


def test_c_locale_sort_passes(glibc_builder: Builder, context: Path) -> None:
    result = check(glibc_builder, context, f"{LINES} | LC_ALL=C sort > /sorted")
    assert result.exit_code == 0, format_report(result)
    assert result.checked == 2
    assert result.divergence is None
