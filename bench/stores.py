"""Issue 12 item 6: the overlayfs and rsync stores against btrfs, and `pytest -n 2` against `-n 0`.

Run as root: `flock /tmp/obuilder-pytest.lock .venv/bin/python bench/stores.py [--runs 5]`.
Makes a btrfs loop filesystem (removed at the end) holding one store of each kind (the
overlayfs and rsync stores are plain directories on it, so all three share one disk), imports
the busybox image into each and prints, in interleaved rounds:

  cold W    workload W (bench/workload.py's SPEC) with every step new, per store
  cached W  the same again, every step cached, per store
  ratios    each store's median over btrfs's (goal: at most 1.10)
  -n        a suite of 20 specs of five new `run` steps each, as one cold pytest session with
            `-n 0` and with `-n 2` (pytest-xdist), per store: the speed-up (goal: at
            least 1.8); then the same sessions again with every step cached, which is what
            a session costs besides its steps (pytest, the plugin, the workers' start), and
            the speed-up of the steps alone
  ceilings  two CPU-bound processes, and two streams of raw `runc run`, at once against one
            after the other
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from snapshot import loop_btrfs  # noqa: E402  (bench/ is not a package)
from workload import (  # noqa: E402
    SPEC,
    build,
    busybox_image,
    make_srcdir,
    timed,
    write_true_bundle,
)

from obuilder_core.builder import Builder  # noqa: E402
from obuilder_core.images import LocalImages  # noqa: E402
from obuilder_core.spec import parse_spec  # noqa: E402

KINDS = ("btrfs", "overlayfs", "rsync")
SUITE_SPECS = 20


def cold_w(builder: Builder, base_id: str, context: Path) -> float:
    """Seconds to build W with none of its steps in the store."""
    for child in builder.index.children(base_id):
        builder.index.delete(child)
    return timed(lambda: build(builder, SPEC, context))


def write_suite(directory: Path) -> None:
    """SUITE_SPECS specs of five `run` steps each, new to every store (a fresh NONCE)."""
    nonce = secrets.token_hex(8)
    for i in range(SUITE_SPECS):
        steps = "".join(f'(run (shell "echo {i}.{k} > /s{k}"))' for k in range(5))
        text = f"((from busybox) (shell /bin/sh -c) (env NONCE {nonce}) {steps})\n"
        (directory / f"s{i:02d}.spec").write_text(text)


# This repository's venv has hypothesis for its own tests. Its pytest plugin imports hypothesis
# for the report header, ~0.8 s of every pytest process (the controller and each worker), which
# a session of specs does not pay where hypothesis is not installed.
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
PYTEST += ["-p", "no:hypothesispytest"]


def pytest_suite(directory: Path, store: str, workers: str) -> float:
    """Seconds taken by one pytest session over the suite (failing loudly)."""
    argv = [*PYTEST, "-n", workers, str(directory), f"--obuilder-store={store}"]
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=directory)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return took


def spin_speedup() -> float:
    """How much faster two CPU-bound processes finish run at once than one after the other:
    what two workers can gain at most on this machine (2.0 on two free cores)."""
    argv = [sys.executable, "-I", "-S", "-c", "sum(i * i for i in range(3_000_000))"]
    one_by_one = timed(lambda: [subprocess.run(argv, check=True) for _ in range(2)])

    def together() -> None:
        procs = [subprocess.Popen(argv) for _ in range(2)]
        if any(proc.wait() for proc in procs):
            raise SystemExit("spin failed")

    return one_by_one / timed(together)


def runc_bundle(base_rootfs: Path, work: Path, name: str) -> Path:
    """A bundle running /bin/true with the project's config.json in a copy of `base_rootfs`."""
    bundle = work / name
    bundle.mkdir()
    subprocess.run(["cp", "-a", str(base_rootfs), str(bundle / "rootfs")], check=True)
    write_true_bundle(bundle, bundle / "rootfs")
    return bundle


def runc_runs(bundle: Path, count: int) -> None:
    """`runc run` the bundle `count` times (each container removed by --rm)."""
    for _ in range(count):
        name = f"obuilder-bench-{secrets.token_hex(6)}"
        argv = ["runc", "--root", str(bundle / "state"), "run", "--bundle", str(bundle), name]
        subprocess.run(argv, check=True, capture_output=True)
        subprocess.run(["runc", "--root", str(bundle / "state"), "delete", "--force", name],
                       check=False, capture_output=True)  # fmt: skip


def runc_speedup(bundles: list[Path], count: int = 10) -> float:
    """How much faster two streams of `runc run` finish at once than one after the other."""

    def one_by_one_runs() -> None:
        for bundle in bundles:
            runc_runs(bundle, count)

    one_by_one = timed(one_by_one_runs)
    with ThreadPoolExecutor(len(bundles)) as pool:
        together = timed(lambda: list(pool.map(runc_runs, bundles, [count] * len(bundles))))
    return one_by_one / together


def main() -> None:
    """Build W on each store and the suite with and without xdist; print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    oci = busybox_image()
    load_before = os.getloadavg()
    with loop_btrfs() as mnt, tempfile.TemporaryDirectory(prefix="obuilder-st-") as work:
        context, suite = Path(work, "ctx"), Path(work, "suite")
        context.mkdir()
        suite.mkdir()
        make_srcdir(context)
        builders = {kind: Builder.open(f"{kind}:{mnt / kind}") for kind in KINDS}
        t: dict[str, list[float]] = {}
        try:
            bases = {}
            for kind, builder in builders.items():
                LocalImages(builder.store.state_dir() / "images").import_("busybox", oci)
                first = builder.build(parse_spec("((from busybox))", "base.spec"), context)
                bases[kind] = first.id or ""
            base_dir = builders["btrfs"].store.result(bases["btrfs"])
            assert base_dir is not None
            bundles = [runc_bundle(base_dir / "rootfs", Path(work), f"runc{i}") for i in (0, 1)]
            for _ in range(args.runs):
                for kind, builder in builders.items():
                    t.setdefault(f"cold {kind}", []).append(cold_w(builder, bases[kind], context))
                    cached = timed(lambda b=builder: build(b, SPEC, context))  # type: ignore[misc]
                    t.setdefault(f"cached {kind}", []).append(cached)
                for kind in KINDS:
                    for workers in ("0", "2"):
                        write_suite(suite)
                        took = pytest_suite(suite, f"{kind}:{mnt / kind}", workers)
                        t.setdefault(f"-n {workers} {kind}", []).append(took)
                        # Again, every step cached: what the session costs besides steps.
                        took = pytest_suite(suite, f"{kind}:{mnt / kind}", workers)
                        t.setdefault(f"cached -n {workers} {kind}", []).append(took)
                t.setdefault("spin", []).append(spin_speedup())
                t.setdefault("runc", []).append(runc_speedup(bundles))
        finally:
            for builder in builders.values():
                builder.close()
    m = {name: statistics.median(v) for name, v in t.items()}
    print(f"workload W per store, on one btrfs loop filesystem; medians of {args.runs} rounds")
    for scenario in ("cold", "cached"):
        btrfs = m[f"{scenario} btrfs"]
        cells = "   ".join(
            f"{kind} {m[f'{scenario} {kind}'] * 1e3:7.1f} ms"
            f" ({m[f'{scenario} {kind}'] / btrfs:.2f})"
            for kind in KINDS
        )
        print(f"  {scenario:<6} {cells}   (ratio to btrfs; goal <= 1.10)")
    for kind in KINDS:
        n0, n2 = m[f"-n 0 {kind}"], m[f"-n 2 {kind}"]
        c0, c2 = m[f"cached -n 0 {kind}"], m[f"cached -n 2 {kind}"]
        print(
            f"  {SUITE_SPECS} cold specs x 5 steps on {kind}: -n 0 {n0:.2f} s, -n 2 {n2:.2f} s,"
            f" speed-up {n0 / n2:.2f} (goal >= 1.8); all cached: -n 0 {c0:.2f} s,"
            f" -n 2 {c2:.2f} s; the steps alone {(n0 - c0) / (n2 - c2):.2f} x faster"
        )
    print(
        f"  at once against one after the other: two CPU-bound processes {m['spin']:.2f} x"
        f" faster, two streams of raw `runc run` {m['runc']:.2f} x"
    )
    fmt = ", ".join
    print(
        f"  load average (1, 5, 15 min): before {fmt(f'{x:.2f}' for x in load_before)};"
        f" after {fmt(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
