"""Fixtures for the plugin tests (the store with busybox is `busybox_store`, shared).

These tests use pytest's `pytester` fixture; the root conftest enables it (`"pytester"` in its
`pytest_plugins`), since pytest forbids `pytest_plugins` in a conftest below the root. The
helpers they call are in `tests/plugin/helpers.py`.
"""
