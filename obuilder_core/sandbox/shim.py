"""Run one runc container so its stdout and stderr are the very same pipe, and report its end.

Usage: python3 -I -S shim.py RUNC RUNC_ROOT BUNDLE ID STATUS_FILE

Why not plain `runc run`: in the foreground it gives the container fresh stdout and stderr
pipes and copies each into its own with a separate goroutine, so the order between the two
streams is lost ("error" lines jump ahead of the output before them). `runc run --detach`
instead lets the container inherit runc's stdio, but then runc exits and the container's init
is orphaned; this shim makes itself a child subreaper first, so the init is re-parented to it
and it can wait for it. It writes `exit N` or `signal N` to STATUS_FILE; its own exit status
is runc's when runc could not start the container (runc has then written why to stderr).

Standard library only (not even `subprocess`), run with `-I -S`, so it starts fast.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36


def call(argv: list[str]) -> int:
    """Run `argv` with our stdio and return its exit status (128+N if killed by signal N)."""
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return 128 - code if code < 0 else code


def wait_for(pid: int) -> int:
    """Reap children (orphans re-parented to us) until `pid` ends; return its wait status."""
    while True:
        try:
            done, status = os.wait()
        except ChildProcessError:
            return -1
        if done == pid:
            return status


def main(argv: list[str]) -> int:
    """Start the container and wait for it; see the module docstring."""
    runc, root, bundle, cid, status_file = argv
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"obuilder shim: prctl: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 125
    pid_file = os.path.join(bundle, "pid")
    base = [runc, "--root", root]
    rc = call([*base, "run", "--detach", "--bundle", bundle, "--pid-file", pid_file, cid])
    if rc != 0:
        return rc
    with open(pid_file) as f:
        pid = int(f.read())
    status = wait_for(pid)
    if status == -1:
        print(f"obuilder shim: lost track of container process {pid}", file=sys.stderr)
        return 125
    if os.WIFSIGNALED(status):
        report = f"signal {os.WTERMSIG(status)}"
    else:
        report = f"exit {os.WEXITSTATUS(status)}"
    with open(status_file, "w") as f:
        f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
