"""Sandboxes that run a step's command in its rootfs (one backend: runc)."""

from obuilder_core.sandbox.base import HOST_NETWORK, Mount, RunConfig, Sandbox, SecretMount
from obuilder_core.sandbox.errors import (
    Cancelled,
    SandboxError,
    StepFailed,
    TimedOut,
    UnsupportedNetwork,
)
from obuilder_core.sandbox.limits import DEFAULT_LIMITS, DEFAULT_PIDS, LimitError, Limits
from obuilder_core.sandbox.rules import UnavailableSandbox
from obuilder_core.sandbox.runc import RuncSandbox, state_dir_for

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_PIDS",
    "HOST_NETWORK",
    "Cancelled",
    "LimitError",
    "Limits",
    "Mount",
    "RunConfig",
    "RuncSandbox",
    "Sandbox",
    "SandboxError",
    "SecretMount",
    "StepFailed",
    "TimedOut",
    "UnavailableSandbox",
    "UnsupportedNetwork",
    "state_dir_for",
]
