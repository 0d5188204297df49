"""Step logs: one process's fan-out over files, the failure tail, replay."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from obuilder_core.log import LogCancelled, SharedLog, Tail, replay


def _file(path: Path, data: bytes) -> int:
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def test_late_follower_gets_everything_then_live_output(tmp_path: Path) -> None:
    log = SharedLog()
    path = tmp_path / "run.log"
    log.add_segment(_file(path, b"HEADER one "), start=len(b"HEADER "))
    log.grew(len(b"HEADER one "))
    got: list[bytes] = []
    seen_one = threading.Event()

    def collect(data: bytes) -> None:
        got.append(data)
        seen_one.set()

    t = threading.Thread(target=log.follow, args=(collect,))
    t.start()
    seen_one.wait()  # the follower has sent what was there: the rest comes live
    with open(path, "ab") as f:
        f.write(b"two ")
    log.grew(path.stat().st_size)
    log.finish()
    t.join()
    assert b"".join(got) == b"one two "
    late: list[bytes] = []
    log.follow(late.append)  # a finished log is still sent in full
    assert b"".join(late) == b"one two "
    log.close()


def test_segments_follow_one_another(tmp_path: Path) -> None:
    # A follower sees a dead owner's partial output, then the run that took over.
    log = SharedLog()
    log.add_segment(_file(tmp_path / "a", b"start\n"))
    log.grew(6)
    log.add_segment(_file(tmp_path / "b", b"start\nend\n"))
    log.grew(10)
    log.finish()
    got: list[bytes] = []
    log.follow(got.append)
    assert b"".join(got) == b"start\nstart\nend\n"
    log.close()


def test_a_big_log_is_sent_in_chunks_never_whole(tmp_path: Path) -> None:
    log = SharedLog()
    data = os.urandom(1 << 20)
    log.add_segment(_file(tmp_path / "big", data))
    log.grew(len(data))
    log.finish()
    sizes: list[int] = []
    received = bytearray()

    def collect(chunk: bytes) -> None:
        sizes.append(len(chunk))
        received.extend(chunk)

    log.follow(collect)
    assert bytes(received) == data and max(sizes) <= 65536
    log.close()


def test_cancelled_follower_stops() -> None:
    log = SharedLog()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(LogCancelled):
        log.follow(lambda _: None, cancel)


def test_tail_keeps_only_the_end() -> None:
    tail = Tail(limit=8)
    for part in (b"0123", b"4567", b"89ab"):
        tail.write(part)
    assert tail.bytes() == b"456789ab" and tail.total == 12
    tail.write(b"x" * 20)
    assert tail.bytes() == b"x" * 8
    tail.clear()
    assert tail.bytes() == b"" and tail.total == 0


def test_replay(tmp_path: Path) -> None:
    (tmp_path / "log").write_bytes(b"saved output")
    got: list[bytes] = []
    replay(tmp_path / "log", got.append)
    replay(tmp_path / "missing", got.append)
    assert got == [b"saved output"]
