"""Building specs through the plugin: outcomes, failure reports, -v, the summary, junit, hooks.

Each test runs pytest in a temp dir (pytester) against a fresh rsync store holding busybox,
with xdist workers, with xdist off and without xdist (`xdist_args`); they need root and runc
(and skip with the reason otherwise).
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.plugin.helpers import HELLO, verbose_line, with_workers

FAILING = """\
((from busybox)
 (shell /bin/sh -c)
 (run (shell "mkdir -p /src"))
 (workdir /src)
 (run (shell "for i in 1 2 3 4 5; do echo line$i; done; exit 3"))
)
"""

FAILED_MESSAGE = (
    '"/bin/sh" "-c" "for i in 1 2 3 4 5; do echo line$i; done; exit 3" failed with exit status 3'
)

WITH_CONTEXT_AND_SECRET = """\
((from busybox)
 (shell /bin/sh -c)
 (copy (src data.txt) (dst /data.txt))
 (run (secrets (token (target /run/secrets/token)))
      (shell "cat /data.txt && echo token has $(wc -c < /run/secrets/token) bytes"))
)
"""

COPYING = """\
((from busybox)
 (shell /bin/sh -c)
 (copy (src data.txt) (dst /data.txt))
 (run (shell "cat /data.txt"))
)
"""


def _run(pytester: pytest.Pytester, store: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(f"--obuilder-store={store}", "-p", "no:cacheprovider", *args)


def test_specs_pass_and_report_their_steps(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...], busybox_store: str
) -> None:
    pytester.makefile(".spec", hello=HELLO, context=WITH_CONTEXT_AND_SECRET)
    pytester.makefile(".txt", data="data from the context")
    (pytester.path / "token").write_text("s3cret")
    result = _run(pytester, busybox_store, *xdist_args, "-v", "--obuilder-secret", "token:token")
    result.assert_outcomes(passed=2)
    for nodeid, step in [
        ("context.spec::context", "/: (copy (src data.txt) (dst /data.txt))"),
        ("hello.spec::hello", '/: (run (shell "echo hello from the plugin test"))'),
    ]:  # each spec's line, then its steps; with workers, the specs in no particular order
        result.stdout.fnmatch_lines(
            [verbose_line(nodeid, "PASSED", xdist_args), f"    built *s  {step}"]
        )
    result.stdout.fnmatch_lines(
        [
            "*= obuilder builds =*",
            "spec*result*steps*cached*built*seconds*result id",
            "context.spec*passed*",
            "hello.spec*passed*",
            "2 specs: * from the cache, * built, 0 failed (store: * hits, * misses)",
        ]
    )
    # The second run takes every step from the cache.
    again = _run(
        pytester, busybox_store, *xdist_args, "-v", "--obuilder-secret", "token:token", "-rP"
    )
    again.assert_outcomes(passed=2)
    again.stdout.no_fnmatch_line("    built *")
    again.stdout.fnmatch_lines(["*data from the context*token has 6 bytes"])
    rows = [line for line in again.outlines if re.match(r"(hello|context)\.spec +passed", line)]
    assert len(rows) == 2
    for row in rows:
        _spec, _result, steps, cached, built, *_ = row.split()
        assert (cached, built) == (steps, "0"), row


def test_a_failing_spec_shows_step_status_and_log_tail(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...], busybox_store: str
) -> None:
    pytester.makefile(".spec", broken=FAILING, hello=HELLO)
    xml = pytester.path / "junit.xml"
    result = _run(
        pytester,
        busybox_store,
        *xdist_args,
        "--obuilder-log-lines=2",
        "--show-capture=no",
        f"--junitxml={xml}",
        "-o",
        "junit_logging=system-out",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ broken _*",
            '*build failed at step: /src: (run (shell "for i in 1 2 3 4 5; do echo line$i; *',
            "*failed with exit status 3",
            "---- last 2 log lines of the step (whole log: */state/failed-logs/*.log) ----",
            "line4",
            "line5",
            "",
            f"broken.spec:5: {FAILED_MESSAGE}",  # where, as a traceback ends
            "*= short test summary info =*",
            f"FAILED broken.spec::broken - {FAILED_MESSAGE[:30]}*",  # cut to the terminal width
        ]
    )
    result.stdout.no_fnmatch_line("line3")
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.fnmatch_lines(["broken.spec*failed*-*"])  # summary row: no result id
    totals = re.search(
        r"2 specs: (\d+) steps? from the cache, (\d+) built, 1 failed "
        r"\(store: (\d+) hits, (\d+) misses\)",
        result.stdout.str(),
    )
    assert totals is not None  # the counts agree: a failed step is a miss, not built
    cached, built, hits, misses = map(int, totals.groups())
    assert (cached, built + 1) == (hits, misses)

    cases = {c.get("name"): c for c in ET.parse(xml).getroot().iter("testcase")}
    failure = cases["broken"].find("failure")
    assert failure is not None and "/src: (run" in (failure.text or "")
    assert failure.get("message") == FAILED_MESSAGE
    assert "line5" in (failure.text or "")
    out = cases["broken"].find("system-out")
    assert out is not None
    *_, head, line4, line5 = (out.text or "").splitlines()  # clipped: builds may print GBs
    assert (line4, line5) == ("line4", "line5") and "line3" not in (out.text or "")
    whole = Path(re.fullmatch(r"\(last 2 lines; whole log: (.*)\)", head)[1])  # type: ignore[index]
    assert "line1\nline2\nline3\nline4\nline5\n" in whole.read_text()
    props = {p.get("name"): p.get("value") for p in cases["hello"].iter("property")}
    assert re.fullmatch(r"[0-9a-f]{16,}", props["obuilder_result_id"] or "")
    assert "echo hello from the plugin test" in (props["obuilder_steps"] or "")

    # --lf re-runs only the failed spec.
    pytester.runpytest(*xdist_args, f"--obuilder-store={busybox_store}")  # with the cache provider
    last_failed = pytester.runpytest(*xdist_args, f"--obuilder-store={busybox_store}", "--lf")
    last_failed.assert_outcomes(failed=1)
    if not with_workers(xdist_args):  # pytest says so where it collects, not in workers
        last_failed.stdout.fnmatch_lines(["*rerun previous 1 failure*"])


@pytest.mark.parametrize("tbstyle", ["line", "short"])
def test_a_failure_points_at_the_step_line_in_every_traceback_style(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...], busybox_store: str, tbstyle: str
) -> None:
    pytester.makefile(".spec", broken=FAILING)
    result = _run(pytester, busybox_store, *xdist_args, f"--tb={tbstyle}", "--show-capture=no")
    result.assert_outcomes(failed=1)
    if tbstyle == "line":  # the whole report is one line: where and why
        result.stdout.fnmatch_lines(
            ["*= FAILURES =*", f"broken.spec:5: {FAILED_MESSAGE}", "*= obuilder builds =*"]
        )
    else:  # where and why first, then the step and its log
        result.stdout.fnmatch_lines(
            [
                "*_ broken _*",
                f"broken.spec:5: {FAILED_MESSAGE}",
                "build failed at step: /src: (run *",
            ]
        )


def test_xfail_from_the_spec_and_the_build_finished_hook(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...], busybox_store: str
) -> None:
    pytester.makefile(
        ".spec", expected="; pytest: mark.xfail(reason='fails on purpose')\n" + FAILING
    )
    pytester.makefile(".spec", hello=HELLO)
    pytester.makeconftest(
        """
import pytest

@pytest.hookimpl(optionalhook=True)  # so that `-p no:obuilder` still runs
def pytest_obuilder_build_finished(item, result):
    steps = len(result.steps)
    failed = result.failure.heading if result.failure else "-"
    with open("finished.txt", "a") as f:
        f.write(f"{item.name} {result.ok} {result.id} {steps} {failed}\\n")
"""
    )
    result = _run(pytester, busybox_store, *xdist_args, "-rx", "-v")
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            verbose_line("expected.spec::expected", "XFAIL", xdist_args),
            '    built *s  /: (run (shell "mkdir -p /src"))',
            '    failed  * /src: (run (shell "for i in 1 2 3 4 5; do*',
            "XFAIL expected.spec::expected - fails on purpose",
        ]
    )
    lines = sorted((pytester.path / "finished.txt").read_text().splitlines())
    assert lines[0].startswith("expected False None ")
    assert "/src: (run" in lines[0]
    assert re.fullmatch(r"hello True [0-9a-f]+ \d+ -", lines[1])
    pytester.makepyfile("def test_plain(): pass")
    without = pytester.runpytest(*xdist_args, "-p", "no:obuilder")  # the conftest still loads
    without.assert_outcomes(passed=1)


def test_context_option_and_no_cache(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...], busybox_store: str
) -> None:
    pytester.makefile(".spec", context=COPYING)
    (pytester.mkdir("elsewhere") / "data.txt").write_text("data from elsewhere\n")
    args = ("-v", "-rP", "--obuilder-context=elsewhere")
    result = _run(pytester, busybox_store, *xdist_args, *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["data from elsewhere"])
    again = _run(pytester, busybox_store, *xdist_args, *args, "--obuilder-no-cache")
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["    built *s  /: (copy (src data.txt) (dst /data.txt))"])


SLOW = (
    "((from busybox)\n (shell /bin/sh -c)\n"
    ' (run (shell "while [ ! -e /tmp/go ]; do sleep 0.05; done; echo woke up")))\n'
)


def _until_notice(
    pytester: pytest.Pytester, busybox_store: str, notice: str, *args: str
) -> tuple[str, str]:
    """Run pytest on SLOW in a process of its own until it prints a line matching `notice`,
    then let the step go on; the line, and the rest of the output. The step waits for the
    test, so nothing depends on how long anything takes."""
    argv = [sys.executable, "-m", "pytest", f"--obuilder-store={busybox_store}", *args]
    proc = subprocess.Popen(
        argv, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    seen = []
    try:
        while not re.match(notice, line := proc.stdout.readline()):
            assert line, f"pytest ended without a line matching {notice!r}: {seen}"
            seen.append(line)
        store_root = Path(busybox_store.partition(":")[2])
        for tmp in store_root.glob("result-tmp/*/rootfs/tmp"):
            (tmp / "go").touch()
        # Through the same buffered reader: communicate() would read the pipe past what
        # readline has already buffered, and lose it.
        rest = proc.stdout.read()
        proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, rest
    return line, rest


def test_progress_lines_and_live_output(pytester: pytest.Pytester, busybox_store: str) -> None:
    pytester.makefile(".spec", slow=SLOW)
    line, rest = _until_notice(
        pytester, busybox_store, r"\[slow\] running", "-p", "no:cacheprovider"
    )
    heading = "/: " + SLOW.splitlines()[-1].strip()[:-1]
    assert re.fullmatch(rf"\[slow\] running {re.escape(heading)} \(\d+s\)", line.strip())
    assert "woke up" not in rest  # without -s, output is not streamed
    assert rest.splitlines()[0].startswith("slow.spec ."), rest  # the result on its line
    live = _run(pytester, busybox_store, "-s")  # cached now: the log is replayed, live
    live.stdout.fnmatch_lines(["slow.spec ", "(from busybox)", "*", "woke up", "*", "."])


def test_progress_lines_of_xdist_workers_reach_the_terminal(
    pytester: pytest.Pytester, busybox_store: str
) -> None:
    pytest.importorskip("xdist", reason="needs pytest-xdist")
    pytester.makefile(".spec", slow=SLOW.replace("echo woke up", "echo woke up again"))
    worker_notice = r"\[gw\d\] \[slow\] running /: \(run "
    line, _ = _until_notice(pytester, busybox_store, worker_notice, "-n", "2")
    assert re.search(r"\(\d+s\)$", line.rstrip()), line  # how long it has run


BIG_DD = '(run (shell "echo {name}; dd if=/dev/zero of=/dev/null bs=200M count=1"))'
"""Needs 200 MiB. Each spec's step has its own id: limits are not part of a step's key."""


def test_step_limits_from_options_ini_and_the_spec(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...], busybox_store: str
) -> None:
    sh = "(from busybox)\n (shell /bin/sh -c)"
    pytester.makefile(
        ".spec",
        small=f'; pytest: mark.obuilder_limits(memory="64M")\n({sh}\n {BIG_DD.format(name=1)})\n',
        roomy=f"({sh}\n {BIG_DD.format(name=2)})\n",
        slow=f'({sh}\n (run (shell "sleep 100000")))\n',
        forks=f'({sh}\n (run (shell "for i in $(seq 50); do sleep 100 & done; wait")))\n',
    )
    pytester.makeini("[pytest]\nobuilder_pids_limit = 20\n")
    result = _run(pytester, busybox_store, *xdist_args, "--obuilder-step-timeout=2")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines_random(
        [
            "small.spec  failed *",
            '*"echo 1; dd * killed: out of memory (limit 64 MiB)',
            "roomy.spec  passed *",
            "slow.spec   failed *",
            '*"sleep 100000" killed: step timeout 2s',
            "forks.spec  failed *",
            "*hit its limit of 20 processes",
        ]
    )


def test_a_bad_limits_mark_is_a_collection_error(
    pytester: pytest.Pytester, xdist_args: tuple[str, ...], busybox_store: str
) -> None:
    pytester.makefile(
        ".spec",
        bad="((from busybox)\n (comment \"pytest: mark.obuilder_limits(memory='lots')\"))\n",
    )
    result = _run(pytester, busybox_store, *xdist_args)
    # xdist reports a collection error in a worker as a failed run, as for a Python module
    exit = pytest.ExitCode.TESTS_FAILED if with_workers(xdist_args) else pytest.ExitCode.INTERRUPTED
    assert result.ret == exit
    result.stdout.fnmatch_lines(["bad.spec:2:2: mark.obuilder_limits: invalid size 'lots'*"])
