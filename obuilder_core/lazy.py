"""Names of a package imported on first use (PEP 562), so that importing the package is cheap.

A command that needs one error class or one parser should not pay for the modules behind the
rest: each module imported costs its code's execution and, above all, the dataclasses it
creates (about 0.5 ms each on Python 3.11).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(namespace: dict[str, Any], exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for the package whose globals are `namespace`: it imports
    `exports[name]` (a module name) on the first lookup of `name` and keeps the value in the
    package, so that the next lookup is a plain attribute."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
