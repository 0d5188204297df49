"""Fixtures for the plugin tests (the store with busybox is `busybox_store`, shared).

These tests use pytest's `pytester` fixture; the root conftest enables it (`"pytester"` in its
`pytest_plugins`), since pytest forbids `pytest_plugins` in a conftest below the root. The
helpers they call are in `tests/plugin/helpers.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

XDIST_MODES = {
    "xdist-on": ("-n", "2"),
    "xdist-off": ("-n", "0"),
    "xdist-disabled": ("-p", "no:xdist"),
}


@pytest.fixture(autouse=True)
def private_default_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A run that names no store uses the default store: here one of the test's own, not the
    machine's (`$XDG_CACHE_HOME/obuilder`)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "obuilder"


@pytest.fixture(params=list(XDIST_MODES), ids=list(XDIST_MODES))
def xdist_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """pytest arguments running the plugin with xdist workers, with xdist loaded but off, and
    without xdist at all (pytest-mypy's pattern): the plugin must behave the same in each."""
    pytest.importorskip("xdist", reason="needs pytest-xdist")
    return XDIST_MODES[request.param]
