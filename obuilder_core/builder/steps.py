"""What each kind of step does inside its temporary step dir: fetch a base, run, copy.

Each function fills `tmp` (a writable clone of the parent step dir, or an empty dir for a base
image) and raises on failure; the store commits `tmp` only if it returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import math
import os
import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from obuilder_core.builder.incremental import Edit, save_listing
from obuilder_core.copy_host import HostSink, writes_on_host
from obuilder_core.copy_tar import (
    CopySink,
    CopyStreamError,
    Listing,
    missing_dirs,
    send_copy,
    write_copy_tar,
)
from obuilder_core.images import ImageConfig, ImageNotFound, ImageSource, fetch_image
from obuilder_core.in_root import remove_in_root
from obuilder_core.log import ByteCounter, Emit, Progress
from obuilder_core.manifest import Manifest
from obuilder_core.paths import CopyShape
from obuilder_core.sandbox import (
    DEFAULT_LIMITS,
    Cancelled,
    Limits,
    Mount,
    RunConfig,
    Sandbox,
    SecretMount,
    TimedOut,
)
from obuilder_core.spec.model import Cache, UnixUser, User
from obuilder_core.stores import CacheLease, Store

log = logging.getLogger(__name__)

IMAGE_CONFIG = "image.json"


def fetch_base(
    tmp: Path,
    image: str,
    write: Emit,
    sources: Sequence[ImageSource],
    store: str,
    progress: Progress | None = None,
) -> None:
    """Write image `image` as `tmp/rootfs` and its config as `tmp/image.json`. An image that
    no source has fails saying how to import it into `store` (`KIND:ARG`)."""
    rootfs = tmp / "rootfs"
    rootfs.mkdir(mode=0o755, exist_ok=True)
    try:
        config = fetch_image(image, rootfs, write, sources=sources, progress=progress)
    except ImageNotFound as e:
        how = f"obuilder image import {shlex.quote(image)} PATH --store={shlex.quote(store)}"
        raise ImageNotFound(f"{e}; import it with: {how}") from None
    (tmp / IMAGE_CONFIG).write_text(config.to_json())


def read_image_config(step_dir: Path) -> ImageConfig:
    """The image config saved by `fetch_base` in a base step dir (empty if missing)."""
    try:
        return ImageConfig.from_json((step_dir / IMAGE_CONFIG).read_text())
    except FileNotFoundError:
        return ImageConfig()


def run_command(
    tmp: Path,
    config: RunConfig,
    caches: Sequence[Cache],
    secrets: Mapping[str, bytes],
    *,
    store: Store,
    sandbox: Sandbox,
    write: Emit,
    cancel: threading.Event,
) -> None:
    """Run `config` in `tmp/rootfs` with the cache mounts `caches` (after the config's own
    mounts) and secrets `{target: value}`.

    Every cache is released afterwards (most recent first), whether the command succeeded,
    failed or was cancelled.
    """
    leases: list[CacheLease] = []
    try:
        mounts = []
        for c in caches:
            lease = store.cache(c.id, config.user)
            leases.append(lease)
            mounts.append(Mount(lease.path, c.target))
        secret_mounts = tuple(SecretMount(t, v) for t, v in secrets.items())
        config = dataclasses.replace(
            config, mounts=(*config.mounts, *mounts), secrets=secret_mounts
        )
        sandbox.run(config, tmp / "rootfs", log=write, cancel=cancel)
    finally:
        for lease in reversed(leases):
            try:
                lease.release()
            except Exception:
                log.exception("releasing cache %s failed", lease.path)


class _Counting:
    """The copy's pipe, counting what is written to it. (The tar writer uses `write` and
    `flush` only.)"""

    def __init__(self, out: BinaryIO, counter: ByteCounter) -> None:
        self._out = out
        self._counter = counter

    def write(self, data: bytes) -> int:
        written = self._out.write(data)
        self._counter.add(written)
        return written

    def flush(self) -> None:
        self._out.flush()


def copy_files(
    tmp: Path,
    src_dir: Path,
    items: Sequence[Manifest],
    dst: str,
    shape: CopyShape,
    user: User,
    *,
    sandbox: Sandbox,
    write: Emit,
    cancel: threading.Event,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
    edit: Edit | None = None,
) -> None:
    """Write the copy into `tmp/rootfs` and save the listing of what it wrote; `progress` gets
    the bytes sent so far after each MiB. With `edit`, `tmp` is a clone of the previous result
    of the copy's family: what that copy wrote and this one does not goes first, and only
    changes are sent.

    The host writes the members itself where it can (copy_host.py), else it streams the
    copy's tar into the sandbox's unpacker (`tar -xf -` as root, for runc). Either way paths
    resolve inside the container, so symlinks planted by earlier steps never
    lead outside the rootfs (nor do the removals: `in_root`).
    """
    rootfs = tmp / "rootfs"
    if edit is None:
        create, previous = missing_dirs(rootfs, dst, shape), None
    else:
        for member in edit.remove:
            remove_in_root(rootfs, member)
        create, previous = list(edit.create_dirs), edit.previous
    what = _Copy(src_dir, items, dst, shape, create, previous)
    listing = None
    if writes_on_host(user):
        listing = _write_on_host(what, rootfs, user, cancel, limits, progress)
    if listing is None:
        listing = _unpack_in_sandbox(what, rootfs, user, sandbox, write, cancel, limits, progress)
    save_listing(tmp, listing)


@dataclass(frozen=True)
class _Copy:
    """What `copy_files` sends: `copy_tar.send_copy`'s arguments."""

    src_dir: Path
    items: Sequence[Manifest]
    dst: str
    shape: CopyShape
    create_dirs: Sequence[str]
    previous: Listing | None

    def send(self, sink: CopySink) -> Listing:
        return send_copy(
            sink,
            self.src_dir,
            self.items,
            self.dst,
            self.shape,
            create_dirs=self.create_dirs,
            previous=self.previous,
        )

    def write_tar(self, out: BinaryIO, user: User) -> Listing:
        return write_copy_tar(
            out,
            self.src_dir,
            self.items,
            self.dst,
            self.shape,
            user,
            create_dirs=self.create_dirs,
            previous=self.previous,
        )


def _write_on_host(
    what: _Copy,
    rootfs: Path,
    user: UnixUser,
    cancel: threading.Event,
    limits: Limits,
    progress: Progress | None,
) -> Listing | None:
    """The copy written by the host (copy_host.py), or None if this kernel has no openat2."""
    check = deadline_check(("copy", what.dst), cancel, limits)
    try:
        sink = HostSink(rootfs, user, check, ByteCounter(progress))
    except OSError as e:
        if e.errno != errno.ENOSYS:
            raise
        log.info("no openat2 (Linux < 5.6): copies are unpacked in the sandbox")
        return None
    with sink:
        return what.send(sink)


def deadline_check(
    argv: tuple[str, ...],
    cancel: threading.Event,
    limits: Limits,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[], None]:
    """The check the host's copy makes before each member and MiB of data: Cancelled once
    `cancel` is set, TimedOut once the step has run longer than `limits.timeout` (as the
    sandbox would)."""
    timeout = limits.timeout
    deadline = math.inf if timeout is None else clock() + timeout

    def check() -> None:
        if cancel.is_set():
            raise Cancelled(argv)
        if clock() > deadline:
            assert timeout is not None  # the deadline is finite
            raise TimedOut(argv, timeout)

    return check


def _unpack_in_sandbox(
    what: _Copy,
    rootfs: Path,
    user: User,
    sandbox: Sandbox,
    write: Emit,
    cancel: threading.Event,
    limits: Limits,
    progress: Progress | None,
) -> Listing:
    """The copy's tar stream fed to the sandbox's unpacker. If the stream failed (e.g. a
    source changed since its manifest), the step fails whatever tar's exit status: a stream
    cut between members looks complete."""
    listing: list[Listing] = []
    r, w = os.pipe()
    reader, writer = os.fdopen(r, "rb"), os.fdopen(w, "wb")
    out = writer if progress is None else cast(BinaryIO, _Counting(writer, ByteCounter(progress)))
    failure: list[BaseException] = []

    def send() -> None:
        try:
            with writer:
                listing.append(what.write_tar(out, user))
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=send, name="copy-tar", daemon=True)
    thread.start()
    config = sandbox.unpack_config(limits)
    try:
        sandbox.run(config, rootfs, log=write, stdin=reader, cancel=cancel)
    except BaseException:
        with contextlib.suppress(OSError):
            reader.close()  # unblocks the sender
        thread.join()
        real = [e for e in failure if not isinstance(e, CopyStreamError)]
        if real:
            raise real[0] from None
        raise
    with contextlib.suppress(OSError):
        reader.close()
    thread.join()
    if failure:
        raise failure[0]
    return listing[0]
