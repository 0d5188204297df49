"""Workload W (shared/bench/WORKLOAD.md) cold, with and without a registry cache.

Run as root: `.venv/bin/python bench/registry_cache.py [--runs 3]`. Makes its own btrfs loop
filesystem and a real `docker-registry` on loopback (both removed at the end). Each run uses
fresh, empty btrfs stores and a fresh cache repository, and measures, interleaved:

  cold         W from an empty store (busybox imported), no registry cache: the floor here
  cold + push  the same with `--cache-to`: what pushing every step costs a cold build
  pulled       W from an empty store (not even busybox) with `--cache-from` a warm cache

and prints each as a ratio to `cold` of the same run, with the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from snapshot import loop_btrfs  # noqa: E402  (bench/ is not a package)
from workload import SPEC, build, busybox_image, make_srcdir, timed  # noqa: E402

from obuilder_core.builder import Builder  # noqa: E402
from obuilder_core.images import LocalImages  # noqa: E402
from tests.fixtures.registry import running_registry  # noqa: E402


def cold(store: str, oci: Path | None, context: Path, **caches: object) -> float:
    """Seconds to build W on the fresh store `store` (busybox imported if `oci`)."""
    builder = Builder.open(store, **caches)  # type: ignore[arg-type]
    try:
        if oci is not None:
            LocalImages(builder.store.state_dir() / "images").import_("busybox", oci)
        return timed(lambda: build(builder, SPEC, context))
    finally:
        builder.close()  # after the timing: a build waits for its own pushes already


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    oci = busybox_image()
    times: dict[str, list[float]] = {"cold": [], "push": [], "pulled": []}
    with (
        loop_btrfs("8G") as mnt,
        tempfile.TemporaryDirectory(prefix="obuilder-w-") as ctx_dir,
        running_registry() as registry,
    ):
        context = Path(ctx_dir)
        make_srcdir(context)
        for i in range(args.runs):
            cache = f"{registry.host}/bench/run{i}"
            times["cold"].append(cold(f"btrfs:{mnt}/cold{i}", oci, context))
            times["push"].append(cold(f"btrfs:{mnt}/push{i}", oci, context, cache_to=cache))
            times["pulled"].append(cold(f"btrfs:{mnt}/pull{i}", None, context, cache_from=[cache]))
    m = {k: statistics.median(v) for k, v in times.items()}
    print(f"workload W cold on btrfs, medians of {args.runs} runs; floor: cold without a cache")
    for name, key in (("cold", "cold"), ("cold + push", "push"), ("pulled", "pulled")):
        print(f"{name:<12} {m[key] * 1e3:9.1f} ms   ratio to cold {m[key] / m['cold']:5.2f}")


if __name__ == "__main__":
    main()
