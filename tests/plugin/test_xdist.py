"""pytest-xdist: workers share one store, and a step needed by several specs runs once.

The shared step prints a fresh random id and takes a couple of seconds, so both workers ask for
it at the same time; if it ran twice, the specs' logs would show two different ids.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("xdist", reason="needs pytest-xdist")

SHARED = """\
((from busybox)
 (shell /bin/sh -c)
 (run (shell "echo execution-$(cat /proc/sys/kernel/random/uuid) && sleep 2"))
 (run (shell "echo {name}"))
)
"""
NAMES = ("first", "second", "third", "fourth")


def _logs(xml_path: str) -> dict[str, str]:
    cases = ET.parse(xml_path).getroot().iter("testcase")
    return {c.get("name", ""): (c.findtext("system-out") or "") for c in cases}


def test_workers_share_the_store_and_run_each_step_once(
    pytester: pytest.Pytester, busybox_store: str
) -> None:
    pytester.makefile(".spec", **{name: SHARED.format(name=name) for name in NAMES})
    xml = pytester.path / "junit.xml"
    common = (f"--obuilder-store={busybox_store}", "-o", "junit_logging=system-out")
    result = pytester.runpytest_subprocess(*common, "-n", "2", f"--junitxml={xml}")
    result.assert_outcomes(passed=len(NAMES))

    logs = _logs(str(xml))
    executions = {m for log in logs.values() for m in re.findall(r"execution-[0-9a-f-]+", log)}
    assert len(logs) == len(NAMES)
    assert len(executions) == 1, f"the shared step ran {len(executions)} times: {executions}"

    # The summary covers both workers' builds: a row per spec, and counters summed over the
    # workers (each spec asks for 3 steps: the base image, the shared step, its own step).
    rows = [line for line in result.outlines if re.match(r"\w+\.spec +passed", line)]
    assert len(rows) == len(NAMES)
    counters = re.search(r"store: (\d+) hits, (\d+) misses", result.stdout.str())
    assert counters is not None
    assert int(counters[1]) + int(counters[2]) == 3 * len(NAMES)

    # A second run, without workers, takes everything from the cache.
    again = pytester.runpytest_subprocess(*common)
    again.assert_outcomes(passed=len(NAMES))
    n = len(NAMES)
    again.stdout.fnmatch_lines(  # nothing built: no table, the totals only
        [
            f"{n} specs: {3 * n} steps from the cache, 0 built, 0 failed"
            f" (store: {3 * n} hits, 0 misses)",
            f"{n} specs passed from the cache alone (-v lists them)",
        ]
    )
    again.stdout.no_fnmatch_line("spec * result *")
