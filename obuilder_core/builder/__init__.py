"""The builder: the one door into obuilder_core for the CLI, the pytest plugin and embedders.

`Builder.open(store)` then `builder.build(spec, context_dir, log=...)` -> `BuildResult`; the
store's maintenance (`delete`, `prune`, `gc`, `usage`, `delete_cache`, images) and re-running a
step (`rerun`, used by the determinism checker in `builder.verify`) go through it too. The
names a caller needs from the layers below (limits, errors, store kinds) are exported here, so
that the CLI and the plugin import only `builder` and `spec`.
"""

from obuilder_core.builder.builder import Builder, Pruned
from obuilder_core.builder.context import Context
from obuilder_core.builder.plans import CopyPlan, Plan, RunPlan
from obuilder_core.builder.result import (
    BuildFailure,
    BuildResult,
    FinalSettings,
    LogEvent,
    StepRecord,
)
from obuilder_core.builder.usage import Usage, human_size
from obuilder_core.errors import ObuilderError
from obuilder_core.images import ImageInfo
from obuilder_core.log import Tail
from obuilder_core.remote.ref import parse_cache_ref
from obuilder_core.sandbox.base import HOST_NETWORK, RunConfig
from obuilder_core.sandbox.limits import (
    DEFAULT_LIMITS,
    DEFAULT_PIDS,
    LimitError,
    Limits,
    format_size,
    parse_seconds,
    parse_size,
)
from obuilder_core.stores import parse_store_spec, store_kinds
from obuilder_core.stores.auto import default_store_spec

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_PIDS",
    "HOST_NETWORK",
    "BuildFailure",
    "BuildResult",
    "Builder",
    "Context",
    "CopyPlan",
    "FinalSettings",
    "ImageInfo",
    "LimitError",
    "Limits",
    "LogEvent",
    "ObuilderError",
    "Plan",
    "Pruned",
    "RunConfig",
    "RunPlan",
    "StepRecord",
    "Tail",
    "Usage",
    "default_store_spec",
    "format_size",
    "human_size",
    "parse_cache_ref",
    "parse_seconds",
    "parse_size",
    "parse_store_spec",
    "store_kinds",
]
