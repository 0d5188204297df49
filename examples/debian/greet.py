"""A tiny program for examples/debian/greet.spec: prints a greeting for the names given."""

import sys


def greeting(name: str) -> str:
    """The greeting for `name` (the whole world when it is empty)."""
    return f"hello, {name or 'world'}!"


if __name__ == "__main__":
    print(greeting(" ".join(sys.argv[1:])))
