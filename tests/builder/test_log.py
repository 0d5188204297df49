"""Step logs: in-process fan-out, following a file another writer appends to, replay."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from obuilder_core.log import LogBuffer, LogCancelled, LogFile, replay, tail_file


def test_late_follower_gets_everything_then_live_output() -> None:
    buf = LogBuffer()
    buf.write(b"one ")
    got: list[bytes] = []
    t = threading.Thread(target=buf.follow, args=(got.append,))
    t.start()
    buf.write(b"two ")
    buf.finish()
    t.join(5)
    assert b"".join(got) == b"one two "
    late: list[bytes] = []
    buf.follow(late.append)  # a finished buffer is still replayed in full
    assert b"".join(late) == b"one two "


def test_cancelled_follower_stops() -> None:
    buf = LogBuffer()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(LogCancelled):
        buf.follow(lambda _: None, cancel)


def test_tail_file_follows_until_finished_even_after_unlink(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "x.log")
    log.write(b"start\n")
    fd = os.open(log.path, os.O_RDONLY)
    got: list[bytes] = []
    result: list[bool] = []
    t = threading.Thread(
        target=lambda: result.append(tail_file(fd, got.append, stop=lambda: False))
    )
    t.start()
    log.write(b"more\n")
    os.unlink(log.path)  # the owner removes it once committed; open readers still finish
    log.finish()
    t.join(5)
    os.close(fd)
    assert result == [True] and b"".join(got) == b"start\nmore\n"


def test_tail_file_gives_up_when_the_writer_is_gone(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "x.log")
    log.write(b"partial")
    fd = os.open(log.path, os.O_RDONLY)
    got: list[bytes] = []
    assert tail_file(fd, got.append, stop=lambda: True) is False
    os.close(fd)
    assert got == [b"partial"]


def test_new_run_gets_a_new_file(tmp_path: Path) -> None:
    old = LogFile(tmp_path / "x.log")
    old.finish()
    new = LogFile(tmp_path / "x.log")
    assert new.inode != old.inode
    new.finish()


def test_replay(tmp_path: Path) -> None:
    (tmp_path / "log").write_bytes(b"saved output")
    got: list[bytes] = []
    replay(tmp_path / "log", got.append)
    replay(tmp_path / "missing", got.append)
    assert got == [b"saved output"]
