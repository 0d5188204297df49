"""What a run or copy step does, as data: a build's steps carry their plan, so a step can be
executed again later (`Builder.rerun`, e.g. to check that it is deterministic).

A plan holds everything its step's execution needs and nothing of the build loop: the run
config and mounts of a `run`, the manifests and destination of a `copy`. Secret values stay
out of `repr`; they never enter a snapshot, a log or an id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from obuilder_core.manifest import Manifest
from obuilder_core.paths import CopyShape
from obuilder_core.sandbox import Limits, RunConfig
from obuilder_core.spec.model import Cache, User


@dataclass(frozen=True)
class RunPlan:
    """A `run` step: its command's config, cache mounts and secrets (`{target: value}`)."""

    config: RunConfig
    caches: tuple[Cache, ...] = ()
    secrets: Mapping[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class CopyPlan:
    """A `copy` step: the manifests of its sources, where they go and as whom.

    The sources are read from `context` (the build context dir), or from the rootfs of the
    committed step `stage` (a `(copy (from (build NAME)) ...)`), through a view of it.
    """

    items: tuple[Manifest, ...]
    dst: str
    shape: CopyShape
    user: User
    limits: Limits
    context: Path | None = None
    stage: str | None = None
    family: str | None = None
    """The copy's family (builder/incremental.py), to start from its previous result."""


Plan = RunPlan | CopyPlan
