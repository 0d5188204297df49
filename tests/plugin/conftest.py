"""Fixtures for the plugin tests: spec texts, and a store with busybox for tests that build.

These tests use pytest's `pytester` fixture; the root conftest enables it (`"pytester"` in its
`pytest_plugins`), since pytest forbids `pytest_plugins` in a conftest below the root.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.root import require_root, require_tool

HELLO = """\
((from busybox)
 (shell /bin/sh -c)
 (run (shell "echo hello from the plugin test"))
)
"""


@pytest.fixture
def busybox_store(rsync_store_spec: str, busybox_oci: Path) -> str:
    """A fresh rsync store (under tmp_path) holding the local image `busybox`; needs root+runc."""
    require_root()
    require_tool("runc")
    from obuilder_core.images.local import LocalImages
    from obuilder_core.stores import open_store

    store = open_store(rsync_store_spec)
    LocalImages(store.state_dir() / "images").import_("busybox", busybox_oci)
    return rsync_store_spec
