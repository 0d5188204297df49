"""`kill -9` of a build, then opening the store: every leftover of the dead process is swept.

Real CLI, real runc, every store backend. The build's first step is saved and its second
step's container runs when the process is killed, so the dead process leaves all it can: a
running container and its bundle, the step's temporary (and mounts, on overlayfs), the lock
files and in-progress log of its steps. Opening a builder on the store must remove them all,
and the store must then build as if nothing happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from obuilder_core.builder import Builder
from obuilder_core.spec import parse_spec
from obuilder_core.stores.overlayfs import mounts_under
from tests.builder.helpers import running_builder
from tests.fixtures.busybox import delete_containers, runc_root
from tests.fixtures.cli import start_obuilder

SPEC = (
    "((from busybox) (shell /bin/sh -c)\n"
    ' (run (shell "echo one > /one"))\n'
    ' (run (shell "echo start; sleep 100000")))\n'
)


def _leftovers(root: Path, sandbox: Path) -> dict[str, list[str]]:
    """What a dead build could have left in the store whose directory is `root`, and in its
    sandbox's state dir."""
    state = root / "state"
    temporaries = [root / "tmp", root / "result-tmp"]  # overlayfs; the others
    return {
        "containers": sorted(p.name for p in (sandbox / "runc").glob("*")),
        "bundles": sorted(p.name for p in (sandbox / "bundles").glob("*")),
        "step files": sorted(p.name for p in (state / "steps").glob("*") if p.name != ".sweep"),
        "temporaries": sorted(p.name for t in temporaries for p in t.glob("[!.]*")),
        "mounts": [str(m) for t in temporaries for m in mounts_under(t) if m != t],
    }


def test_kill_9_mid_build_leaves_nothing_once_the_store_is_opened(
    store_spec: str, busybox_oci: Path, tmp_path: Path
) -> None:
    with running_builder(store_spec, busybox_oci) as builder:
        root = builder.store.state_dir().parent
    (tmp_path / "s.spec").write_text(SPEC)
    argv = ["build", "-f", str(tmp_path / "s.spec"), "--store", store_spec, str(tmp_path)]
    proc = start_obuilder(*argv, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        while (line := proc.stdout.readline()) != "start\n":  # the step's output
            assert line, "the build ended before its second step started"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    sandbox = runc_root(store_spec).parent
    left = _leftovers(root, sandbox)
    assert left["containers"] and left["step files"] and left["temporaries"], left
    try:
        with Builder.open(store_spec) as builder:  # opening the store sweeps
            assert _leftovers(root, sandbox) == {key: [] for key in left}
            finished = SPEC.replace("sleep 100000", "echo done")
            r = builder.build(parse_spec(finished, "s.spec"), tmp_path)
            assert r.ok and [s.cached for s in r.steps] == [True, True, False], r
    finally:
        delete_containers(sandbox / "runc")
