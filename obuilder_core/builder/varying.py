"""How a rebuild's environment is varied (the names are in `variations.py`).

Most variations change the step's `RunConfig` (`varied_config`). Three cannot be said in
runc 1.1's config and are set on the thread that starts runc instead, which the container's
processes inherit through fork and exec (`thread_traits`): the CPU affinity (`cpus`) and the
personality flags UNAME26 (`kernel`) and ADDR_NO_RANDOMIZE (`aslr`). `time` preloads the host's
libfaketime, bound read-only into the container's /dev (a tmpfs that is not part of the
snapshot, so nothing is left in the result).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from obuilder_core.sandbox import Mount, RunConfig

UMASK = "0002"
HOSTNAME = "verify-rebuild"
DOMAIN = "verify-rebuild.invalid"
HOME = "/nonexistent/verify-rebuild"
TZ = "VRF-14"
CLOCK_SHIFT = 3 * 365 * 86400 + 40 * 86400 + 7 * 3600 + 13 * 60
"""Seconds `time` moves the clock forward: 3 years 40 days 7 h 13 min, so that the year, the
day of the year, the weekday, the hour and the minute all differ (reprotest shifts 373 days)."""
FAKETIME_DIR = "/dev/.obuilder-faketime"
"""Where the host's libfaketime directory is bound in the container."""
FAKETIME_GLOBS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1")

# <linux/personality.h>
UNAME26 = 0x0020000
"""uname() reports a 2.6.x release (2.6.40 + minor for 3.x and later)."""
ADDR_NO_RANDOMIZE = 0x0040000
"""Programs started with it get no address-space randomisation."""
PERSONALITY_QUERY = 0xFFFFFFFF


def varied_config(config: RunConfig, vary: tuple[str, ...], rootfs: Path) -> RunConfig:
    """`config` with the variations in `vary` applied (cpus, kernel and aslr are applied by
    `thread_traits`). `time` needs `libfaketime()` to be found (check `faketime_missing`)."""
    env = list(config.env)

    def set_env(name: str, value: str) -> None:
        env[:] = [(k, v) for k, v in env if k != name] + [(name, value)]

    if "tz" in vary:
        set_env("TZ", TZ)
    if "locale" in vary:
        set_env("LANG", "fr_CH.UTF-8")
        set_env("LC_ALL", "fr_CH.UTF-8")
    if "env" in vary:
        set_env("OBUILDER_VERIFY_VARIATION", "1")
    if "home" in vary:
        set_env("HOME", HOME)
    mounts = config.mounts
    if "time" in vary:
        lib = libfaketime()
        assert lib is not None, "checked by the caller"
        mounts = (*mounts, Mount(lib.parent, FAKETIME_DIR, readonly=True))
        preload = dict(env).get("LD_PRELOAD")
        inside = f"{FAKETIME_DIR}/{lib.name}"
        set_env("LD_PRELOAD", f"{inside}:{preload}" if preload else inside)
        set_env("FAKETIME", f"+{CLOCK_SHIFT}")
        set_env("DONT_FAKE_MONOTONIC", "1")  # the wall clock only: timeouts keep working
    argv = config.argv
    if "umask" in vary and _has_shell(rootfs):
        # "$@" passes the original argv through unchanged; exec keeps the process tree the same.
        argv = ("/bin/sh", "-c", f'umask {UMASK} && exec "$@"', "sh", *argv)
    hostname = HOSTNAME if "hostname" in vary else config.hostname
    domain = DOMAIN if "domain" in vary else config.domainname
    return replace(
        config, env=tuple(env), argv=argv, hostname=hostname, domainname=domain, mounts=mounts
    )


def _has_shell(rootfs: Path) -> bool:
    # lexists: /bin/sh is often a symlink that only resolves inside the container.
    return os.path.lexists(rootfs / "bin" / "sh")


def libfaketime() -> Path | None:
    """The host's libfaketime.so.1 (Debian package libfaketime), or None."""
    for pattern in FAKETIME_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    return None


def faketime_missing() -> str | None:
    """Why `time` cannot be varied here, or None if it can."""
    if libfaketime() is None:
        return "libfaketime is not installed (apt-get install libfaketime)"
    return None


@contextlib.contextmanager
def thread_traits(vary: tuple[str, ...]) -> Iterator[None]:
    """Give this thread (and so the runc it starts, and the container's processes) the CPU
    affinity and personality `vary` asks for, then restore them. Both are per thread, so the
    builder's other threads are not affected."""
    persona = (UNAME26 if "kernel" in vary else 0) | (ADDR_NO_RANDOMIZE if "aslr" in vary else 0)
    with _one_cpu("cpus" in vary and len(os.sched_getaffinity(0)) > 1), _personality(persona):
        yield


@contextlib.contextmanager
def _one_cpu(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def _personality(flags: int) -> Iterator[None]:
    if not flags:
        yield
        return
    before = _set_personality(PERSONALITY_QUERY)
    _set_personality(before | flags)
    try:
        yield
    finally:
        _set_personality(before)


def _set_personality(persona: int) -> int:
    """personality(2): set this thread's persona (PERSONALITY_QUERY only reads it); the old one."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.personality.argtypes = [ctypes.c_ulong]
    libc.personality.restype = ctypes.c_int
    old = int(libc.personality(persona))
    if old == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, f"personality: {os.strerror(errno)}")
    return old
