"""Real runc builds: each kind of hidden non-determinism is caught at its step; fixed steps pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from obuilder_core.builder import Builder
from obuilder_core.builder.verify import CLOCK_GAP, DEFAULT_VARY, format_report, parse_vary, verify
from tests.builder.helpers import spec

STABLE = '(run (shell "echo stable > /stable.txt; chmod 644 /stable.txt"))'


def check(builder: Builder, context: Path, *ops: str, vary: str | None = None, **kw: object):
    """Verify a busybox spec made of `ops`, with `--vary` text `vary` (None: the default);
    without the clock gap unless a step reads the time (`date`)."""
    chosen = DEFAULT_VARY if vary is None else parse_vary(vary)
    kw.setdefault("clock_gap", CLOCK_GAP if any("date" in op for op in ops) else 0.0)
    return verify(builder, spec(*ops), context, spec_name="t.spec", vary=chosen, **kw)


@pytest.mark.parametrize(
    ("command", "vary", "path", "kind"),
    [
        ("date +%s > /stamp", "none", "stamp", "content"),  # the rebuild runs 2 s later
        ("echo $RANDOM$RANDOM > /random", "none", "random", "content"),
        ("hostname > /host", "hostname", "host", "content"),
        ("nproc > /cpus", "cpus", "cpus", "content"),
        ("echo x > /made", "umask", "made", "mode"),
        ("date +%H > /hour", "tz", "hour", "content"),
        ("echo $LC_ALL $LANG > /lang", "locale", "lang", "content"),
        ("env | sort > /env", "env", "env", "content"),
        ("uname -r > /kernel", "kernel", "kernel", "content"),  # 2.6.x in the rebuild
        ("cat /proc/self/personality > /persona", "aslr", "persona", "content"),
    ],
)
def test_divergent_step_is_reported(
    verify_builder: Builder, context: Path, command: str, vary: str, path: str, kind: str
) -> None:
    op = f'(run (shell "{command}"))'
    result = check(verify_builder, context, STABLE, op, STABLE, vary=vary)
    report = format_report(result)
    assert result.exit_code == 1, report
    d = result.divergence
    assert d is not None
    assert d.heading == f'/: (run (shell "{command}"))', report
    assert [(x.kind, x.path) for x in d.diff.differences] == [(kind, path)], report
    assert result.checked == 2  # the stable step before it, then this one; none after
    assert f"NOT deterministic at step {d.heading}" in report
    assert f"/{path}" in report
    assert verify_builder.store.result(d.rebuilt_id) is None  # scratch deleted


@pytest.mark.parametrize(
    ("command", "blame"),
    [
        ("hostname > /host", "differs under: hostname"),
        ("date +%H > /hour", "differs under: tz"),
        ("env | sort > /env", "differs under: tz, env"),  # TZ is in the environment too
        ("nproc > /cpus", "differs under: cpus"),
        (
            "echo $RANDOM$RANDOM > /random",
            "differs with no variation (the step itself is nondeterministic)",
        ),
    ],
)
def test_the_report_names_the_variation_responsible(
    verify_builder: Builder, context: Path, command: str, blame: str
) -> None:
    """As reprotest --auto-build: the step is rebuilt with no variation, then each alone."""
    op = f'(run (shell "{command}"))'
    result = check(verify_builder, context, op, vary="hostname,tz,env,cpus")
    assert result.divergence is not None and result.divergence.blame == blame
    assert f"NOT deterministic at step /: {op}\n  {blame}\n" in format_report(result)


def test_no_explain_skips_the_extra_rebuilds(verify_builder: Builder, context: Path) -> None:
    result = check(verify_builder, context, '(run (shell "hostname > /h"))', vary="hostname",
                   explain=False)  # fmt: skip
    assert result.divergence is not None and result.divergence.blame is None


@pytest.mark.parametrize(
    "command",
    [
        "echo 1700000000 > /stamp",
        "SOURCE_DATE_EPOCH=1700000000; date -u -d @$SOURCE_DATE_EPOCH +%F > /date",
        "echo builder > /host",
        "echo 4 > /cpus",
        "echo x > /made; chmod 600 /made",
        "date -u -d @1700000000 +%H > /hour",
        "printf 'b\\na\\n' | LC_ALL=C sort > /sorted",
    ],
)
def test_deterministic_step_passes(verify_builder: Builder, context: Path, command: str) -> None:
    # The fixed version also sets its umask: under --vary umask, files get mode 0664.
    op = f'(run (shell "umask 022; {command}"))'
    result = check(verify_builder, context, STABLE, op, vary="all")
    assert result.exit_code == 0, format_report(result)
    assert result.checked == 2
    assert result.divergence is None


def test_mtimes_only_when_asked(verify_builder: Builder, context: Path) -> None:
    op = '(run (shell "mkdir -p /m; echo same > /m/file; chmod 644 /m/file"))'
    assert check(verify_builder, context, op).exit_code == 0
    result = check(verify_builder, context, op, check_mtimes=True)
    assert result.divergence is not None, format_report(result)
    assert {(d.kind, d.path) for d in result.divergence.diff.differences} == {
        ("mtime", "."),  # / itself: /m was created in it
        ("mtime", "m"),
        ("mtime", "m/file"),
    }


def test_a_source_date_epoch_clamp_lets_a_correct_build_pass(
    verify_builder: Builder, context: Path
) -> None:
    # Written files and the directories they are created in get the time of the build: with
    # the clamp in the past both runs' times compare as it; in the future they still differ.
    op = '(run (shell "mkdir -p /e; echo same > /e/file; chmod 644 /e/file"))'
    past = check(verify_builder, context, op, check_mtimes=True, source_date_epoch=1_600_000_000)
    assert past.exit_code == 0, format_report(past)
    assert "mtimes: later than SOURCE_DATE_EPOCH=1600000000 (2020-09-13T12:26:40" in (
        format_report(past)
    )
    future = check(verify_builder, context, op, check_mtimes=True, source_date_epoch=4 * 10**9)
    assert future.divergence is not None, format_report(future)
    assert ("mtime", "e/file") in {(d.kind, d.path) for d in future.divergence.diff.differences}


def test_copy_step_and_cached_result_untouched(verify_builder: Builder, context: Path) -> None:
    copy = "(copy (src hello.txt) (dst /hello.txt))"
    rand = '(run (shell "echo $RANDOM$RANDOM > /r"))'
    result = check(verify_builder, context, copy, rand, vary="none", keep=True)
    d = result.divergence
    assert d is not None and d.kept is not None, format_report(result)
    assert result.checked == 2  # the copy was rebuilt and found the same
    store = verify_builder.store
    cached = store.result(d.id)
    assert cached is not None and d.diff.a == cached / "rootfs"
    assert d.diff.b == d.kept / "rootfs"
    first = (cached / "rootfs" / "r").read_text()
    assert (d.kept / "rootfs" / "r").read_text() != first
    again = check(verify_builder, context, copy, rand, vary="none")
    assert again.divergence is not None and again.divergence.id == d.id  # same cached step
    assert (cached / "rootfs" / "r").read_text() == first  # never replaced by a rebuild
    store.delete(d.rebuilt_id)


def test_failing_step_is_an_error(verify_builder: Builder, context: Path) -> None:
    result = check(verify_builder, context, '(run (shell "exit 4"))')
    assert result.exit_code == 2
    assert "failed with exit status 4" in format_report(result)


def test_link_structure_and_device_numbers_are_compared(
    verify_builder: Builder, context: Path
) -> None:
    # The same bytes either way: only the tree's structure tells the builds apart.
    link = (
        '(run (shell "echo x > /a; if [ $(hostname) = builder ];'
        ' then ln /a /b; else cp -p /a /b; fi"))'
    )
    result = check(verify_builder, context, link, vary="hostname")
    assert result.divergence is not None, format_report(result)
    found = [(x.kind, x.path) for x in result.divergence.diff.differences]
    assert found == [("hard links", "a"), ("hard links", "b")]
    device = '(run (shell "[ $(hostname) = builder ] && n=1 || n=2; mknod /dev-x c 1 $n"))'
    result = check(verify_builder, context, device, vary="hostname")
    assert result.divergence is not None, format_report(result)
    assert [(x.kind, x.path, x.a, x.b) for x in result.divergence.diff.differences] == [
        ("device", "dev-x", "1:1", "1:2")
    ]


def test_a_step_of_a_child_build_is_named_with_its_stage(
    verify_builder: Builder, context: Path
) -> None:
    stage = (
        '(build dev ((from busybox) (shell /bin/sh -c) (run (shell "echo $RANDOM$RANDOM > /r"))))'
    )
    copy = "(copy (from (build dev)) (src /r) (dst /r))"
    result = verify(verify_builder, spec(copy, builds=stage), context, vary=DEFAULT_VARY)
    report = format_report(result)
    assert result.divergence is not None, report
    assert result.divergence.heading == 'dev: /: (run (shell "echo $RANDOM$RANDOM > /r"))'
    assert 'NOT deterministic at step dev: /: (run (shell "echo $RANDOM$RANDOM > /r"))' in report


@pytest.mark.parametrize(
    ("command", "vary", "path"),
    [
        ("cat /proc/sys/kernel/domainname > /domain", "domain", "domain"),
        ('echo \\"$HOME\\" > /home-path', "home", "home-path"),
    ],
)
def test_domain_and_home_variations(
    verify_builder: Builder, context: Path, command: str, vary: str, path: str
) -> None:
    result = check(verify_builder, context, f'(run (shell "{command}"))', vary=vary)
    assert result.divergence is not None, format_report(result)
    assert [(d.kind, d.path) for d in result.divergence.diff.differences] == [("content", path)]
