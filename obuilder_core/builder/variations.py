"""The determinism checker's variations, by name (light: the CLI's help lists them)."""

#: Every variation, and what it changes in the rebuild (see docs/verify.md).
VARIATIONS = {
    "hostname": "hostname builder -> verify-rebuild",
    "domain": "domain name (none) -> verify-rebuild.invalid",
    "home": "HOME=/nonexistent/verify-rebuild (a home that cannot be written, as reprotest)",
    "tz": "TZ=VRF-14 (UTC+14) in the environment",
    "locale": "LANG and LC_ALL=fr_CH.UTF-8",
    "umask": "umask 0002 instead of 0022 (wraps the command in the image's /bin/sh)",
    "cpus": "the command runs on one CPU (affinity) instead of all",
    "env": "an extra variable OBUILDER_VERIFY_VARIATION=1",
    "fileorder": "the rootfs seen through disorderfs: directory entries in reverse order",
    "kernel": "uname says 2.6.x (the UNAME26 personality) instead of the host's release",
    "aslr": "address-space randomisation off (the ADDR_NO_RANDOMIZE personality)",
    "time": "the clock 3 years 40 days 7 h ahead, for dynamically linked programs (libfaketime)",
}
DEFAULT_VARY = ("hostname", "domain", "tz", "cpus", "env", "kernel", "aslr")
"""Cheap and safe, and only flagging steps that really read them (`kernel` and `aslr` are a
personality flag of the thread starting runc; glibc learns the kernel's version from the vDSO,
not uname, so programs still start under `kernel`). Left out by default: `time` (it preloads
the host's libfaketime, which needs glibc 2.34 or later in the image: elsewhere programs fail to
start), `locale` (missing locales make some tools warn), `home` (a tool that keeps a cache in
$HOME fails when it cannot write there: a finding reprotest makes too, but not one every correct
build passes), `umask` (runc always starts commands with umask 0022, so it never varies between
real builds, yet varying it flags every step that creates a file), and `fileorder` (a FUSE
mount per rebuilt run step, and FUSE slows file-heavy steps down)."""
