"""pytest plugin: build specs as test items through a shared, cached builder.

The types of the `obuilder` fixture are exported for annotations:
`def test_x(obuilder: pytest_obuilder.Obuilder) -> None`.
"""

from pytest_obuilder.fixture import BuildFailed, Built, Obuilder

__all__ = ["BuildFailed", "Built", "Obuilder"]
