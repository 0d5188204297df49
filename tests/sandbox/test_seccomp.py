"""What a step may and may not do: Docker's default seccomp profile and capabilities, for real.

A small static program (probe/syscall_probe.c) tries each syscall inside a runc container.
Its arguments make the kernel answer something other than EPERM where it can (EFAULT, ENOENT,
success), so EPERM means the filter refused.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from obuilder_core.sandbox import RuncSandbox, StepFailed
from tests.sandbox.helpers import run, sh

PROBE_SOURCE = Path(__file__).with_name("probe") / "syscall_probe.c"

DENIED = [
    "unshare-user", "unshare-net", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
    "kexec_load", "open_by_handle_at", "init_module", "mount", "userfaultfd", "io_uring_setup",
    "personality-addr-no-randomize",
]  # fmt: skip


@pytest.fixture(scope="session")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The syscall probe, compiled statically (so it runs in the busybox image)."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc and libc6-dev (run scripts/setup.sh)")
    out = tmp_path_factory.mktemp("probe") / "syscall_probe"
    built = subprocess.run(
        ["gcc", "-static", "-O1", "-o", str(out), str(PROBE_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build a static program here: {built.stderr.strip()[-200:]}")
    return out


def _probe(sandbox: RuncSandbox, rootfs: Path, probe: Path, *names: str, **kw: object) -> dict:
    shutil.copy(probe, rootfs / "probe")
    out = run(sandbox, rootfs, sh(f"/probe {' '.join(names)}", **kw))
    return dict(line.split(" ", 1) for line in out.splitlines())


@pytest.mark.parametrize("user", [(0, 0), (1000, 1000)], ids=["root", "user"])
def test_dangerous_syscalls_are_refused(
    sandbox: RuncSandbox, busybox_rootfs: Path, probe: Path, user: tuple[int, int]
) -> None:
    seen = _probe(sandbox, busybox_rootfs, probe, *DENIED, "clone3", "getpid", user=user)
    assert {n: seen[n] for n in DENIED} == {n: "EPERM" for n in DENIED}
    assert seen["clone3"] == "ENOSYS"  # so that libc falls back to clone
    assert seen["getpid"] == "ok"


def test_unshare_cannot_make_a_user_namespace(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    with pytest.raises(StepFailed):
        run(sandbox, busybox_rootfs, sh("unshare -U -r id"))
    out = run(sandbox, busybox_rootfs, sh("unshare -U -r id 2>&1 || true"))
    assert "Operation not permitted" in out


def test_what_a_step_may_do(sandbox: RuncSandbox, busybox_rootfs: Path, probe: Path) -> None:
    # Docker's default capabilities: chown, mknod, chroot, raw sockets (ping), ...
    script = (
        "chown 1000:1000 /tmp && mknod /tmp/null c 1 3 && chroot / true"
        " && grep -E '^(Cap(Eff|Bnd)|Seccomp):' /proc/self/status"
    )
    out = run(sandbox, busybox_rootfs, sh(script))
    caps = dict(line.split(":\t") for line in out.splitlines())
    assert caps["Seccomp"] == "2"
    assert caps["CapEff"] == caps["CapBnd"] == "00000000a80425fb"  # Docker's 14
    # A setuid-root program still works for another user inside the step (sudo would).
    shutil.copy(probe, busybox_rootfs / "probe")
    (busybox_rootfs / "probe").chmod(0o4755)
    assert run(sandbox, busybox_rootfs, sh("/probe euid", user=(1000, 1000))) == "euid 0\n"
