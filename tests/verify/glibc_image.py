"""A tiny glibc image built from the host's own files, for tests that need real locales or
dynamically linked programs.

busybox's `sort` ignores locales, so the `locale` variation cannot be shown with the busybox
image, and busybox is static, so libfaketime (the `time` variation) cannot reach it. This image
holds the host's dash as /bin/sh, coreutils `sort` and `date`, the shared libraries and
dynamic loader `ldd` lists for them (and for the host's libfaketime), and fr_CH.UTF-8 locale
data compiled with the host's `localedef` into /usr/lib/locale/fr_CH.UTF-8 (where glibc looks
when there is no locale-archive). C.UTF-8 is built into glibc, and with no LANG the POSIX
locale applies.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from obuilder_core.builder.varying import libfaketime
from obuilder_core.process import run_cmd

IMAGE_NAME = "glibc-locale"
"""The name tests import it under."""
LOCALE = "fr_CH.UTF-8"
#: host file -> path in the image
PROGRAMS = {
    "/usr/bin/dash": "bin/sh",
    "/usr/bin/sort": "usr/bin/sort",
    "/usr/bin/date": "usr/bin/date",
}
LOCALE_SOURCES = (Path("/usr/share/i18n/locales/fr_CH"), Path("/usr/share/i18n/charmaps/UTF-8.gz"))


def missing_tools() -> str | None:
    """Why this image cannot be built here (a skip reason), or None if it can."""
    for tool in ("localedef", "ldd", *PROGRAMS):
        if shutil.which(tool) is None:
            return f"needs {tool} on the host"
    for source in LOCALE_SOURCES:
        if not source.exists():
            return f"needs {source} (Debian package locales)"
    return None


def shared_libraries(program: str) -> list[str]:
    """The absolute paths `ldd` lists for `program` (libraries and the dynamic loader)."""
    out = run_cmd(["ldd", program]).stdout.decode()
    paths = []
    for line in out.splitlines():
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        words = line.split()
        target = words[2] if len(words) > 2 and words[1] == "=>" else words[0] if words else ""
        if target.startswith("/"):
            paths.append(target)
    return paths


def build_rootfs(rootfs: Path) -> Path:
    """Fill the empty or missing directory `rootfs` with the programs, libraries and locale."""
    files = dict(PROGRAMS)
    faketime = libfaketime()  # what it needs (libm), so the `time` variation can preload it
    for program in [*PROGRAMS, *([str(faketime)] if faketime else [])]:
        files.update({lib: lib.lstrip("/") for lib in shared_libraries(program)})
    for source, dest in files.items():
        target = rootfs / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)  # follows symlinks: the loader path is one on Debian
    for empty in ("etc", "tmp", "proc", "dev", "sys"):
        (rootfs / empty).mkdir(exist_ok=True)
    locale_dir = rootfs / "usr" / "lib" / "locale"
    locale_dir.mkdir(parents=True, exist_ok=True)
    run_cmd(["localedef", "-i", "fr_CH", "-f", "UTF-8", str(locale_dir / LOCALE)])
    return rootfs


def build_image_tar(workdir: Path) -> Path:
    """Build the rootfs under `workdir` and pack it as `workdir/glibc-locale.tar` (root-owned)."""
    rootfs = build_rootfs(workdir / "rootfs")

    def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    tar_path = workdir / "glibc-locale.tar"
    with tarfile.open(tar_path, "w") as tar:
        for child in sorted(rootfs.iterdir()):
            tar.add(child, arcname=child.name, filter=as_root)
    shutil.rmtree(rootfs)
    return tar_path
