"""The OCI runtime `config.json` for one run: a pure function of the RunConfig and the host.

Follows OBuilder's runc sandbox (reference §4.2) with these differences: Docker's default
capability set (OBuilder's twelve plus NET_RAW and NET_BIND_SERVICE), and a non-root user gets
no effective capabilities (only the bounding set, so setuid programs such as sudo still work),
like Docker; Docker's default seccomp profile (`seccomp.py`) on every run, merged with
`fast_sync`'s no-op syncs; RLIMIT_NOFILE is capped to the host's hard limit so runc never
refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from obuilder_core.sandbox.base import HOST_NETWORK, RunConfig
from obuilder_core.sandbox.limits import Limits
from obuilder_core.sandbox.mountpoints import normalise_destination
from obuilder_core.sandbox.seccomp import default_profile

CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # fmt: skip
"""Docker's default capability set (moby `oci/caps/defaults.go`)."""

MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
]  # fmt: skip

READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

NOFILE_SOFT = 1024
"""Soft RLIMIT_NOFILE inside the sandbox, as OBuilder's (capped to the host's hard limit)."""

RESOLV_CONF = Path("/etc/resolv.conf")


def hosts_file_content(hostname: str) -> bytes:
    """The container's /etc/hosts: the loopback address names localhost and the hostname."""
    return f"127.0.0.1 localhost {hostname}\n".encode()


def _mount(dst: str, kind: str, src: str, options: list[str]) -> dict[str, Any]:
    return {"destination": dst, "type": kind, "source": src, "options": options}


def fixed_mounts() -> list[dict[str, Any]]:
    """The kernel filesystems every container gets (/proc, /dev, /sys, ...)."""
    return [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts",
               ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", ["ro", "nosuid", "noexec", "nodev"]),
        _mount("/dev/shm", "tmpfs", "shm",
               ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
    ]  # fmt: skip


def bind_mounts(
    config: RunConfig, hosts_file: Path, secret_files: Sequence[Path]
) -> list[dict[str, Any]]:
    """/etc/hosts, the host's resolv.conf (host network only), secrets, then cache mounts."""
    ro_bind = ["ro", "rbind", "rprivate"]
    mounts = [_mount("/etc/hosts", "bind", str(hosts_file), ro_bind)]
    if config.network == HOST_NETWORK:
        mounts.append(_mount(str(RESOLV_CONF), "bind", str(RESOLV_CONF), ro_bind))
    for secret, path in zip(config.secrets, secret_files, strict=True):
        dst = normalise_destination(secret.target)
        mounts.append(_mount(dst, "bind", str(path), ["rbind", "rprivate", "ro"]))
    for m in config.mounts:
        options = ["bind", "nosuid", "nodev"]
        if m.readonly:
            options = ["ro", *options]
        mounts.append(_mount(normalise_destination(m.dst), "bind", str(m.src), options))
    return mounts


def resources(limits: Limits, *, swap_accounting: bool) -> dict[str, Any]:
    """`linux.resources`: the cgroup limits of the step (pids, memory without extra swap)."""
    out: dict[str, Any] = {}
    if limits.pids is not None:
        out["pids"] = {"limit": limits.pids}
    if limits.memory is not None:
        # OCI's `swap` is memory + swap: equal to the limit means no swap on top of it.
        memory = {"limit": limits.memory}
        if swap_accounting:
            memory["swap"] = limits.memory
        out["memory"] = memory
    return out


def make_config(
    config: RunConfig,
    rootfs: Path,
    *,
    hosts_file: Path,
    secret_files: Sequence[Path],
    fast_sync: bool,
    nofile_hard: int,
    machine: str,
    swap_accounting: bool = True,
) -> dict[str, Any]:
    """The runc `config.json` document running `config` in `rootfs`.

    `hosts_file` and `secret_files` are host paths (in the bundle) bound into the container;
    `nofile_hard` is the host's hard RLIMIT_NOFILE; `machine` is `uname -m`;
    `swap_accounting` says whether the host can limit swap (cgroup v2, or v1 with memsw).
    Call `config.validate()` first: an unsupported network is not checked here.
    """
    uid, gid = config.user
    caps = CAPABILITIES if uid == 0 else []
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if config.network != HOST_NETWORK:
        # A fresh network namespace: runc brings up its loopback interface and nothing else.
        namespaces.insert(0, {"type": "network"})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "seccomp": default_profile(CAPABILITIES, machine, fast_sync=fast_sync),
        "resources": resources(config.limits, swap_accounting=swap_accounting),
    }
    if config.domainname:
        # runc 1.1 ignores the spec's `domainname`; the UTS namespace's sysctl works.
        linux["sysctl"] = {"kernel.domainname": config.domainname}
    return {
        "ociVersion": "1.0.1-dev",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": list(config.argv),
            "env": [f"{k}={v}" for k, v in config.env],
            "cwd": config.cwd,
            "capabilities": {
                "bounding": CAPABILITIES,
                "effective": caps,
                "inheritable": caps,
                "permitted": caps,
            },
            "rlimits": [
                {
                    "type": "RLIMIT_NOFILE",
                    "hard": nofile_hard,
                    "soft": min(NOFILE_SOFT, nofile_hard),
                }
            ],
            "noNewPrivileges": False,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": config.hostname,
        "mounts": fixed_mounts() + bind_mounts(config, hosts_file, secret_files),
        "linux": linux,
    }
