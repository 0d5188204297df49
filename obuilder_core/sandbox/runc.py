"""The runc sandbox: each command runs as a fresh runc container over the step's rootfs.

`state_dir_for(store_state)` says where a store's sandbox keeps its state: under
`/run/obuilder/` (tmpfs) where it can, so that nothing of a container, a secret least of all,
is written to disk, and so that a store on a FUSE filesystem (zfs-fuse) never stands between
runc and its own state; else in the store's state dir.

Layout of `state_dir`: `runc/` is runc's `--root` (one entry per live container) and
`bundles/<id>/` holds a run's config.json, hosts file and secrets (mode 0700, never inside the
rootfs). Container ids are `obuilder-<pid>-<process start time>-<random>`, so a later process
can tell which containers and bundles belong to a process that no longer exists (the start time
guards against a recycled pid) and remove them, without touching those of live processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import resource
import secrets
import select
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO

from obuilder_core.log import Emit
from obuilder_core.process import run_cmd
from obuilder_core.sandbox import mountpoints
from obuilder_core.sandbox.base import RunConfig, SecretMount
from obuilder_core.sandbox.config import hosts_file_content, make_config
from obuilder_core.sandbox.errors import Cancelled, SandboxError, StepFailed, TimedOut
from obuilder_core.sandbox.limits import format_size
from obuilder_core.sandbox.rules import PosixRules
from obuilder_core.sandbox.shim import Shim

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.05
"""How often a running command checks for cancellation and timeout (seconds)."""
KILL_GRACE = 2.0
"""How long `runc kill` is retried before the shim itself is killed (seconds)."""
DRAIN_LIMIT = 2.0
"""How long output still buffered after a kill is read into the log (seconds)."""
NOFILE_CAP = 1 << 20
"""RLIMIT_NOFILE hard limit used when the host's is unlimited."""

_ID_RE = re.compile(r"obuilder-(\d+)-(\d+)-[0-9a-f]+")


RUN_DIR = Path("/run/obuilder")


def state_dir_for(store_state: Path) -> Path:
    """The sandbox state dir of the store whose state dir is `store_state` (see above)."""
    key = hashlib.sha256(os.fsencode(store_state.absolute())).hexdigest()[:16]
    try:
        RUN_DIR.mkdir(mode=0o700, exist_ok=True)
        if os.access(RUN_DIR, os.W_OK):
            return RUN_DIR / f"sandbox-{key}"
    except OSError:
        pass
    return store_state / "sandbox"


def process_start_time(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks since boot), or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def owner_alive(name: str) -> bool:
    """True unless `name` is one of our container ids whose creating process has gone."""
    match = _ID_RE.fullmatch(name)
    if match is None:
        return True  # not ours: never touch it
    pid, start = int(match[1]), int(match[2])
    return process_start_time(pid) == start


class RuncSandbox(PosixRules):
    """Runs commands with runc (see the module docstring and `Sandbox.run`).

    Constructing one removes the containers and bundles left in `state_dir` by processes that
    have died. Instances may be used from many threads at once, over one rootfs too: they
    keep the mount points of the runs in progress (`mountpoints.InUse`), so that one run's
    clean-up never removes a mount point another still needs.
    Every run is filtered by Docker's default seccomp profile; `fast_sync` also turns fsync and
    friends into no-ops.
    """

    def __init__(self, state_dir: Path, *, fast_sync: bool = False, runc: str = "runc") -> None:
        if shutil.which(runc) is None:
            raise SandboxError(f"{runc}: command not found (install runc)")
        self.state_dir = state_dir
        self.fast_sync = fast_sync
        self.runc = runc
        self.runc_root = state_dir / "runc"
        self.bundles = state_dir / "bundles"
        for d in (state_dir, self.runc_root, self.bundles):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._machine = os.uname().machine  # platform.machine(), without importing platform
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self._nofile_hard = NOFILE_CAP if hard == resource.RLIM_INFINITY else hard
        self._swap_accounting = swap_accounting()
        self._mount_points = mountpoints.InUse()
        self.remove_leftovers()

    def describe(self) -> str:
        """`runc VERSION`, from `runc --version`."""
        proc = run_cmd([self.runc, "--version"], check=False)
        first = proc.stdout.decode(errors="replace").partition("\n")[0]
        return first.replace(" version ", " ", 1) if proc.returncode == 0 else self.runc

    def _runc(self, *args: str) -> list[str]:
        return [self.runc, "--root", str(self.runc_root), *args]

    def remove_leftovers(self) -> list[str]:
        """Delete containers and bundles of dead processes; return the container ids removed."""
        removed = []
        for entry in sorted(self.runc_root.iterdir()):
            if owner_alive(entry.name):
                continue
            logger.warning("Removing left-over runc container %s", entry.name)
            proc = run_cmd(self._runc("delete", "--force", entry.name), check=False)
            if proc.returncode != 0 and entry.exists():
                error = proc.stderr.decode(errors="replace").strip()
                logger.warning("runc delete %s failed: %s", entry.name, error)
                continue
            removed.append(entry.name)
        for bundle in self.bundles.iterdir():
            if not owner_alive(bundle.name):
                shutil.rmtree(bundle, ignore_errors=True)  # may hold secrets
        return removed

    def run(
        self,
        config: RunConfig,
        rootfs: Path,
        *,
        log: Emit,
        stdin: bytes | BinaryIO | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Run `config` in `rootfs`; see `Sandbox.run` for the contract."""
        config.validate()
        if not rootfs.is_dir():
            raise SandboxError(f"rootfs {rootfs} is not a directory")
        if cancel is not None and cancel.is_set():
            raise Cancelled(config.argv)
        # Computed per run, not per instance: a forked child must not carry its parent's pid.
        pid = os.getpid()
        cid = f"obuilder-{pid}-{process_start_time(pid)}-{secrets.token_hex(4)}"
        bundle = self.bundles / cid
        bundle.mkdir(mode=0o700)
        try:
            hosts = bundle / "hosts"
            hosts.write_bytes(hosts_file_content(config.hostname))
            secret_files = [
                _write_secret(bundle / f"secret-{i}", s, config.user)
                for i, s in enumerate(config.secrets)
            ]
            doc = make_config(
                config,
                rootfs,
                hosts_file=hosts,
                secret_files=secret_files,
                fast_sync=self.fast_sync,
                nofile_hard=self._nofile_hard,
                machine=self._machine,
                swap_accounting=self._swap_accounting,
            )
            (bundle / "config.json").write_text(json.dumps(doc, indent=2) + "\n")
            with self._mount_points.run(rootfs, doc["mounts"]):
                try:
                    self._execute(cid, bundle, config, log, stdin, cancel)
                finally:
                    # The shim writes the status file once it has reaped the container's init.
                    self._delete(cid, stopped=(bundle / "status").exists())
        finally:
            shutil.rmtree(bundle, ignore_errors=True)

    def _execute(
        self,
        cid: str,
        bundle: Path,
        config: RunConfig,
        log: Emit,
        stdin: bytes | BinaryIO | None,
        cancel: threading.Event | None,
    ) -> None:
        argv, timeout = config.argv, config.limits.timeout
        status_file = bundle / "status"
        out_r, out_w = os.pipe()
        in_r, in_w = os.pipe() if stdin is not None else (os.open(os.devnull, os.O_RDONLY), -1)
        try:
            shim = Shim.start(self.runc, str(self.runc_root), str(bundle), cid,
                              str(status_file), stdin=in_r, out=out_w)  # fmt: skip
        except OSError as e:
            for fd in (out_r, in_w):
                if fd >= 0:
                    os.close(fd)
            raise SandboxError(f"cannot start the container's shim: {e.strerror or e}") from None
        finally:
            os.close(in_r)
            os.close(out_w)
        output = os.fdopen(out_r, "rb", buffering=0)
        feeder = None
        if stdin is not None:
            pipe = os.fdopen(in_w, "wb")
            feeder = threading.Thread(target=_feed, args=(pipe, stdin), daemon=True)
            feeder.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        stopped: type[Cancelled] | type[TimedOut] | None = None
        try:
            stopped = _pump(output, log, cancel, deadline)
            if stopped is not None:
                self._kill(cid, shim)
                _drain(output, log, time.monotonic() + DRAIN_LIMIT)
            shim.wait()
        finally:
            if shim.poll() is None:  # `log` raised, or KeyboardInterrupt: never leave it running
                self._kill(cid, shim)
            output.close()
            if feeder is not None:
                feeder.join(timeout=KILL_GRACE)
        if stopped is Cancelled:
            raise Cancelled(argv)
        if stopped is TimedOut:
            assert timeout is not None
            raise TimedOut(argv, timeout)
        assert shim.returncode is not None
        _raise_for_status(argv, status_file, shim.returncode, lambda: self._limit_hit(cid, config))

    def _limit_hit(self, cid: str, config: RunConfig) -> str | None:
        """Why the stopped container `cid` failed, if it was one of its cgroup limits."""
        paths = cgroup_paths(self.runc_root / cid / "state.json")
        limits = config.limits
        if limits.memory is not None and cgroup_event(paths, "memory", "oom_kill"):
            return f"out of memory (limit {format_size(limits.memory)})"
        if limits.pids is not None and cgroup_event(paths, "pids", "max"):
            return f"hit its limit of {limits.pids} processes"
        return None

    def _kill(self, cid: str, shim: Shim) -> None:
        """SIGKILL the container (retrying while runc is still creating it), then reap the shim."""
        give_up = time.monotonic() + KILL_GRACE
        while shim.poll() is None and time.monotonic() < give_up:
            run_cmd(self._runc("kill", cid, "KILL"), check=False)
            shim.wait(timeout=0.2)
        if shim.poll() is None:
            logger.warning("runc kill %s did not stop the container; killing its shim", cid)
            shim.kill()
            shim.wait()

    def _delete(self, cid: str, *, stopped: bool = False) -> None:
        """Remove container `cid` (stopped, or still running after an error) if runc knows it.

        A container known to have `stopped` (its init was reaped) is removed as `runc delete`
        would, without starting runc (~10 ms a step): its cgroups, then its state dir. Only
        if that fails (e.g. a process of it still exiting keeps a cgroup busy) is runc asked.
        """
        state = self.runc_root / cid
        if not state.exists():
            return
        if stopped and _remove_stopped(state):
            return
        proc = run_cmd(self._runc("delete", "--force", cid), check=False)
        if proc.returncode != 0 and (self.runc_root / cid).exists():
            logger.warning("runc delete %s failed: %s", cid, proc.stderr.decode().strip())


def _raise_for_status(
    argv: tuple[str, ...],
    status_file: Path,
    shim_status: int,
    limit_hit: Callable[[], str | None],
) -> None:
    """Raise StepFailed unless the container's process exited with 0, naming the limit it
    hit if `limit_hit()` finds one.

    Without a status file runc could not start the container (it wrote why into the
    log); its exit status is then reported, as `runc run` would have.
    """
    try:
        kind, _, number = status_file.read_text().partition(" ")
    except FileNotFoundError:
        raise StepFailed(argv, status=shim_status) from None
    if kind == "signal":
        raise StepFailed(argv, signum=int(number), reason=limit_hit())
    if int(number) != 0:
        raise StepFailed(argv, status=int(number), reason=limit_hit())


def _remove_stopped(state: Path) -> bool:
    """Remove the cgroups and state dir of the stopped container whose runc state dir is
    `state`; False if a cgroup could not be removed (then nothing else was)."""
    for path in sorted(set(cgroup_paths(state / "state.json").values())):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            continue  # v1 controllers sharing a hierarchy share the directory
        except OSError:
            return False
    shutil.rmtree(state, ignore_errors=True)
    return not state.exists()


def cgroup_paths(state_file: Path) -> dict[str, str]:
    """The cgroup directories of a container, from runc's `state.json` (subsystem -> path;
    the key is "" on cgroup v2). Empty if runc did not record them."""
    try:
        paths = json.loads(state_file.read_text()).get("cgroup_paths") or {}
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in paths.items()}


def cgroup_event(paths: dict[str, str], controller: str, event: str) -> bool:
    """Whether the cgroup's `controller` counted `event` (e.g. memory "oom_kill", pids "max").

    cgroup v2 keeps them in `memory.events` / `pids.events` of the one unified directory;
    v1 in the controller's own hierarchy (`memory.oom_control`, `pids.events`).
    """
    if controller in paths:  # v1
        name = "memory.oom_control" if controller == "memory" else f"{controller}.events"
        file = Path(paths[controller]) / name
    elif "" in paths:  # v2
        file = Path(paths[""]) / f"{controller}.events"
    else:
        return False
    try:
        lines = file.read_text().splitlines()
    except OSError:
        return False
    counts = dict(line.split(maxsplit=1) for line in lines if " " in line)
    return counts.get(event, "0").strip() not in ("", "0")


def swap_accounting() -> bool:
    """Whether memory limits can also forbid swap here: cgroup v2, or v1 with memsw files."""
    root = Path("/sys/fs/cgroup")
    return (root / "cgroup.controllers").exists() or (
        root / "memory" / "memory.memsw.limit_in_bytes"
    ).exists()


def _write_secret(path: Path, secret: SecretMount, user: tuple[int, int]) -> Path:
    """Write a secret readable only by the step's user (the bundle dir is 0700 on the host)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    try:
        os.write(fd, secret.value)
        os.fchown(fd, *user)
    finally:
        os.close(fd)
    return path


def _feed(pipe: IO[bytes], stdin: bytes | BinaryIO) -> None:
    """Copy `stdin` into the container's stdin, then close it (EOF)."""
    try:
        if isinstance(stdin, bytes | bytearray | memoryview):
            pipe.write(stdin)
        else:
            shutil.copyfileobj(stdin, pipe)
    except (BrokenPipeError, ValueError):
        pass  # the command exited (or was killed) without reading everything
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


def _readable(fd: int, wait: float) -> bool:
    """True if `fd` has data or EOF within `wait` seconds (poll: fds may exceed FD_SETSIZE)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(wait * 1000))


def _pump(
    out: IO[bytes],
    log: Emit,
    cancel: threading.Event | None,
    deadline: float | None,
) -> type[Cancelled] | type[TimedOut] | None:
    """Copy output to `log` until EOF (None) or until cancelled / timed out (which one)."""
    fd = out.fileno()
    while True:
        if cancel is not None and cancel.is_set():
            return Cancelled
        if deadline is not None and time.monotonic() >= deadline:
            return TimedOut
        if _readable(fd, POLL_INTERVAL):
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            log(chunk)


def _drain(out: IO[bytes], log: Emit, until: float) -> None:
    """Log what is left in the pipe after a kill, giving up at `until`."""
    fd = out.fileno()
    while time.monotonic() < until:
        if _readable(fd, POLL_INTERVAL):
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            log(chunk)
