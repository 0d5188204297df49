"""The registry cache through pytest: one suite, machine A pushes, machine B (`-n 2`, an empty
store of its own) builds nothing."""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.fixtures.registry import RunningRegistry, free_port
from tests.fixtures.root import require_root, require_tool

pytest.importorskip("xdist", reason="needs pytest-xdist")

SPEC = """\
((from busybox)
 (shell /bin/sh -c)
 (run (shell "echo shared-$(cat /proc/sys/kernel/random/uuid)"))
 (run (shell "echo {name}-$(cat /proc/sys/kernel/random/uuid)")))
"""
NAMES = ("one", "two", "three")


def printed(xml_path: Path) -> dict[str, list[str]]:
    """The `NAME-UUID` lines each spec's steps printed (its captured output in junit)."""
    cases = ET.parse(xml_path).getroot().iter("testcase")
    found = (
        (
            c.get("name", ""),
            re.findall(r"\w+-[0-9a-f]{8}-[0-9a-f-]{27}", c.findtext("system-out") or ""),
        )
        for c in cases
    )
    return {name: ids for name, ids in found if len(ids) == 2}


def test_a_suite_pulled_by_two_workers_builds_no_step(
    pytester: pytest.Pytester, registry: RunningRegistry, busybox_store: str, tmp_path: Path
) -> None:
    require_root()
    require_tool("runc")
    pytester.makefile(".spec", **{name: SPEC.format(name=name) for name in NAMES})
    cache = f"{registry.host}/pytest/suite"
    junit = ("-o", "junit_logging=system-out")
    a = pytester.runpytest_subprocess(
        f"--obuilder-store={busybox_store}", f"--obuilder-cache-to={cache}", *junit,
        f"--junitxml={tmp_path / 'a.xml'}",
    )  # fmt: skip
    a.assert_outcomes(passed=len(NAMES))

    b = pytester.runpytest_subprocess(
        f"--obuilder-store=rsync:{tmp_path / 'b-store'}", f"--obuilder-cache-from={cache}",
        "-n", "2", *junit, f"--junitxml={tmp_path / 'b.xml'}",
    )  # fmt: skip
    b.assert_outcomes(passed=len(NAMES))
    n = len(NAMES)
    totals = re.search(
        r"(\d+) steps from the cache \((\d+) from a registry cache\), 0 built", b.stdout.str()
    )
    assert totals is not None, b.stdout.str()
    assert int(totals[1]) == 3 * n and int(totals[2]) >= n + 2  # each spec's own; shared, base
    # The random ids printed by A's executions are replayed, unchanged, on B.
    assert printed(tmp_path / "b.xml") == printed(tmp_path / "a.xml")


def test_an_unreachable_cache_is_a_pytest_warning_not_a_failure(
    pytester: pytest.Pytester, busybox_store: str
) -> None:
    require_root()
    require_tool("runc")
    pytester.makefile(".spec", one=SPEC.format(name="one"))
    down = f"127.0.0.1:{free_port()}/nowhere"
    result = pytester.runpytest_subprocess(
        f"--obuilder-store={busybox_store}", f"--obuilder-cache-from={down}"
    )
    result.assert_outcomes(passed=1, warnings=1)  # once: the cache is not asked again
    result.stdout.fnmatch_lines(
        [f"*ObuilderWarning: registry cache {down}: cannot connect: *; not used again*"]
    )


def test_a_malformed_cache_reference_is_a_usage_error(
    pytester: pytest.Pytester, busybox_store: str
) -> None:
    pytester.makefile(".spec", one=SPEC.format(name="one"))
    result = pytester.runpytest_subprocess(
        f"--obuilder-store={busybox_store}", "--obuilder-cache-to=https://example.com/x"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    message = "ERROR: obuilder: registry cache 'https://example.com/x': expected HOST[:PORT]/REPO"
    result.stderr.re_match_lines([re.escape(message)])


def test_export_to_pushes_each_passing_spec_as_an_image(
    pytester: pytest.Pytester, registry: RunningRegistry, busybox_store: str
) -> None:
    require_root()
    require_tool("runc", "skopeo")
    pytester.makefile(".spec", one=SPEC.format(name="one"), two=SPEC.format(name="two"))
    pytester.makefile(".spec", broken='((from busybox) (shell /bin/sh -c) (run (shell "exit 3")))')
    repo = f"{registry.host}/pytest/results"
    result = pytester.runpytest_subprocess(
        f"--obuilder-store={busybox_store}", f"--obuilder-export-to={repo}"
    )
    result.assert_outcomes(passed=2, failed=1)
    for tag in ("one", "two"):
        inspected = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{repo}:{tag}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert len(json.loads(inspected.stdout)["Layers"]) == 3  # base and two runs
    missing = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{repo}:broken"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode != 0  # a failing spec is not exported


def test_a_malformed_export_repository_is_a_usage_error(
    pytester: pytest.Pytester, busybox_store: str
) -> None:
    pytester.makefile(".spec", one=SPEC.format(name="one"))
    result = pytester.runpytest_subprocess(
        f"--obuilder-store={busybox_store}", "--obuilder-export-to=127.0.0.1:5000/x:tag"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines([r"ERROR: obuilder: export repository '127.0.0.1:5000/x:tag'"])
