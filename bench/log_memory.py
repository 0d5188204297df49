"""Memory used by a step that prints 200 MB: building, following, replaying, the pytest report.

Run as root: `.venv/bin/python bench/log_memory.py [--mb 200]`. Uses a fresh rsync store in a
temporary directory with the busybox image (built into build/busybox-oci if needed). Each path
runs as a child process; its peak resident memory (`ru_maxrss` from `wait4`) is printed next
to the target (100 MB) and to the floor measured in the same run (a process that imports the
builder and exits). Exit status 1 if a path misses the target.

  build    `obuilder build` of a step printing MB megabytes (stdout to /dev/null)
  follow   a second `obuilder build` started while the first runs: it follows the log
  replay   the same build again: the step comes from the cache, its log is replayed
  pytest   `pytest --junitxml` on a spec whose step prints MB megabytes, then fails
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from snapshot import scratch_dir  # bench/ is the script's directory, first on sys.path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv" / "bin"
TARGET_MB = 100

# The pause gives the second build time to attach while the first one runs (a benchmark may
# rely on timing; a test may not).
SPEC = """((from busybox)
 (shell /bin/sh -c)
 (run (shell "sleep 2; yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c {size}; {end}")))
"""


def wait_peak_mb(proc: subprocess.Popen[bytes]) -> float:
    """Wait for `proc`; its peak RSS in MB."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024


def run_peak_mb(argv: list[str], cwd: Path) -> float:
    """Run `argv` (output discarded) and return its peak RSS in MB."""
    null = subprocess.DEVNULL
    return wait_peak_mb(subprocess.Popen(argv, cwd=cwd, stdout=null, stderr=null))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="megabytes the step prints")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("log_memory: needs root (runc)", file=sys.stderr)
        return 2
    oci = REPO / "build" / "busybox-oci"
    build_image = [str(VENV / "python"), str(REPO / "scripts" / "build-busybox-image.py")]
    subprocess.run([*build_image, str(oci)], check=True, stdout=subprocess.DEVNULL)
    with scratch_dir("obuilder-logmem-") as work:
        store = f"rsync:{work / 'store'}"
        obuilder = [str(VENV / "obuilder")]
        subprocess.run(
            [*obuilder, "image", "import", "busybox", str(oci), "--store", store],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        size = args.mb * 1_000_000
        (work / "big.spec").write_text(SPEC.format(size=size, end="true"))
        (work / "fails.spec").write_text(SPEC.format(size=size, end="exit 1"))
        build = [*obuilder, "build", "-f", "big.spec", "--store", store, "."]
        floor = [str(VENV / "python"), "-c", "import obuilder_core.builder"]
        rows = [("floor: import the builder", run_peak_mb(floor, work))]

        first = subprocess.Popen(build, cwd=work, stdout=subprocess.PIPE)
        assert first.stdout is not None
        while b"(run (shell" not in first.stdout.readline():
            pass  # its step has started: a second build now finds it running
        null = subprocess.DEVNULL
        follower = subprocess.Popen(build, cwd=work, stdout=null, stderr=null)
        while first.stdout.read(1 << 20):
            pass
        rows.append(("build (live output)", wait_peak_mb(first)))
        rows.append(("follow another process's run", wait_peak_mb(follower)))
        rows.append(("replay from the cache", run_peak_mb(build, work)))
        junit = ["--junitxml=junit.xml", "-o", "junit_logging=system-out"]
        pytest = [str(VENV / "pytest"), f"--obuilder-store={store}", *junit, "fails.spec"]
        rows.append(("pytest report + junit (failing)", run_peak_mb(pytest, work)))
        junit_mb = (work / "junit.xml").stat().st_size / 1e6
    print(f"step output: {args.mb} MB; target: < {TARGET_MB} MB peak RSS in each path")
    print(f"{'path':34} {'peak RSS':>10}")
    for name, mb in rows:
        print(f"{name:34} {mb:7.1f} MB")
    print(f"junit.xml written by pytest: {junit_mb:.2f} MB")
    return 0 if max(mb for _, mb in rows) < TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
