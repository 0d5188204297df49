"""Helpers for the plugin tests."""

HELLO = """\
((from busybox)
 (shell /bin/sh -c)
 (run (shell "echo hello from the plugin test"))
)
"""


def with_workers(xdist_args: tuple[str, ...]) -> bool:
    """Whether pytest run with `xdist_args` (the `xdist_args` fixture) has xdist workers."""
    return xdist_args[0] == "-n" and xdist_args[1] != "0"


def verbose_line(nodeid: str, outcome: str, xdist_args: tuple[str, ...]) -> str:
    """The pattern of the `-v` line for `nodeid`; xdist workers' lines name the outcome first
    (`[gw0] [ 50%] PASSED a.spec::a`)."""
    return f"*{outcome} {nodeid}*" if with_workers(xdist_args) else f"{nodeid} {outcome}*"
