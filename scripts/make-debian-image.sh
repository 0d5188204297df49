#!/usr/bin/env bash
# Build the `debian-bookworm` base image of examples/debian/ with debootstrap (a minimal
# Debian 12 with python3) and import it into a store (default: the default store).
# Usage: scripts/make-debian-image.sh [KIND:ARG]. Needs root and Debian's package mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
store=()
if [ $# -gt 0 ]; then store=(--store="$1"); fi
out=build/debian-bookworm.tar.gz
if [ ! -s "$out" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    debootstrap --variant=minbase --include=python3 bookworm "$tmp/rootfs" http://deb.debian.org/debian
    tar -C "$tmp/rootfs" -czf "$out.tmp" .
    mv "$out.tmp" "$out"
fi
.venv/bin/obuilder image import debian-bookworm "$out" ${store[@]+"${store[@]}"}
