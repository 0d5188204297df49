"""Extension points: a third-party plugin adds a store backend and hears build events.

The plugin is a real distribution found through the `obuilder` entry-point group (a
`*.dist-info` directory on `PYTHONPATH`), so nothing in the core names it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from obuilder_core.plugins import _may_declare, hookimpl, make_plugins
from obuilder_core.stores import open_store, store_kinds
from tests.fixtures.cli import REPO, run_obuilder

PLUGIN = '''
from obuilder_core.plugins import hookimpl
from obuilder_core.stores.rsync import RsyncStore


class PlainStore(RsyncStore):
    """An rsync store under another name, as a third party would ship one."""

    kind = "plain"


@hookimpl
def obuilder_store_kinds():
    return ["plain"]


@hookimpl
def obuilder_open_store(kind, arg):
    if kind != "plain":
        return None
    from pathlib import Path
    Path(arg).mkdir(mode=0o700, parents=True, exist_ok=True)
    return PlainStore(Path(arg))
'''


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """A directory holding the `plainstore` distribution and its entry point."""
    site = tmp_path / "site"
    (site / "plainstore").mkdir(parents=True)
    (site / "plainstore" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "plainstore-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plainstore\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[obuilder]\nplain = plainstore\n")
    return site


def test_a_store_backend_from_an_entry_point(plugin_path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{plugin_path}:{REPO}"}
    store = f"plain:{tmp_path / 'store'}"
    r = run_obuilder("df", "--store", store, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"store:  plain ({store})\n")
    assert (tmp_path / "store" / "state").is_dir()


def test_entry_points_are_read_only_where_a_distribution_declares_them(
    plugin_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without one, importlib.metadata is not even imported (~40 ms of every command).
    code = "import sys; from obuilder_core.plugins import make_plugins; make_plugins(); "
    code += "print('importlib.metadata' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.stdout == "False\n", proc.stderr
    monkeypatch.syspath_prepend(str(plugin_path))
    assert "plain" in store_kinds(make_plugins())
    # A zip archive on the path cannot be looked into cheaply: importlib.metadata reads it.
    with zipfile.ZipFile(tmp_path / "dists.zip", "w") as archive:
        archive.writestr("other-1.0.dist-info/entry_points.txt", "[obuilder]\nother = other\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "dists.zip")])
    assert _may_declare("obuilder")


def test_the_built_in_backends_are_plugins_too() -> None:
    assert store_kinds(make_plugins(entry_points=False)) == [
        "btrfs",
        "zfs",
        "overlayfs",
        "rsync",
        "auto",
    ]


class Heard:
    """A plugin object recording build events."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, bool]] = []

    @hookimpl
    def obuilder_step_finished(self, step: object) -> None:
        self.steps.append((step.heading, step.cached))  # type: ignore[attr-defined]


def test_build_events_reach_a_plugin(tmp_path: Path) -> None:
    from obuilder_core.builder import Builder
    from obuilder_core.spec import parse_spec
    from tests.builder.fakes import ScriptedImages, ScriptedSandbox

    heard = Heard()
    plugins = make_plugins(entry_points=False, extra=(heard,))
    store = open_store(f"rsync:{tmp_path / 'store'}", plugins=plugins)
    builder = Builder(store, ScriptedSandbox(), [ScriptedImages()], plugins=plugins)  # type: ignore[list-item]
    spec = parse_spec('((from img) (run (shell "hi")))', "t.spec")
    try:
        for _ in range(2):
            assert builder.build(spec, tmp_path).ok
    finally:
        builder.close()
    run = "/: (run (shell hi))"  # the heading prints the op canonically
    assert heard.steps == [
        ("(from img)", False),
        (run, False),
        ("(from img)", True),
        (run, True),
    ]
