"""The forked helper process that lets a tree comparison use two CPUs."""

from __future__ import annotations

import errno
import os

import pytest

from obuilder_core.builder.forked import Forked
from obuilder_core.errors import ObuilderError


def _pid_and_sum(*numbers: int) -> tuple[int, int]:
    return os.getpid(), sum(numbers)


def _fail(message: str) -> None:
    raise ValueError(message)


class _Unpicklable(Exception):
    def __reduce__(self) -> object:
        raise TypeError("not picklable")


def _fail_unpicklably() -> None:
    raise _Unpicklable("odd failure")


def _exit_now() -> None:
    os._exit(3)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_calls_run_in_another_process_and_it_is_reaped() -> None:
    with Forked() as helper:
        pid = helper.pid
        assert pid is not None
        assert helper.start(_pid_and_sum, 1, 2, 3)() == (pid, 6)
        assert helper.start(_pid_and_sum)() == (pid, 0)  # one process serves many calls
    assert helper.pid is None and _gone(pid)


def test_an_exception_in_the_child_is_raised_in_the_caller() -> None:
    with Forked() as helper:
        with pytest.raises(ValueError, match=r"^bad input$"):
            helper.start(_fail, "bad input")()
        with pytest.raises(ObuilderError, match=r"^_Unpicklable: odd failure$"):
            helper.start(_fail_unpicklably)()
        assert helper.start(_pid_and_sum, 5)()[1] == 5  # still serving


def test_a_child_that_dies_is_an_error_not_a_hang() -> None:
    with Forked() as helper, pytest.raises(ObuilderError, match="exited unexpectedly"):
        helper.start(_exit_now)()


def test_a_call_to_a_dead_child_is_an_error() -> None:
    with Forked() as helper:
        with pytest.raises(ObuilderError, match="exited unexpectedly"):
            helper.start(_exit_now)()
        with pytest.raises(ObuilderError, match="exited unexpectedly"):
            helper.start(_pid_and_sum, 1)()  # its pipe is closed: no hang, no BrokenPipeError


def test_a_fork_that_fails_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The one fake here: a fork refused by the kernel (pids limit) cannot be provoked safely.
    def refuse() -> int:
        raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(os, "fork", refuse)
    with pytest.raises(ObuilderError, match=r"^Can't start a helper process: Resource temp"):
        Forked()


def test_an_error_in_the_caller_kills_a_busy_child() -> None:
    with pytest.raises(RuntimeError), Forked() as helper:
        pid = helper.pid
        assert pid is not None
        helper.start(_pid_and_sum, 1)  # a result never collected
        raise RuntimeError("caller failed")
    assert _gone(pid)
