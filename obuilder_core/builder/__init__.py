"""The builder: build loop, step caching, single-flight across threads and processes.

`Builder.open(store)` then `builder.build(spec, context_dir, log=...)` -> `BuildResult`.
"""

from obuilder_core.builder.builder import Builder, Pruned, Rebuild, StepError, Usage
from obuilder_core.builder.context import Context
from obuilder_core.builder.result import BuildFailure, BuildResult, LogEvent, StepRecord

__all__ = [
    "BuildFailure",
    "BuildResult",
    "Builder",
    "Context",
    "LogEvent",
    "Pruned",
    "Rebuild",
    "StepError",
    "StepRecord",
    "Usage",
]
