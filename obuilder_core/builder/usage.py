"""What a store holds, as `obuilder df` and (briefly) the pytest header line show it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """What a store holds (`Builder.usage`)."""

    store: str
    """The store as the builder was opened on it: `KIND:ARG` (e.g. `auto:/root/.cache/obuilder`)."""
    kind: str
    """The backend that holds the steps (what `auto:` chose)."""
    steps: int
    size: int
    """Bytes: the sum of the step dirs' apparent sizes (`Index.measure_missing`)."""
    caches: int
    free_pct: float


def store_line(store: str, kind: str, steps: int) -> str:
    """`btrfs:/var/cache/obuilder (1,234 steps)`; the backend too when the store's own kind
    does not say it (`auto:/x (rsync, 3 steps)`)."""
    backend = "" if store.startswith(f"{kind}:") else f"{kind}, "
    return f"{store} ({backend}{steps:,} steps)"


def human_size(n: int) -> str:
    """`1.2 MB` style sizes (powers of 1000, as docker prints them)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
