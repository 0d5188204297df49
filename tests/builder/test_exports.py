"""The builder package's names: each is its module's own, imported on first use."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

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


# What a build whose steps are all cached has no use for: the image sources (and the registry
# client behind them), the Dockerfile converter, the remote-cache machinery.
FOR_A_MISS = (
    "concurrent.futures",
    "http.client",
    "obuilder_core.images.docker",
    "obuilder_core.images.local",
    "obuilder_core.images.registry",
    "obuilder_core.remote.ref",
    "obuilder_core.remote.registry_cache",
    "obuilder_core.spec.docker",
)


def test_a_cached_build_does_not_import_what_only_a_miss_needs(
    busybox_store: str, tmp_path: Path
) -> None:
    # Each costs every command-line build its import (docs/performance.md).
    spec = tmp_path / "base.spec"
    spec.write_text("((from busybox))")
    argv = ["build", "-f", str(spec), str(tmp_path), f"--store={busybox_store}"]
    code = (
        "import sys; from obuilder_core.cli import main; status = main(sys.argv[1:]); "
        f"print(status, [m for m in {FOR_A_MISS!r} if m in sys.modules], file=sys.stderr)"
    )
    for _ in range(2):  # the first build fetches the base image, which needs some of them
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "using the base image from the cache" in proc.stdout
    assert proc.stderr.splitlines()[-1] == "0 []"


def test_the_command_line_and_the_plugin_reach_the_core_only_through_builder_and_spec() -> None:
    # STYLE.md: the builder is the only door (with the spec language beside it).
    allowed = ("obuilder_core.builder", "obuilder_core.spec", "obuilder_core.cli")
    reached = []
    for package in ("obuilder_core/cli", "pytest_obuilder"):
        for path in sorted((REPO / package).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                for name in names:
                    if name.startswith("obuilder_core") and not name.startswith(allowed):
                        reached.append(f"{path.relative_to(REPO)}: {name}")
    assert reached == []
