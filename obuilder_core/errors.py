"""Errors a user can cause. Each carries a one-line message fit to print as it is."""


class ObuilderError(Exception):
    """A user-facing error: bad input, missing file, failed tool. Printed without a traceback."""
