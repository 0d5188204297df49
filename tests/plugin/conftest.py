"""Fixtures for the plugin tests (the store with busybox is `busybox_store`, shared).

These tests use pytest's `pytester` fixture; the root conftest enables it (`"pytester"` in its
`pytest_plugins`), since pytest forbids `pytest_plugins` in a conftest below the root.
"""

from __future__ import annotations

HELLO = """\
((from busybox)
 (shell /bin/sh -c)
 (run (shell "echo hello from the plugin test"))
)
"""
