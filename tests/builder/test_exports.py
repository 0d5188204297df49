"""The builder package's names: each is its module's own, imported on first use."""

from __future__ import annotations

import importlib
import subprocess
import sys

import obuilder_core.builder as builder
from tests.fixtures.cli import REPO


def test_every_exported_name_is_the_defining_modules_object() -> None:
    assert sorted(builder._EXPORTS) == sorted(builder.__all__)
    for name, module in builder._EXPORTS.items():
        assert getattr(builder, name) is getattr(importlib.import_module(module), name)


def test_commands_that_build_nothing_do_not_import_the_builder() -> None:
    # `--help` and the spec commands need error classes and parsers, not the build loop.
    code = (
        "import sys; from obuilder_core.cli import main; main(sys.argv[1:]); "
        "print('obuilder_core.builder.builder' in sys.modules, file=sys.stderr)"
    )
    spec = REPO / "examples" / "hello.spec"
    for argv in (["--help"], ["fmt", str(spec)], ["dockerfile", str(spec)]):
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.endswith("False\n"), (argv, proc.stderr)
