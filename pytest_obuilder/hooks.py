"""Hooks that the obuilder plugin calls; implement them in a conftest.py or another plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from obuilder_core.builder import BuildResult


def pytest_obuilder_build_finished(item: pytest.Item, result: BuildResult) -> None:
    """Called after the build of a spec item, successful or not, before its outcome is decided.

    `result.id` is the final step's id (None when the build failed), `result.steps` holds one
    StepRecord (id, heading, cached, duration, log_path) per step that ran or came from the
    cache, and `result.failure` describes the failed step. Runs in the process that built the
    spec (a pytest-xdist worker under `-n`); use `item.user_properties` to reach the controller.
    """
