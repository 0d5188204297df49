"""The builder: the one door into obuilder_core for the CLI, the pytest plugin and embedders.

`Builder.open(store)` then `builder.build(spec, context_dir, log=...)` -> `BuildResult`; the
store's maintenance (`delete`, `prune`, `gc`, `usage`, `delete_cache`, images) and re-running a
step (`rerun`, used by the determinism checker in `builder.verify`) go through it too. The
names a caller needs from the layers below (limits, errors, store kinds) are exported here, so
that the CLI and the plugin import only `builder` and `spec`.

Each name is imported on first use (PEP 562 `__getattr__`): `obuilder --help`, `fmt` or a
pytest session without specs need an error class or a parser, not the whole builder and
sandbox (about 200 ms of imports).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from obuilder_core.lazy import lazy_getattr

# Each name of __all__ -> the module defining it.
_EXPORTS = {
    "Builder": "obuilder_core.builder.builder",
    "Pruned": "obuilder_core.builder.builder",
    "Context": "obuilder_core.builder.context",
    "CopyPlan": "obuilder_core.builder.plans",
    "Plan": "obuilder_core.builder.plans",
    "RunPlan": "obuilder_core.builder.plans",
    "BuildFailure": "obuilder_core.builder.result",
    "BuildResult": "obuilder_core.builder.result",
    "FinalSettings": "obuilder_core.builder.result",
    "LogEvent": "obuilder_core.builder.result",
    "StepRecord": "obuilder_core.builder.result",
    "Usage": "obuilder_core.builder.usage",
    "human_size": "obuilder_core.builder.usage",
    "ObuilderError": "obuilder_core.errors",
    "ImageInfo": "obuilder_core.images",
    "parse_image_ref": "obuilder_core.images.ref",
    "Tail": "obuilder_core.log",
    "parse_cache_ref": "obuilder_core.remote.ref",
    "HOST_NETWORK": "obuilder_core.sandbox.base",
    "RunConfig": "obuilder_core.sandbox.base",
    "DEFAULT_LIMITS": "obuilder_core.sandbox.limits",
    "DEFAULT_PIDS": "obuilder_core.sandbox.limits",
    "LimitError": "obuilder_core.sandbox.limits",
    "Limits": "obuilder_core.sandbox.limits",
    "format_size": "obuilder_core.sandbox.limits",
    "parse_seconds": "obuilder_core.sandbox.limits",
    "parse_size": "obuilder_core.sandbox.limits",
    "parse_store_spec": "obuilder_core.stores",
    "store_kinds": "obuilder_core.stores",
    "default_store_spec": "obuilder_core.stores.auto",
}
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
    "parse_image_ref",
    "parse_seconds",
    "parse_size",
    "parse_store_spec",
    "store_kinds",
]


__getattr__ = lazy_getattr(globals(), _EXPORTS)

if TYPE_CHECKING:  # the same names, for the type checker
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
    from obuilder_core.images.ref import parse_image_ref
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
