"""zfs store (`zfs:DATASET`): one dataset per step, children cloned from their parent's snapshot.

Layout under DATASET (a pool or any filesystem dataset in it):

- `DATASET/result/ID`: a committed step. Built in `DATASET/result-tmp/NAME` (a clone of the
  parent's `@snap`), committed by `readonly=on`, `@snap`, then a rename into `result/`.
  The result path is the mounted dataset (zfs-fuse has no `.zfs/snapshot` directory), made
  immutable by `readonly=on`.
- `DATASET/cache/NAME`: cache versions and users' clones. A cache's latest version is the
  `@snap` of the dataset named in `cache-head/c-NAME`; users get clones of it, and the first
  to release is promoted to be the new head (datasets are never renamed).
- `DATASET/state`: mutable state (`state_dir`). The DATASET's own directory holds `tmp/` (one
  flock'd marker per in-flight build or clone, naming its dataset, so a re-open destroys only
  the datasets of dead owners), `cache-gen/` (on-disk generation counters) and `cache-head/`.

zfs-fuse (pool version 23) differences handled here: no `.zfs` directory, no `zpool list -p`,
and a recently written mounted dataset stays "busy" for rename/destroy until it is unmounted,
so every rename/destroy unmounts first and retries briefly on "busy" (reference §7 item 8).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from obuilder_core.process import CommandError, CommandTimeout, run_cmd
from obuilder_core.stores.base import CacheBusy, CacheLease, StoreError, step_dir_view
from obuilder_core.stores.disk import seal_root
from obuilder_core.stores.names import check_step_id, escape_cache_name
from obuilder_core.stores.temps import TempArea, TempClaim, locked_counter, once

log = logging.getLogger(__name__)

SNAP = "snap"
ZFS_TIMEOUT = 60.0
"""Seconds any zfs command, or a look at a mounted dataset, may take before the daemon is
declared wedged (zfs-fuse can stop answering, and then every access to its pools hangs)."""
_BUSY_RETRIES = 50  # x 0.2 s: zfs-fuse may report "busy" for a moment after an unmount


def zfs_cache_name(name: str) -> str:
    """The dataset name of cache `name`: the shared injective escape, with `%` spelled `:`.

    zfs refuses `%` in names; `:` never occurs in an escaped name, so the mapping stays
    injective (long names are already hashed by `escape_cache_name`).
    """
    return escape_cache_name(name).replace("%", ":")


def zfs_timeout() -> float:
    """Seconds a zfs command may take: `OBUILDER_ZFS_TIMEOUT`, default ZFS_TIMEOUT."""
    try:
        return float(os.environ.get("OBUILDER_ZFS_TIMEOUT", ZFS_TIMEOUT))
    except ValueError:
        return ZFS_TIMEOUT


class NotResponding(StoreError):
    """The zfs-fuse daemon does not answer: every access to its pools would hang."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"zfs: the zfs-fuse daemon is not responding ({detail})")


def run_zfs(argv: list[str], *, check: bool = False) -> subprocess.CompletedProcess[bytes]:
    """Run a zfs or zpool command, bounded: NotResponding if it gives no answer in time."""
    try:
        return run_cmd(argv, check=check, timeout=zfs_timeout())
    except CommandTimeout as e:
        raise NotResponding(str(e)) from None


def probe(path: Path, timeout: float | None = None) -> None:
    """Raise NotResponding unless a look at `path` (on a zfs-fuse mount) answers in time.

    The look runs in a thread of its own: a thread waiting on a wedged FUSE daemon cannot be
    interrupted, so it is left behind rather than taking the caller with it.
    """
    limit = zfs_timeout() if timeout is None else timeout
    answered = threading.Event()

    def look() -> None:
        with contextlib.suppress(OSError):
            os.stat(path)
        answered.set()

    threading.Thread(target=look, name="zfs-probe", daemon=True).start()
    if not answered.wait(limit):
        raise NotResponding(f"a look at {path} gave no answer in {limit:g}s")


class Watchdog:
    """Looks at a zfs store's mountpoint every `every` seconds while it runs. If zfs-fuse
    stops answering, every thread touching the store is stuck for good: it says so in one line
    and ends the process (exit 75, EX_TEMPFAIL) instead of hanging. The next open of the
    store, once the daemon answers again, sweeps what the process left."""

    EXIT_CODE = 75

    def __init__(self, path: Path, every: float | None = None) -> None:
        self.path = path
        self.every = min(5.0, zfs_timeout()) if every is None else every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="zfs-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            try:
                probe(self.path)
                run_zfs(["zpool", "list", "-H", "-o", "name"])
            except NotResponding as e:
                if self._stop.is_set():
                    return
                print(f"obuilder: error: {e}; giving up", file=sys.stderr, flush=True)
                os._exit(self.EXIT_CODE)

    def stop(self) -> None:
        """Stop watching (the store is closed)."""
        self._stop.set()


def _zfs(*args: str, check: bool = True) -> str:
    return run_zfs(["zfs", *args], check=check).stdout.decode()


def _exists(name: str) -> bool:
    return run_zfs(["zfs", "list", "-H", "-o", "name", name]).returncode == 0


_RESET = "Connection reset by peer"
"""What the zfs command says when zfs-fuse dropped its request (seen with two processes
building at once); the daemon goes on answering, and the command may or may not have run."""


def _retry_busy(*args: str, done: Callable[[], bool] | None = None) -> None:
    """Run `zfs ARGS`, retrying while zfs-fuse says the dataset is busy, or dropped the
    request (_RESET). After a dropped request, `done()` says whether the command ran anyway.
    """
    for attempt in range(_BUSY_RETRIES):
        proc = run_zfs(["zfs", *args])
        if proc.returncode == 0:
            return
        err = proc.stderr.decode(errors="replace")
        if _RESET in err and done is not None and done():
            return
        if ("busy" not in err and _RESET not in err) or attempt == _BUSY_RETRIES - 1:
            raise CommandError(["zfs", *args], proc.returncode, err)
        time.sleep(0.2)


def _rename(src: str, dst: str) -> None:
    _retry_busy("rename", src, dst, done=lambda: _exists(dst) and not _exists(src))


def _unmount(name: str) -> None:
    try:
        _retry_busy("unmount", name)
    except CommandError as e:
        if "not currently mounted" not in e.stderr and "does not exist" not in e.stderr:
            raise


def _mounted(name: str) -> bool:
    return _zfs("get", "-H", "-o", "value", "mounted", name, check=False).strip() == "yes"


def _mount(name: str) -> None:
    """Mount dataset `name` unless it is mounted.

    Another process may be mounting it at the same moment (two builds finding one result
    unmounted): zfs-fuse then fails the loser's `zfs mount` ("mountpoint or dataset is busy",
    "failed to create mountpoint"). A failure after which the dataset is mounted is success;
    otherwise the winner's mount may still be under way (or have failed), so try again.
    """
    for attempt in range(_BUSY_RETRIES):
        proc = run_zfs(["zfs", "mount", name])
        if proc.returncode == 0 or b"already mounted" in proc.stderr or _mounted(name):
            return
        err = proc.stderr.decode(errors="replace")
        racing = "busy" in err or "failed to create mountpoint" in err
        if not racing or attempt == _BUSY_RETRIES - 1:
            raise CommandError(["zfs", "mount", name], proc.returncode, err)
        time.sleep(0.2)


def _destroy(name: str, *flags: str) -> None:
    """Destroy dataset `name` (and what `flags` say) if it exists.

    Everything that goes with it (descendants; with -R also clones) is unmounted first,
    deepest first: zfs-fuse calls a mounted dataset with recently used files "busy".
    """
    if not _exists(name):
        return
    if "@" not in name:
        for ds in reversed(_affected(name, clones="-R" in flags)):
            _unmount(ds)
    try:
        _retry_busy("destroy", *flags, name)
    except CommandError as e:
        if "does not exist" not in e.stderr:
            raise


def _affected(name: str, *, clones: bool) -> list[str]:
    """`name`, its descendant filesystems and (if `clones`) their clones, parents first."""
    pool = name.split("/", 1)[0]
    rows = [r.split("\t") for r in _zfs("list", "-H", "-o", "name,origin", "-r", pool).splitlines()]
    found = [name]
    grew = True
    while grew:  # to a fixed point: a clone may sort before its origin
        grew = False
        for ds, origin in rows:
            inside = any(ds.startswith(f"{f}/") for f in found)
            cloned = clones and any(origin.startswith(f"{f}@") for f in found)
            if ds not in found and (inside or cloned):
                found.append(ds)
                grew = True
    return found


class ZfsStore:
    """A store of zfs datasets rooted at `dataset` (see the module docstring for the layout)."""

    kind = "zfs"
    independent_clones = False  # a clone depends on its origin snapshot

    def __init__(self, dataset: str, root: Path) -> None:
        self.dataset = dataset
        self.root = root
        self.tmp = TempArea(root / "tmp")
        self.gens = root / "cache-gen"
        self.heads = root / "cache-head"
        self.gens.mkdir(exist_ok=True)
        self.heads.mkdir(exist_ok=True)
        self._watchdog: Watchdog | None = None

    # -- steps -------------------------------------------------------------------------------

    def _ds(self, id: str) -> str:
        return f"{self.dataset}/result/{id}"

    def _committed(self, id: str) -> bool:
        return _exists(f"{self._ds(id)}@{SNAP}")

    def build(self, id: str, parent: str | None, fn: Callable[[Path], None]) -> Path:
        """Build in a fresh temporary dataset (a clone of `parent@snap`), then rename it to `id`.

        Commit = `readonly=on`, `@snap`, rename into `result/`: a step is in `result/` only
        once complete, and a temporary is named uniquely, so no other process can mistake it.
        """
        check_step_id(id)
        if parent is not None and not self._committed(check_step_id(parent)):
            raise StoreError(f"zfs:{self.dataset}: parent step {parent!r} not found")
        claim = self.tmp.claim(id)
        tmp = f"{self.dataset}/result-tmp/{claim.path.name}"
        claim.path.write_text(tmp)
        done = False
        try:
            if parent is None:
                _zfs("create", tmp)
            else:
                _zfs("clone", f"{self._ds(parent)}@{SNAP}", tmp)
            _mount(tmp)
            fn(self.root / "result-tmp" / claim.path.name)
            _zfs("set", "readonly=on", tmp)
            _zfs("snapshot", f"{tmp}@{SNAP}")
            _unmount(tmp)
            if _exists(self._ds(id)):
                raise StoreError(f"zfs:{self.dataset}: step {id!r} already exists")
            _rename(tmp, self._ds(id))
            done = True
        finally:
            self._finish(claim, tmp, keep=done)
        path = self.result(id)
        assert path is not None
        return path

    def result(self, id: str) -> Path | None:
        """The mounted, read-only dataset of committed step `id`, or None."""
        check_step_id(id)
        if not self._committed(id):
            return None
        path = self.root / "result" / id
        if not os.path.ismount(path):
            _mount(self._ds(id))
        return path

    def ids(self) -> list[str]:
        """Every step with an `@snap` snapshot, i.e. every committed step."""
        prefix = f"{self.dataset}/result/"
        out = _zfs("list", "-H", "-t", "snapshot", "-o", "name", "-r", f"{self.dataset}/result")
        ids = []
        for line in out.splitlines():
            name, _, snap = line.partition("@")
            rest = name[len(prefix) :]
            if name.startswith(prefix) and snap == SNAP and "/" not in rest:
                ids.append(rest)
        return sorted(ids)

    def delete(self, id: str) -> None:
        """Destroy step `id` and every step cloned from it (they depend on its snapshot)."""
        check_step_id(id)
        _destroy(self._ds(id), "-R")

    def df(self) -> float:
        """Free space of the pool, in percent (from `zfs get used,available`)."""
        pool = self.dataset.split("/", 1)[0]
        out = _zfs("get", "-Hp", "-o", "value", "used,available", pool).split()
        try:
            used, avail = int(out[0]), int(out[1])
        except (IndexError, ValueError):
            raise StoreError(f"zfs get used,available {pool}: unexpected output {out}") from None
        return 100.0 if used + avail == 0 else 100.0 * avail / (used + avail)

    def state_dir(self) -> Path:
        """The mounted `DATASET/state` dataset."""
        return self.root / "state"

    # -- caches ------------------------------------------------------------------------------

    def _head(self, esc: str) -> str | None:
        """The dataset holding cache `esc`'s latest version (`@snap`), if the cache exists."""
        try:
            head = (self.heads / esc).read_text().strip()
        except FileNotFoundError:
            return None
        return head if _exists(f"{head}@{SNAP}") else None

    def _set_head(self, esc: str, head: str | None) -> None:
        if head is None:
            (self.heads / esc).unlink(missing_ok=True)
            return
        tmp = self.heads / f".{esc}.{os.getpid()}"
        tmp.write_text(f"{head}\n")
        os.replace(tmp, self.heads / esc)

    def cache(self, name: str, user: tuple[int, int]) -> CacheLease:
        """A writable clone of cache `name`'s latest version, mounted under `cache/`.

        Datasets are never renamed (zfs-fuse refuses to rename a dataset while clones of it
        are mounted and recently used): the latest version is named by `cache-head/c-NAME`.
        """
        esc = zfs_cache_name(name)
        with locked_counter(self.gens / esc) as gen:
            head = self._head(esc) or self._create_cache(esc, user)
            gen0 = gen.get()
            claim = self.tmp.claim("cache")
            clone = f"{self.dataset}/cache/{claim.path.name}"
            claim.path.write_text(clone)
            try:
                _zfs("clone", f"{head}@{SNAP}", clone)
                _mount(clone)
                path = self.root / "cache" / claim.path.name
                os.chown(path, *user)
            except BaseException:
                self._finish(claim, clone, keep=False)
                raise
        lease = _Lease(self, esc, clone, gen0, claim)
        return CacheLease(path=path, release=lease.release)

    def _create_cache(self, esc: str, user: tuple[int, int]) -> str:
        """Create an empty version of cache `esc` owned by `user`; return its dataset."""
        claim = self.tmp.claim("new")
        ds = f"{self.dataset}/cache/{claim.path.name}"
        claim.path.write_text(ds)
        done = False
        try:
            _zfs("create", ds)
            os.chown(self.root / "cache" / claim.path.name, *user)
            _zfs("snapshot", f"{ds}@{SNAP}")
            _unmount(ds)
            self._set_head(esc, ds)
            done = True
        finally:
            self._finish(claim, ds, keep=done)
        return ds

    def _commit_cache(self, esc: str, clone: str, gen0: int) -> None:
        """Make `clone` the latest version of cache `esc` (called with its generation locked).

        `promote` hands the old version's snapshots to `clone`, so the old head can go; clones
        of the old version that other users still hold now hang off the retired snapshot
        `clone@gN`, destroyed (deferred) when the last of them is released.
        """
        old = self._head(esc)
        _unmount(clone)
        if old is not None:
            _retry_busy("promote", clone)
            _zfs("rename", f"{clone}@{SNAP}", f"{clone}@g{gen0}")
        _zfs("snapshot", f"{clone}@{SNAP}")
        self._set_head(esc, clone)
        if old is not None:
            _destroy(old, "-r")
            _zfs("destroy", "-d", f"{clone}@g{gen0}")

    def view(self, id: str) -> AbstractContextManager[Path]:
        """See `Store.view`: the step dir itself (nothing to mount)."""
        return step_dir_view(self.result(id), id)

    def watch(self) -> None:
        """See `Store.watch`: a Watchdog on the mountpoint until `close()`."""
        if self._watchdog is None:
            self._watchdog = Watchdog(self.root)

    def close(self) -> None:
        """See `Store.close`: stop the watchdog; nothing is held for result paths."""
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None

    def delete_cache(self, name: str) -> None:
        """Destroy cache `name`; CacheBusy while clones of it are in use."""
        esc = zfs_cache_name(name)
        with locked_counter(self.gens / esc) as gen:
            head = self._head(esc)
            if head is None:
                return
            origins = _zfs("list", "-H", "-o", "origin", "-r", f"{self.dataset}/cache")
            if any(o.startswith(f"{head}@") for o in origins.split()):
                raise CacheBusy(f"zfs:{self.dataset}: cache {name!r} is in use")
            gen.set(gen.get() + 1)
            self._set_head(esc, None)
            _destroy(head, "-r")

    # -- temporaries -------------------------------------------------------------------------

    def _finish(self, claim: TempClaim, ds: str, *, keep: bool) -> None:
        """Destroy `ds` unless kept, then drop the claim (left for the sweep if destroy fails)."""
        if not keep:
            try:
                _destroy(ds, "-r")
            except (CommandError, StoreError) as e:
                log.warning("zfs: could not destroy %s (left for the next open): %s", ds, e)
                os.close(claim.lock_fd)
                return
        claim.path.unlink(missing_ok=True)
        claim.release()

    def sweep(self) -> None:
        """See `Store.sweep`: the datasets of builds and cache clones of dead processes."""
        self.tmp.sweep(self._remove_leftover)

    def _remove_leftover(self, marker: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            ds = marker.read_text().strip()
            heads = {p.read_text().strip() for p in self.heads.iterdir() if p.is_file()}
            ours = ds.startswith((f"{self.dataset}/result-tmp/", f"{self.dataset}/cache/"))
            if ours and ds not in heads:
                try:
                    _destroy(ds, "-r")
                except CommandError as e:
                    # e.g. a cache commit killed just after its promote: leave it be.
                    log.warning("zfs: cannot remove leftover %s: %s", ds, e)
                    return
        marker.unlink(missing_ok=True)


class _Lease:
    """One user's clone of a cache; `release` commits it if no one committed since the clone."""

    def __init__(self, store: ZfsStore, esc: str, clone: str, gen0: int, claim: TempClaim) -> None:
        self.store, self.esc, self.clone, self.gen0, self.claim = store, esc, clone, gen0, claim
        self.release = once(self._release)

    def _release(self) -> None:
        with locked_counter(self.store.gens / self.esc) as gen:
            if gen.get() == self.gen0 and self.store._head(self.esc) is not None:
                gen.set(self.gen0 + 1)
                self.store._commit_cache(self.esc, self.clone, self.gen0)
                self.store._finish(self.claim, self.clone, keep=True)
                return
        self.store._finish(self.claim, self.clone, keep=False)


def open_backend(arg: str) -> ZfsStore:
    """Open the zfs store in dataset `arg` (`POOL` or `POOL/child`; a leading `/` is ignored)."""
    dataset = arg.strip("/")
    if not dataset:
        raise StoreError("zfs: expected zfs:DATASET, e.g. zfs:tank or zfs:tank/obuilder")
    proc = run_zfs(["zfs", "get", "-H", "-o", "value", "mountpoint", dataset])
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        why = err[-1] if err else "zfs failed"
        raise StoreError(f"zfs:{arg}: cannot open dataset {dataset!r}: {why}")
    mountpoint = proc.stdout.decode().strip()
    if not mountpoint.startswith("/"):
        raise StoreError(f"zfs:{arg}: dataset {dataset!r} is not mounted (mountpoint={mountpoint})")
    _mount(dataset)
    probe(Path(mountpoint))  # the daemon answers commands; does it answer file requests too?
    try:
        seal_root(Path(mountpoint))
    except OSError as e:
        raise StoreError(f"zfs:{arg}: cannot make {mountpoint} private: {e.strerror}") from None
    for child in ("state", "result", "result-tmp", "cache"):
        # Committed results are never a container's rootfs: a setuid program or device node a
        # step made must not work there. Builds (result-tmp) keep them, for `sudo` in a step.
        opts = ["-o", "setuid=off", "-o", "devices=off"] if child == "result" else []
        name = f"{dataset}/{child}"
        if not _exists(name):
            made = run_zfs(["zfs", "create", *opts, name])
            if made.returncode != 0 and b"already exists" not in made.stderr:
                raise CommandError(["zfs", "create", name], made.returncode, made.stderr.decode())
        _mount(name)
    return ZfsStore(dataset, Path(mountpoint))
