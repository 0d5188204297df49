#!/usr/bin/env bash
# Install what the project needs on Debian 12, idempotently: the system tools the real
# parts use (runc, btrfs, zfs-fuse, a registry, skopeo, umoci, buildah, busybox), the
# determinism checker's (disorderfs, libfaketime, diffoscope-minimal), xxhsum (xxhash:
# bench/compare_trees.py's floor) and a virtualenv under the repository with the package and its
# dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    python3-venv runc btrfs-progs zfs-fuse docker-registry skopeo umoci busybox-static
    rsync debootstrap psmisc zstd disorderfs gcc libc6-dev buildah libfaketime diffoscope-minimal
    xxhash
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages (${missing[*]}); run as root or install them" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi

# Bytecode, written once here: this environment may set PYTHONDONTWRITEBYTECODE, and then every
# `obuilder` and pytest process would compile the package again (a fully cached build took 250
# ms instead of 160). Python still reads .pyc files it may not write, and recompiles (in memory)
# only what changed since; this step is quick when nothing has.
.venv/bin/python -m compileall -q -j 0 obuilder_core pytest_obuilder .venv/lib/python3*/site-packages \
    >/dev/null || echo "setup: some files could not be compiled; they compile when imported" >&2
