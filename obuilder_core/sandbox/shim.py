"""Run one runc container so its stdout and stderr are the very same pipe, and report its end.

Why not plain `runc run`: in the foreground it gives the container fresh stdout and stderr
pipes and copies each into its own with a separate goroutine, so the order between the two
streams is lost ("error" lines jump ahead of the output before them). `runc run --detach`
instead lets the container inherit runc's stdio, but then runc exits and the container's init
is orphaned; the shim makes itself a child subreaper first, so the init is re-parented to it
and it can wait for it. It writes `exit N` or `signal N` to the status file; its own exit
status is runc's when runc could not start the container (runc has then written why to the
output).

The shim is a fork of the builder (`Shim.start`), not a new interpreter: a fork costs about a
millisecond, starting `python3 -I -S` about 28. Forking a process that has threads is safe
here for the reasons `builder/forked.py` gives: the child only makes system calls, closes
every descriptor but its stdio at once (another step's pipe must not stay open in it), blocks
SIGINT and SIGTERM (the builder decides when a container is killed) and leaves by `os._exit`.
runc starts with an empty signal mask and default dispositions, as from a shell.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
from dataclasses import dataclass, field

PR_SET_CHILD_SUBREAPER = 36
# Loaded in the parent: dlopen in a forked child could wait for a lock held by another thread.
_LIBC = ctypes.CDLL(None, use_errno=True)
# As subprocess restores them (Python itself ignores SIGPIPE and SIGXFSZ).
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM)
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@dataclass
class Shim:
    """A running shim: `start` forks it; `poll`, `wait` and `kill` as for a Popen."""

    pid: int
    returncode: int | None = None
    _pidfd: int = field(default=-1, repr=False)

    @classmethod
    def start(
        cls, runc: str, root: str, bundle: str, cid: str, status_file: str, *, stdin: int, out: int
    ) -> Shim:
        """Fork a shim running container `cid` of `bundle`, with `stdin` as its input and
        `out` as both stdout and stderr (the caller closes its copies of both after)."""
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; seen through the parent
            _child(runc, root, bundle, cid, status_file, stdin, out)
        return cls(pid, _pidfd=os.pidfd_open(pid))

    def poll(self) -> int | None:
        """The exit status if the shim has ended (it is then reaped), else None."""
        if self.returncode is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                os.close(self._pidfd)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the end of the shim, at most `timeout` seconds; its status, or None."""
        if self.returncode is None:
            select.select([self._pidfd], [], [], timeout)
        return self.poll()

    def kill(self) -> None:
        """SIGKILL the shim (the container itself is killed through runc)."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _child(  # pragma: no cover - runs in the forked child
    runc: str, root: str, bundle: str, cid: str, status_file: str, stdin: int, out: int
) -> None:
    status = 125
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        os.dup2(stdin, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        status = _run(runc, root, bundle, cid, status_file)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.write(2, f"obuilder shim: {e}\n".encode())
    finally:
        os._exit(status)


def _run(runc: str, root: str, bundle: str, cid: str, status_file: str) -> int:
    """Start the container and wait for it; see the module docstring."""
    if _LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl: {os.strerror(ctypes.get_errno())}")
    pid_file = os.path.join(bundle, "pid")
    base = [runc, "--root", root]
    rc = _call([*base, "run", "--detach", "--bundle", bundle, "--pid-file", pid_file, cid])
    if rc != 0:
        return rc
    with open(pid_file) as f:
        pid = int(f.read())
    status = _wait_for(pid)
    if status == -1:
        os.write(2, f"obuilder shim: lost track of container process {pid}\n".encode())
        return 125
    if os.WIFSIGNALED(status):
        report = f"signal {os.WTERMSIG(status)}"
    else:
        report = f"exit {os.WEXITSTATUS(status)}"
    with open(status_file, "w") as f:
        f.write(report)
    return 0


def _call(argv: list[str]) -> int:
    """Run `argv` with our stdio and return its exit status (128+N if killed by signal N)."""
    pid = os.posix_spawnp(argv[0], argv, os.environ, setsigmask=(), setsigdef=_DEFAULT_SIGNALS)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return 128 - code if code < 0 else code


def _wait_for(pid: int) -> int:
    """Reap children (orphans re-parented to us) until `pid` ends; return its wait status."""
    while True:
        try:
            done, status = os.wait()
        except ChildProcessError:
            return -1
        if done == pid:
            return status
