"""Helpers for the plugin tests."""

HELLO = """\
((from busybox)
 (shell /bin/sh -c)
 (run (shell "echo hello from the plugin test"))
)
"""
