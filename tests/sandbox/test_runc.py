"""The runc sandbox end to end: real runc, a real busybox rootfs."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from obuilder_core.sandbox import (
    HOST_NETWORK,
    Cancelled,
    Limits,
    Mount,
    RunConfig,
    RuncSandbox,
    SecretMount,
    StepFailed,
    TimedOut,
    UnsupportedNetwork,
)
from obuilder_core.sandbox.limits import DEFAULT_LIMITS
from tests.sandbox.helpers import PATH_ENV, assert_no_leftovers, run, runc_states, sh


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its mode and size, symlinks not followed."""
    return {
        str(p.relative_to(root)): (p.lstat().st_mode, p.lstat().st_size)
        for p in sorted(root.rglob("*"))
    }


def test_output_and_exit_status(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    # stdout and stderr are one pipe: their order is kept.
    script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done; hostname; cat /etc/hosts"
    out = run(sandbox, busybox_rootfs, sh(script))
    assert out == ("out1\nerr1\nout2\nerr2\nout3\nerr3\nbuilder\n127.0.0.1 localhost builder\n")

    log = bytearray()
    with pytest.raises(StepFailed) as e:
        sandbox.run(sh("echo before; exit 3"), busybox_rootfs, log=log.extend)
    assert str(e.value) == '"/bin/sh" "-c" "echo before; exit 3" failed with exit status 3'
    assert e.value.status == 3
    assert log == b"before\n"
    assert_no_leftovers(sandbox)


def test_user_env_and_cwd(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    config = sh(
        'id -u; id -g; echo "$GREETING"; pwd; touch /root/x 2>/dev/null || echo denied',
        user=(1000, 1000),
        cwd="/home/user",
        env=(*PATH_ENV, ("GREETING", "hello world")),
    )
    # A non-root user has no capabilities: it cannot write into root's 0700 home.
    assert run(sandbox, busybox_rootfs, config) == "1000\n1000\nhello world\n/home/user\ndenied\n"
    assert run(sandbox, busybox_rootfs, sh("id -u; touch /root/x && echo ok")) == "0\nok\n"


def test_stdin_reaches_the_process(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    assert run(sandbox, busybox_rootfs, sh("cat"), stdin=b"from bytes\n") == "from bytes\n"
    data = b"x" * 300_000  # more than a pipe buffer
    out = run(sandbox, busybox_rootfs, sh("wc -c"), stdin=io.BytesIO(data))
    assert out.strip() == str(len(data))
    assert run(sandbox, busybox_rootfs, sh("cat; echo end")) == "end\n"


@pytest.fixture
def http_server() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering every GET with `reachable`; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"reachable\n")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def test_network_isolated_by_default_and_host_on_request(
    sandbox: RuncSandbox, busybox_rootfs: Path, http_server: int
) -> None:
    # (busybox 1.35's `wget -T` crashes, so no timeout option: a refusal is immediate anyway.)
    fetch = f"wget -q -O - http://127.0.0.1:{http_server}/"
    log = bytearray()
    with pytest.raises(StepFailed):
        sandbox.run(sh(fetch), busybox_rootfs, log=log.extend)
    assert b"Connection refused" in log
    # The isolated namespace still has a working loopback interface.
    assert "inet 127.0.0.1" in run(sandbox, busybox_rootfs, sh("ip addr show lo"))
    out = run(sandbox, busybox_rootfs, sh(f"{fetch}; cat /etc/resolv.conf", network=HOST_NETWORK))
    assert out.startswith("reachable\n")
    assert Path("/etc/resolv.conf").read_text() in out
    assert not (busybox_rootfs / "etc" / "resolv.conf").exists()


def test_unsupported_network_is_a_clear_error(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    with pytest.raises(UnsupportedNetwork, match=r'Unsupported network configuration \["foo"\]'):
        run(sandbox, busybox_rootfs, sh("true", network=("foo",)))
    assert_no_leftovers(sandbox)


def test_secret_readable_inside_absent_outside(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    value = b"s3cr3t-v4lue-9f8e7d"
    before, root_mtime = tree(busybox_rootfs), busybox_rootfs.stat().st_mtime_ns
    script = (  # compares digests, so the value is in neither the command nor its output
        f'test "$(sha256sum < /run/secrets/token)" = "{hashlib.sha256(value).hexdigest()}  -"'
        " && echo readable; (echo x > /run/secrets/token) 2>/dev/null || echo read-only"
    )
    config = sh(script, user=(1000, 1000), secrets=(SecretMount("/run/secrets/token", value),))
    assert value.decode() not in repr(config)
    out = run(sandbox, busybox_rootfs, config)
    assert out == "readable\nread-only\n"
    assert tree(busybox_rootfs) == before  # no /run, /run/secrets or empty token file left
    assert busybox_rootfs.stat().st_mtime_ns == root_mtime
    for path in busybox_rootfs.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert value not in path.read_bytes(), path
    assert_no_leftovers(sandbox)


def test_cache_mount_persists_between_runs(
    sandbox: RuncSandbox, busybox_rootfs: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    mount = (Mount(cache, "/var/cache/build"),)
    run(sandbox, busybox_rootfs, sh("echo 1 >> /var/cache/build/runs", mounts=mount))
    config = sh("echo 2 >> /var/cache/build/runs; cat /var/cache/build/runs", mounts=mount)
    out = run(sandbox, busybox_rootfs, config)
    assert out == "1\n2\n"
    assert (cache / "runs").read_text() == "1\n2\n"
    assert not (busybox_rootfs / "var" / "cache").exists()


def test_mount_points_do_not_remain_in_rootfs(
    sandbox: RuncSandbox, busybox_rootfs: Path, tmp_path: Path
) -> None:
    (busybox_rootfs / "etc").rename(busybox_rootfs / "etc.orig")  # runc must create /etc too
    for name in ("proc", "sys", "dev"):  # and these, for its kernel filesystems
        (busybox_rootfs / name).rmdir()
    cache = tmp_path / "cache"
    cache.mkdir()
    before = tree(busybox_rootfs)
    config = sh(
        "echo kept > /var/kept",
        network=HOST_NETWORK,
        mounts=(Mount(cache, "/var/lib/./deep/../deep/cache"),),
        secrets=(SecretMount("/run/secrets/a", b"a"), SecretMount("/run/secrets/b", b"b")),
    )
    run(sandbox, busybox_rootfs, config)
    after = tree(busybox_rootfs)
    assert after.pop("var/kept") is not None  # what the command wrote stays
    assert after == before


def test_mount_point_cleanup_never_follows_symlinks_out(
    sandbox: RuncSandbox, busybox_rootfs: Path, tmp_path: Path
) -> None:
    # An absolute symlink means a path inside the rootfs, never the host's.
    outside = tmp_path / "outside"
    (outside / "secrets").mkdir(parents=True)
    (outside / "secrets" / "token").touch()
    (busybox_rootfs / "run").symlink_to(outside)
    before_outside, before_rootfs = tree(outside), tree(busybox_rootfs)
    config = sh("cat /run/secrets/token", secrets=(SecretMount("/run/secrets/token", b"v"),))
    assert run(sandbox, busybox_rootfs, config) == "v"
    assert tree(outside) == before_outside
    assert tree(busybox_rootfs) == before_rootfs


def _wait_cancelled(
    sandbox: RuncSandbox,
    rootfs: Path,
    expected: type[Exception],
    started: threading.Event | None = None,
    limits: Limits = DEFAULT_LIMITS,
    **kwargs: Any,
) -> tuple[float, str]:
    log = bytearray()

    def collect(chunk: bytes) -> None:
        log.extend(chunk)
        if started is not None and b"started\n" in log:
            started.set()

    start = time.monotonic()
    with pytest.raises(expected):
        sandbox.run(sh("echo started; sleep 1000", limits=limits), rootfs, log=collect, **kwargs)
    return time.monotonic() - start, log.decode()


def test_cancel_kills_the_container(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    # Cancelled from another thread once the command is running (as a client's Ctrl-C is).
    started, cancel = threading.Event(), threading.Event()
    canceller = threading.Thread(target=lambda: (started.wait(), cancel.set()))
    canceller.start()
    elapsed, log = _wait_cancelled(sandbox, busybox_rootfs, Cancelled, started, cancel=cancel)
    canceller.join()
    assert elapsed < 100  # killed, not left to sleep for 1000 s
    assert log == "started\n"
    assert_no_leftovers(sandbox)


def test_timeout_kills_the_container(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    elapsed, _ = _wait_cancelled(sandbox, busybox_rootfs, TimedOut, limits=Limits(timeout=1.0))
    assert elapsed < 100
    assert_no_leftovers(sandbox)


def test_output_is_streamed_while_running(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    # The log sees "started" while the command still runs: it cancels from inside `log`.
    cancel = threading.Event()

    def log(chunk: bytes) -> None:
        if b"started" in chunk:
            cancel.set()

    with pytest.raises(Cancelled):
        sandbox.run(sh("echo started; sleep 1000"), busybox_rootfs, log=log, cancel=cancel)
    assert_no_leftovers(sandbox)


def test_concurrent_runs_from_threads(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(run, sandbox, busybox_rootfs, sh(f"echo {i}")) for i in range(4)]
    assert [r.result() for r in runs] == [f"{i}\n" for i in range(4)]
    assert_no_leftovers(sandbox)


class Paused:
    """A run of `script` that starts, says so, then waits for `resume` before it goes on."""

    def __init__(self, sandbox: RuncSandbox, rootfs: Path, script: str) -> None:
        self._started = threading.Event()
        self._log = bytearray()
        self._error: BaseException | None = None
        read_end, self._resume = os.pipe()
        stdin = os.fdopen(read_end, "rb")
        config = sh(f"echo started; read line; {script}")
        self._thread = threading.Thread(
            target=self._run, args=(sandbox, rootfs, config, stdin), daemon=True
        )
        self._thread.start()
        assert self._started.wait(timeout=60), "the run did not start"

    def _run(self, sandbox: RuncSandbox, rootfs: Path, config: RunConfig, stdin: Any) -> None:
        try:
            sandbox.run(config, rootfs, log=self._emit, stdin=stdin)
        except BaseException as e:  # shown by finish()
            self._error = e
        finally:
            self._started.set()
            stdin.close()

    def _emit(self, chunk: bytes) -> None:
        self._log += chunk
        if self._log.startswith(b"started\n"):
            self._started.set()

    def resume(self) -> None:
        os.write(self._resume, b"go\n")
        os.close(self._resume)

    def finish(self) -> str:
        """What the run logged after "started" (it must have succeeded)."""
        self._thread.join()
        assert self._error is None, f"{self._error}: {self._log.decode()}"
        return self._log.decode().removeprefix("started\n")


def test_a_run_ending_keeps_the_mount_points_of_another_over_the_same_rootfs(
    sandbox: RuncSandbox, busybox_rootfs: Path
) -> None:
    # Both runs have runc bind /etc/hosts, which the busybox rootfs lacks. The first ends while
    # the second still runs: removing the file would also unmount it in the second's container.
    assert not (busybox_rootfs / "etc" / "hosts").exists()
    first = Paused(sandbox, busybox_rootfs, "echo first")
    second = Paused(sandbox, busybox_rootfs, "cat /etc/hosts")
    first.resume()
    assert first.finish() == "first\n"
    second.resume()
    assert second.finish() == "127.0.0.1 localhost builder\n"
    assert not (busybox_rootfs / "etc" / "hosts").exists()  # removed once both had ended
    assert_no_leftovers(sandbox)


def test_fast_sync_filter(sandbox_state: Path, busybox_rootfs: Path) -> None:
    # fsync on a pipe fails with EINVAL unless the filter turns it into a no-op.
    script = "grep '^Seccomp:' /proc/self/status; sync /dev/stdin && echo synced"
    plain = RuncSandbox(sandbox_state)
    with pytest.raises(StepFailed):
        run(plain, busybox_rootfs, sh(script + " || exit 1"), stdin=b"")
    out = run(plain, busybox_rootfs, sh(script + " || true"), stdin=b"")
    assert out.startswith("Seccomp:\t2\n")  # the default profile is always there
    fast = RuncSandbox(sandbox_state, fast_sync=True)
    out = run(fast, busybox_rootfs, sh(script), stdin=b"")
    assert out == "Seccomp:\t2\nsynced\n"
    assert run(fast, busybox_rootfs, sh("sync && echo ok")) == "ok\n"


def test_killed_by_signal(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    # As the OOM killer would: SIGKILL the container's process from the host.
    def kill_when_running() -> None:
        for _ in range(300):
            for state in runc_states(sandbox.state_dir):
                if state["status"] == "running":
                    os.kill(state["pid"], signal.SIGKILL)
                    return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    with pytest.raises(StepFailed) as e:
        run(sandbox, busybox_rootfs, RunConfig(argv=("/bin/sleep", "1000")))
    killer.join()
    assert str(e.value) == '"/bin/sleep" "1000" failed with signal SIGKILL'
    assert_no_leftovers(sandbox)


def test_missing_command_is_reported_in_the_log(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    log = bytearray()
    with pytest.raises(StepFailed, match='"/no/such/program" failed with exit status'):
        sandbox.run(RunConfig(argv=("/no/such/program",)), busybox_rootfs, log=log.extend)
    assert b"/no/such/program" in log
    assert_no_leftovers(sandbox)


def test_an_error_in_log_still_cleans_up(sandbox: RuncSandbox, busybox_rootfs: Path) -> None:
    def log(chunk: bytes) -> None:
        raise RuntimeError("log is full")

    with pytest.raises(RuntimeError, match="log is full"):
        sandbox.run(sh("echo x; sleep 1000"), busybox_rootfs, log=log)
    assert_no_leftovers(sandbox)


def test_a_finished_container_is_removed_without_runc(
    sandbox_state: Path, busybox_rootfs: Path, tmp_path: Path
) -> None:
    """A container that ended is removed as `runc delete` would, without starting runc for
    it (a process per step): its cgroups go too, in every hierarchy. So is one killed by a
    cancel (runc kills it; its init is reaped)."""
    calls = tmp_path / "runc-calls"
    wrapper = tmp_path / "runc"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec runc "$@"\n')
    wrapper.chmod(0o755)
    sandbox = RuncSandbox(sandbox_state, runc=str(wrapper))
    out = run(sandbox, busybox_rootfs, sh("cat /proc/self/cgroup"))
    dirs = []
    for line in out.splitlines():  # "N:controllers:/path" (v1) or "0::/path" (v2)
        _, controllers, path = line.split(":", 2)
        hierarchy = controllers.removeprefix("name=").split(",")[0] if controllers else ""
        dirs.append(Path("/sys/fs/cgroup", hierarchy, path.lstrip("/")))
    assert dirs and all(d != Path("/sys/fs/cgroup") for d in dirs)
    assert [d for d in dirs if d.exists()] == []
    assert_no_leftovers(sandbox)
    assert [c.split()[2] for c in calls.read_text().splitlines()] == ["run"]

    cancel = threading.Event()
    started = threading.Event()

    def log(chunk: bytes) -> None:
        started.set()
        cancel.set()

    with pytest.raises(Cancelled):
        sandbox.run(sh("echo up; sleep 1000"), busybox_rootfs, log=log, cancel=cancel)
    assert started.is_set()
    assert "kill" in [c.split()[2] for c in calls.read_text().splitlines()]
    assert_no_leftovers(sandbox)
