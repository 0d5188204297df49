"""Build-loop logic with a scripted sandbox and image source on a real rsync store.

The end-to-end tests (runc) show each behaviour for real; these pin down what is hard to
provoke there: exact RunConfigs, a step that is still being cancelled when a new client asks,
a sandbox that crashes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from obuilder_core.builder import Builder
from obuilder_core.sandbox import RunConfig
from obuilder_core.sandbox.rules import POSIX_SHELL
from obuilder_core.spec import parse_spec
from obuilder_core.stores import open_store
from tests.builder.fakes import ScriptedImages, ScriptedSandbox
from tests.builder.helpers import collect, ok, text
from tests.builder.wrappers import ChangeBeforeCopy
from tests.fixtures.root import require_tool


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[Builder, ScriptedSandbox]]:
    require_tool("rsync")
    sandbox = ScriptedSandbox()
    builder = Builder(
        open_store(f"rsync:{tmp_path / 'store'}"),
        sandbox,  # type: ignore[arg-type]
        [ScriptedImages()],
    )  # type: ignore[list-item]
    yield builder, sandbox
    builder.close()


def _spec(*ops: str) -> object:
    return parse_spec(f"((from img) {' '.join(ops)})", "t.spec")


def test_context_env_order_user_workdir_and_default_shell(
    fake: tuple[Builder, ScriptedSandbox], tmp_path: Path
) -> None:
    builder, sandbox = fake
    ok(
        builder.build(
            _spec(
                "(env A x)",
                "(env PATH /p)",
                "(workdir a)",
                "(workdir ../b/./c)",
                "(user (uid 1) (gid 2))",
                '(run (shell "hi"))',
            ),
            tmp_path,
        )
    )
    config = sandbox.configs[-1]
    assert config.env == (("PATH", "/p"), ("A", "x"))  # image env after; new binding first
    assert config.cwd == "/b/c"
    assert config.user == (1, 2)
    assert config.argv == (*POSIX_SHELL, "hi")  # the sandbox's default shell
    assert config.network == () and config.hostname == "builder"


def test_unknown_image_and_crashing_sandbox_are_failures(
    fake: tuple[Builder, ScriptedSandbox], tmp_path: Path
) -> None:
    builder, _ = fake
    r = builder.build(parse_spec("((from nope))", "t.spec"), tmp_path)
    assert r.failure is not None and r.failure.heading == "(from nope)"
    assert "no image nope" in r.failure.message
    r = builder.build(_spec('(run (shell "boom"))'), tmp_path)
    assert r.failure is not None and r.failure.message == "RuntimeError: boom"


def test_copy_errors_name_the_step(fake: tuple[Builder, ScriptedSandbox], tmp_path: Path) -> None:
    builder, _ = fake
    r = builder.build(_spec("(copy (src missing) (dst /x))"), tmp_path)
    assert r.failure is not None
    assert r.failure.heading == "/: (copy (src missing) (dst /x))"
    assert r.failure.message == 'Source path "missing" not found'


def test_client_arriving_while_a_step_is_cancelled_waits_and_starts_again(
    fake: tuple[Builder, ScriptedSandbox], tmp_path: Path
) -> None:
    builder, sandbox = fake
    s = _spec('(run (shell "block"))')
    ok(builder.build(_spec(), tmp_path))
    sandbox.may_finish_cancelling.clear()  # the step will stay "being cancelled"
    cancel_a = threading.Event()
    a_done: list[object] = []
    ta = threading.Thread(target=lambda: a_done.append(builder.build(s, tmp_path, cancel=cancel_a)))
    ta.start()
    _wait(lambda: len(sandbox.configs) == 1)
    cancel_a.set()
    ta.join()
    assert a_done and a_done[0].failure is not None  # type: ignore[attr-defined]
    # The sandbox is still cancelling: a new client waits for it, then runs the step again.
    events, log = collect()
    cancel_b = threading.Event()
    tb = threading.Thread(target=lambda: builder.build(s, tmp_path, log=log, cancel=cancel_b))
    tb.start()
    _wait(lambda: "Waiting for previous build to finish cancelling" in text(events))
    assert len(sandbox.configs) == 1
    sandbox.may_finish_cancelling.set()
    _wait(lambda: len(sandbox.configs) == 2)
    cancel_b.set()
    tb.join()
    _wait(lambda: not builder.in_progress())


def test_cancelled_before_start_runs_nothing(
    fake: tuple[Builder, ScriptedSandbox], tmp_path: Path
) -> None:
    builder, sandbox = fake
    cancel = threading.Event()
    cancel.set()
    r = builder.build(_spec('(run (shell "hi"))'), tmp_path, cancel=cancel)
    assert r.failure is not None and r.failure.message == "Cancelled at user's request"
    assert sandbox.configs == []


def _wait(cond: object, timeout: float = 60.0) -> None:
    """Wait for a condition another thread makes true (the timeout only catches a hang)."""
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


class DrainingTar(ScriptedSandbox):
    """A `tar` that reads its whole stream and exits 0, whatever the stream held."""

    def run(
        self,
        config: RunConfig,
        rootfs: Path,
        *,
        log: object,
        stdin: object = None,
        cancel: threading.Event | None = None,
    ) -> None:
        if config.argv[0] != "tar":
            return super().run(config, rootfs, log=log, stdin=stdin, cancel=cancel)
        self.configs.append(config)
        assert config.user == (0, 0) and config.cwd == "/"
        while stdin.read(65536):  # type: ignore[attr-defined]
            pass


@pytest.mark.parametrize(
    "content", [b"changed after hashing\n", b"Original\n"], ids=["size", "same-size"]
)
def test_copy_fails_when_a_source_changed_since_hashing_even_if_tar_succeeds(
    tmp_path: Path, content: bytes
) -> None:
    require_tool("rsync")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_bytes(b"original\n")
    store = ChangeBeforeCopy(open_store(f"rsync:{tmp_path / 'store'}"), ctx / "f", content)
    builder = Builder(store, DrainingTar(), [ScriptedImages()])  # type: ignore[arg-type,list-item]
    try:
        ok(builder.build(_spec(), ctx))  # the base image, built before anything changes
        r = builder.build(_spec("(copy (src f) (dst /f))"), ctx)
        assert r.failure is not None
        assert r.failure.message == 'Source file "f" changed during the copy; try again'
        assert len(r.steps) == 1  # only the base image was saved
        assert store.ids() == [r.steps[0].id]
    finally:
        builder.close()


def test_the_sandbox_decides_which_users_a_step_may_run_as(
    fake: tuple[Builder, ScriptedSandbox], tmp_path: Path
) -> None:
    builder, sandbox = fake
    r = builder.build(_spec("(user (name opam))", '(run (shell "hi"))'), tmp_path)
    assert r.failure is not None
    assert r.failure.message == ("user 'opam': this sandbox needs a numeric (user (uid U) (gid G))")
    assert sandbox.configs == []  # nothing ran


def _healthcheck_builder(tmp_path: Path, act_as: str) -> tuple[Builder, ScriptedSandbox]:
    require_tool("rsync")
    sandbox = ScriptedSandbox(act_as={"echo healthcheck": act_as})
    builder = Builder(
        open_store(f"rsync:{tmp_path / 'store'}"),
        sandbox,  # type: ignore[arg-type]
        [ScriptedImages(("busybox",))],  # type: ignore[list-item]
    )
    return builder, sandbox


@pytest.mark.parametrize(
    ("act_as", "problem"),
    [
        ("echo healthcheck", None),
        ("fail", '"/bin/sh" "-c" "echo healthcheck" failed with exit status 1'),
    ],
    ids=["passes", "fails"],
)
def test_healthcheck_runs_echo_in_busybox_every_time(
    tmp_path: Path, act_as: str, problem: str | None
) -> None:
    builder, sandbox = _healthcheck_builder(tmp_path, act_as)
    try:
        for _ in range(2):
            got = builder.healthcheck()
            if problem is None:
                assert got is None
            else:  # why, then the build's log
                assert got is not None and got.splitlines()[0] == problem
                assert got.endswith('/: (run (shell "echo healthcheck"))')
        assert [c.argv for c in sandbox.configs] == [("/bin/sh", "-c", "echo healthcheck")] * 2
        assert len(builder.store.ids()) == 1  # the base image; the echo step is never kept
    finally:
        builder.close()


def test_healthcheck_gives_up_after_its_timeout(tmp_path: Path) -> None:
    builder, _ = _healthcheck_builder(tmp_path, "block")
    try:
        problem = builder.healthcheck(timeout=0.0)  # the step blocks until cancelled
        assert problem is not None and problem.splitlines()[0] == "Timeout running healthcheck"
        assert builder.in_progress() == []
    finally:
        builder.close()


def test_image_sources_are_made_on_the_first_missing_base_and_can_be_replaced(
    tmp_path: Path,
) -> None:
    require_tool("rsync")
    made: list[int] = []

    def sources() -> list[ScriptedImages]:
        made.append(1)
        return [ScriptedImages()]

    # As Builder.open gives them: a build whose base is cached needs no image source.
    store = open_store(f"rsync:{tmp_path / 'store'}")
    builder = Builder(store, ScriptedSandbox(), sources)  # type: ignore[arg-type]
    try:
        spec = parse_spec("((from img))", "t.spec")
        assert builder.build(spec, tmp_path).failure is None
        assert builder.build(spec, tmp_path).failure is None  # cached: no source asked
        assert made == [1]
        builder.sources = [ScriptedImages(("other",))]  # type: ignore[list-item]
        assert builder.build(parse_spec("((from other))", "t.spec"), tmp_path).failure is None
    finally:
        builder.close()
