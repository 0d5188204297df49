"""A forked helper process, so that a second CPU shares work that holds the GIL.

Comparing two trees is mostly per-file Python (lstat, listxattr, open, read, hash): threads
would take turns on the GIL, a process walks and reads one tree while the caller does the other.
A fork, not a spawned interpreter: it starts in milliseconds and needs no imports.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
from collections.abc import Callable
from typing import Any, TypeVar

from obuilder_core.errors import ObuilderError

T = TypeVar("T")
_LENGTH = 8  # bytes of the length prefix of each message


class Forked:
    """A forked copy of this process that runs one call at a time for its parent.

    Calls go by pickle, so the function must be module-level. Why forking a process that may
    have threads is safe here: the child runs only the function (system calls and hashing take
    no lock another thread can hold at the fork), closes every inherited descriptor but its two
    pipes (no lock or pipe end outlives the parent's use of it), blocks SIGINT and SIGTERM (an
    interrupt is for the parent, which then kills it), and leaves by `os._exit`, so no atexit
    handler, finaliser or buffered output runs twice. Use it as a context manager.
    """

    def __init__(self) -> None:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as e:  # e.g. the pids limit reached
            for fd in (req_r, req_w, rep_r, rep_w):
                os.close(fd)
            raise ObuilderError(f"Can't start a helper process: {e.strerror}") from None
        if pid == 0:  # pragma: no cover - the child; its work is seen through the parent
            _serve(req_r, rep_w)
        os.close(req_r)
        os.close(rep_w)
        self.pid: int | None = pid
        self._requests, self._replies = req_w, rep_r
        self._waiting = False

    def start(self, fn: Callable[..., T], *args: object) -> Callable[[], T]:
        """Send `fn(*args)` to the child. The returned function waits for its result (or
        raises what the call raised there)."""
        assert not self._waiting, "one call at a time"
        self._waiting = True
        try:
            _send(self._requests, (fn, args))
        except BrokenPipeError:
            raise ObuilderError("The helper process exited unexpectedly") from None

        def result() -> T:
            try:
                ok, value = _receive(self._replies)
            except EOFError:
                raise ObuilderError("The helper process exited unexpectedly") from None
            finally:
                self._waiting = False
            if not ok:
                raise value
            return value  # type: ignore[no-any-return]

        return result

    def close(self, *, kill: bool = False) -> None:
        """Stop the child (at once if `kill`, e.g. after an error) and reap it."""
        if self.pid is None:
            return
        if kill or self._waiting:
            os.kill(self.pid, signal.SIGKILL)
        else:
            with contextlib.suppress(OSError):  # a child that died has nothing to be told
                _send(self._requests, None)
        os.close(self._requests)
        os.close(self._replies)
        os.waitpid(self.pid, 0)
        self.pid = None

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.close(kill=exc_type is not None)


def _serve(requests: int, replies: int) -> None:  # pragma: no cover - runs in the child
    """The child: answer requests until told to stop, then exit without unwinding."""
    status = 1
    try:
        # A collection would touch every object's header and so copy the parent's whole heap.
        gc.disable()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        low, high = sorted((requests, replies))
        os.closerange(0, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, os.sysconf("SC_OPEN_MAX"))
        while (request := _receive(requests)) is not None:
            fn, args = request
            try:
                reply: tuple[bool, Any] = (True, fn(*args))
            except Exception as e:  # every failure goes back to the caller
                reply = (False, e)
            try:
                _send(replies, reply)
            except Exception:  # an exception that does not pickle: its text does
                _send(replies, (False, ObuilderError(f"{type(reply[1]).__name__}: {reply[1]}")))
        status = 0
    except EOFError:
        pass  # the parent is gone
    finally:
        os._exit(status)


def _send(fd: int, value: object) -> None:
    data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    view = memoryview(len(data).to_bytes(_LENGTH, "little") + data)
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int) -> Any:
    """The next value sent on `fd`; EOFError if the other end closed it first."""
    size = int.from_bytes(_read_exactly(fd, _LENGTH), "little")
    return pickle.loads(_read_exactly(fd, size))


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
