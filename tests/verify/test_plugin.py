"""`pytest --obuilder-rebuild` and its ini twin: a non-deterministic spec fails, with the report."""

from __future__ import annotations

import pytest

RANDOM = """\
((from busybox)
 (shell /bin/sh -c)
 (run (shell "echo fixed > /fixed"))
 (run (shell "echo $RANDOM$RANDOM > /random")))
"""
FIXED = """\
((from busybox)
 (shell /bin/sh -c)
 (run (shell "echo fixed > /fixed")))
"""


def test_rebuild_fails_the_non_deterministic_spec(
    pytester: pytest.Pytester, busybox_store: str
) -> None:
    pytester.makefile(".spec", random=RANDOM, fixed=FIXED)
    store = f"--obuilder-store={busybox_store}"
    plain = pytester.runpytest(store, "-p", "no:cacheprovider")
    plain.assert_outcomes(passed=2)  # without the option nothing is rebuilt
    result = pytester.runpytest(store, "-p", "no:cacheprovider", "--obuilder-rebuild")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ random _*",
            "spec: */random.spec",
            'NOT deterministic at step /: (run (shell "echo $RANDOM$RANDOM > /random"))',
            "content (1):",
            "  /random: *",
            "",
            "random.spec:4: not deterministic at step /: (run *): /random differs (content)",
            "*FAILED random.spec::random - not deterministic at step /: (run *",
        ]
    )
    junit = pytester.path / "junit.xml"
    line = pytester.runpytest(
        store, "-p", "no:cacheprovider", "--obuilder-rebuild", "--tb=line", f"--junitxml={junit}"
    )
    line.stdout.fnmatch_lines(["random.spec:4: not deterministic at step /: (run *): /random *"])
    assert 'message="not deterministic at step /: (run (shell' in junit.read_text()


def test_rebuild_ini_twin(pytester: pytest.Pytester, busybox_store: str) -> None:
    pytester.makefile(".spec", random=RANDOM)
    pytester.makeini("[pytest]\nobuilder_rebuild = true\n")
    result = pytester.runpytest(f"--obuilder-store={busybox_store}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["NOT deterministic at step *"])


def test_a_step_failing_only_when_rebuilt_fails_the_spec_with_its_log(
    pytester: pytest.Pytester, busybox_store: str
) -> None:
    step = '(run (shell "echo TZ=$TZ; test \\"$TZ\\" != VRF-14"))'  # fails under the tz variation
    pytester.makefile(".spec", tz=f"((from busybox) (shell /bin/sh -c)\n {step})\n")
    result = pytester.runpytest(f"--obuilder-store={busybox_store}", "--obuilder-rebuild")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "NOT deterministic at step /: (run *: failed when rebuilt: *exit status 1",
            "---- last 1 log lines of the rebuild ----",
            "TZ=VRF-14",
            "",
            "tz.spec:2: not deterministic at step /: (run *: failed when rebuilt: *",
            "FAILED tz.spec::tz - not deterministic at step /: (run *",
        ]
    )


def test_vary_and_check_mtimes_options_and_their_ini_twins(
    pytester: pytest.Pytester, busybox_store: str
) -> None:
    step = '(run (shell "test \\"$TZ\\" != VRF-14 && echo x > /made"))'  # fails under tz only
    pytester.makefile(".spec", tz=f"((from busybox) (shell /bin/sh -c)\n {step})\n")
    store = f"--obuilder-store={busybox_store}"
    rebuild = (store, "-p", "no:cacheprovider", "--obuilder-rebuild")
    pytester.runpytest(*rebuild, "--obuilder-vary=tz").assert_outcomes(failed=1)
    pytester.runpytest(*rebuild, "--obuilder-vary=hostname").assert_outcomes(passed=1)
    mtimes = pytester.runpytest(*rebuild, "--obuilder-vary=none", "--obuilder-check-mtimes")
    mtimes.assert_outcomes(failed=1)  # /made is written again, later
    mtimes.stdout.fnmatch_lines(["mtime (*", "  /made: 20*T*Z -> 20*T*Z"])
    pytester.makeini("[pytest]\nobuilder_vary = none\nobuilder_check_mtimes = true\n")
    pytester.runpytest(*rebuild).assert_outcomes(failed=1)
    bad = pytester.runpytest(*rebuild, "--obuilder-vary=tz,moon")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["ERROR: --obuilder-vary: unknown variation 'moon'*"])


def test_source_date_epoch_option_and_ini_clamp_mtimes(
    pytester: pytest.Pytester, busybox_store: str
) -> None:
    step = '(run (shell "mkdir -p /made; echo x > /made/file"))'
    pytester.makefile(".spec", made=f"((from busybox) (shell /bin/sh -c)\n {step})\n")
    rebuild = (f"--obuilder-store={busybox_store}", "-p", "no:cacheprovider", "--obuilder-rebuild",
               "--obuilder-vary=none", "--obuilder-check-mtimes")  # fmt: skip
    pytester.runpytest(*rebuild).assert_outcomes(failed=1)
    clamped = pytester.runpytest(*rebuild, "--obuilder-source-date-epoch=1600000000")
    clamped.assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nobuilder_source_date_epoch = 1600000000\n")
    pytester.runpytest(*rebuild).assert_outcomes(passed=1)
    bad = pytester.runpytest(*rebuild, "--obuilder-source-date-epoch=yesterday")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["ERROR: --obuilder-source-date-epoch: SOURCE_DATE_EPOCH must be*"])


def test_kernel_and_aslr_are_varied_by_default(
    pytester: pytest.Pytester, busybox_store: str
) -> None:
    step = '(run (shell "uname -r > /kernel; cat /proc/self/personality > /persona"))'
    pytester.makefile(".spec", uname=f"((from busybox) (shell /bin/sh -c)\n {step})\n")
    rebuild = (f"--obuilder-store={busybox_store}", "-p", "no:cacheprovider", "--obuilder-rebuild")
    result = pytester.runpytest(*rebuild)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "variations: hostname, domain, tz, cpus, env, kernel, aslr",
            "NOT deterministic at step /: (run *",
            "  differs under: kernel, aslr",
            "content (2):",
            "  /kernel: *",
            "    +2.6.*",  # UNAME26
            "  /persona: *",
            "    -00000000",
            "    +00060000",  # UNAME26 | ADDR_NO_RANDOMIZE
        ]
    )
    pytester.runpytest(*rebuild, "--obuilder-vary=hostname").assert_outcomes(passed=1)
