"""Per-step resource limits: processes, memory and wall-clock time.

A step is untrusted code on a shared machine: without limits one step started 3,000 host
processes, another held 1.5 GB, and `sleep 100000` ran for ever. The sandbox enforces `Limits`
through the container's cgroup (pids, memory) and its own clock (timeout).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from obuilder_core.errors import ObuilderError

DEFAULT_PIDS = 4096
"""Processes and threads a step may have at once: far above any ordinary build, far below
what takes a machine down."""

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MIN_MEMORY = 4 << 20  # runc refuses (or the kernel kills at once) below a few MiB


class LimitError(ObuilderError):
    """A limit given by the user cannot be used (not a number, out of range)."""


@dataclass(frozen=True)
class Limits:
    """What one step may use. `None` means unlimited.

    `pids`: processes and threads at once; `memory`: bytes of RAM (swap is not allowed on top);
    `timeout`: seconds of wall-clock time from the command's start.
    """

    pids: int | None = DEFAULT_PIDS
    memory: int | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.pids is not None and self.pids < 1:
            raise LimitError(f"pids limit {self.pids}: expected at least 1")
        if self.memory is not None and self.memory < MIN_MEMORY:
            raise LimitError(f"memory limit {format_size(self.memory)}: expected at least 4 MiB")
        if self.timeout is not None and not self.timeout > 0:
            raise LimitError(f"step timeout {self.timeout:g}s: expected more than 0 seconds")


DEFAULT_LIMITS = Limits()
"""The default: the pids limit only."""


def parse_size(text: str) -> int:
    """Bytes in `256M`, `1.5G`, `512MiB`, `1048576` (binary units); LimitError if unreadable."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise LimitError(f"invalid size {text[:40]!r}: expected a number and K, M, G or T")
    return int(float(m[1]) * _UNITS[m[2].lower()])


def parse_seconds(text: str) -> float:
    """Seconds in `90`, `2.5`, `30s`, `10m`, `1h`; LimitError if unreadable."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh]?)", text.strip())
    if m is None:
        raise LimitError(f"invalid duration {text[:40]!r}: expected seconds, e.g. 90 or 10m")
    return float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m[2]]


def format_size(n: int) -> str:
    """`256 MiB`, `1.5 GiB`, `512 KiB`, `100 bytes`: the largest binary unit that fits."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.4g} {unit}"
    return f"{n} bytes"
