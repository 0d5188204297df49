"""overlayfs store (`overlayfs:/path`): each step is the upper layer of an overlay on its parent.

Layout under ROOT:

- `result/ID/layer/`: the step's own changes (an overlay upper dir: whiteouts, opaque dirs).
  `result/ID/lower` names the step whose layer stack lies below (absent for a base layer or a
  flattened one); `result/ID/parent` names the logical parent. Committed = renamed into
  `result/` in one `rename(2)`; layers are never written again.
- `view/ID/`: the merged, read-only view of a layered step that `with view(ID)` mounts for its
  block (an overlay mount without upper dir, `ro,nosuid,nodev`); a base layer's view is its
  `layer/` itself. `result(ID)` mounts nothing: it is `result/ID/layer`, with the step's own
  `log`. Each process using a view holds a shared flock on `view/.ID.use` while in the block; the
  last one out unmounts it (a sweep unmounts those of dead processes), so mounts never pile up.
- `tmp/NAME/`: in-flight builds (`upper/`, `work/`, `merged/`), claimed with a flock'd lock;
  a re-open unmounts and removes those whose owner died.
- `cache/c-NAME/`: a cache's latest version, a plain directory; `cache-tmp/NAME/`: users'
  copies; `cache-gen/c-NAME`: the on-disk generation counter (first release wins).
- `state/`: mutable state (`state_dir`).

A parent chain deeper than `MAX_DEPTH` layers is flattened: the new step starts from a full copy
of its parent's view and becomes a base layer, so lowerdir stacks stay bounded.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from obuilder_core.locks import file_lock
from obuilder_core.process import run_cmd
from obuilder_core.stores.base import CacheLease, StoreError
from obuilder_core.stores.disk import remove_tree, seal_root, statvfs_free_pct
from obuilder_core.stores.names import check_step_id, escape_cache_name
from obuilder_core.stores.temps import TempArea, locked_counter, once

MAX_DEPTH = 30  # layers in one overlay stack; the kernel allows 500, option strings ~4 KB
_MAX_OPTS = 3500  # bytes of mount options (one page is the hard limit)
_RENAME_EXCHANGE = 2


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below `root` (from /proc/self/mountinfo), deepest first."""
    prefix = str(root).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == str(root) or point.startswith(prefix):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _umount(path: Path) -> None:
    """Unmount `path`; lazily if busy, so no mount is ever left behind."""
    if run_cmd(["umount", str(path)], check=False).returncode != 0:
        run_cmd(["umount", "-l", str(path)], check=False)


def _remove(path: Path) -> None:
    """Unmount everything under `path`, then delete it."""
    for point in mounts_under(path):
        _umount(point)
    remove_tree(path)


def _open_lock(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _same_file(fd: int, path: Path) -> bool:
    """Whether `fd` is still the file at `path` (lock files are replaced when views go)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two paths (renameat2 RENAME_EXCHANGE); two renames if unsupported."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    at_fdcwd = -100
    rc = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return
    spare = a.with_name(a.name + ".old")
    os.rename(b, spare)
    os.rename(a, b)
    os.rename(spare, a)


class OverlayStore:
    """Steps as overlay layers under `root` (see the module docstring for the layout)."""

    kind = "overlayfs"
    independent_clones = False  # a step's rootfs is layered on its parent's

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("result", "view", "cache", "cache-gen", "state"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.tmp = TempArea(root / "tmp")
        self.cache_tmp = TempArea(root / "cache-tmp")
        # id -> (fd of view/.ID.use, flock'd shared; users in this process)
        self._views: dict[str, tuple[int, int]] = {}
        self._views_lock = threading.Lock()

    # -- layers ------------------------------------------------------------------------------

    def _dir(self, id: str) -> Path:
        return self.root / "result" / check_step_id(id)

    def _stack(self, id: str) -> list[str]:
        """The ids whose layers make up `id`'s tree, topmost first."""
        stack = [id]
        while (lower := self._dir(stack[-1]) / "lower").exists():
            stack.append(lower.read_text().strip())
        return stack

    def _lowerdir(self, stack: list[str]) -> str:
        # Relative to result/ (mount runs there) to keep the option string short.
        return ":".join(f"{i}/layer" for i in stack)

    def _mount(self, stack: list[str], target: Path, upper: Path | None = None) -> None:
        """Mount `stack` at `target`: writable over `upper` for a build, else a read-only view.

        A view is also `nosuid,nodev`: a setuid program or device node a step made is never
        usable through it (a build's own mount keeps them, so `sudo` works inside a step).
        """
        opts = f"lowerdir={self._lowerdir(stack)}"
        if upper is not None:
            opts += f",upperdir={upper}/upper,workdir={upper}/work"
        else:
            opts += ",ro,nosuid,nodev"
        run_cmd(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(target)],
            cwd=str(self.root / "result"),
        )

    def build(self, id: str, parent: str | None, fn: Callable[[Path], None]) -> Path:
        """Run `fn` on an overlay of `parent`'s layers (or a copy when flattening), then commit.

        The overlay is unmounted before `build` returns or raises; the new layer is moved into
        `result/` in one rename, only if `fn` returned normally.
        """
        check_step_id(id)
        if parent is not None and not self._dir(parent).is_dir():
            raise StoreError(f"overlayfs:{self.root}: parent step {parent!r} not found")
        claim = self.tmp.claim(id)
        tmp = claim.path
        try:
            for sub in ("upper", "work", "merged"):
                (tmp / sub).mkdir(parents=True)
            stack = self._stack(parent) if parent is not None else []
            flatten = len(stack) >= MAX_DEPTH or len(self._lowerdir(stack)) > _MAX_OPTS
            if not stack:
                fn(tmp / "upper")
            elif flatten:
                with self._view_of(stack, tmp / "merged") as src:
                    run_cmd(["cp", "-a", "--reflink=auto", f"{src}/.", str(tmp / "upper")])
                fn(tmp / "upper")
            else:
                self._mount(stack, tmp / "merged", upper=tmp)
                try:
                    fn(tmp / "merged")
                finally:
                    _umount(tmp / "merged")
            self._commit(id, parent, tmp, lower=None if flatten else parent)
        finally:
            _remove(tmp)
            claim.release()
        path = self.result(id)
        assert path is not None
        return path

    @contextlib.contextmanager
    def _view_of(self, stack: list[str], target: Path) -> Iterator[Path]:
        """The merged tree of `stack`, mounted read-only at `target` while in the block."""
        if len(stack) == 1:
            yield self._dir(stack[0]) / "layer"
            return
        self._mount(stack, target)
        try:
            yield target
        finally:
            _umount(target)

    def _commit(self, id: str, parent: str | None, tmp: Path, lower: str | None) -> None:
        step = tmp / "step"
        step.mkdir()
        os.rename(tmp / "upper", step / "layer")
        if parent is not None:
            (step / "parent").write_text(f"{parent}\n")
        if lower is not None:
            (step / "lower").write_text(f"{lower}\n")
        try:
            os.rename(step, self._dir(id))
        except OSError as e:
            raise StoreError(f"overlayfs:{self.root}: cannot commit step {id!r}: {e}") from None

    def result(self, id: str) -> Path | None:
        """See `Store.result`: the step's own layer (with its `log`), mounting nothing."""
        step = self._dir(id)
        return step / "layer" if step.is_dir() else None

    @contextlib.contextmanager
    def view(self, id: str) -> Iterator[Path]:
        """See `Store.view`: a base layer as it is, else a read-only overlay of the step's
        stack, mounted for the block. Each process using a view holds a shared flock on
        `view/.ID.use`; the last one to leave unmounts it."""
        step = self._dir(id)
        if not step.is_dir():
            raise StoreError(f"overlayfs:{self.root}: step {id!r} not found")
        if not (step / "lower").exists():
            yield step / "layer"
            return
        self._enter_view(id)
        try:
            yield self.root / "view" / id
        finally:
            self._leave_view(id)

    def _enter_view(self, id: str) -> None:
        with self._views_lock:
            held = self._views.get(id)
            if held is not None:
                self._views[id] = (held[0], held[1] + 1)
                return
            with file_lock(self._view_lock(id, "mount")):
                view = self.root / "view" / id
                if not os.path.ismount(view):
                    view.mkdir(exist_ok=True)
                    self._mount(self._stack(id), view)
                fd = _open_lock(self._view_lock(id, "use"))
                fcntl.flock(fd, fcntl.LOCK_SH)  # held while this process uses the view
            self._views[id] = (fd, 1)

    def _leave_view(self, id: str) -> None:
        with self._views_lock:
            fd, users = self._views[id]
            if users > 1:
                self._views[id] = (fd, users - 1)
                return
            del self._views[id]
            self._unmount_if_unused(id, fd)

    def _view_lock(self, id: str, kind: str) -> Path:
        """`view/.ID.mount` is held briefly to mount or unmount the view; `view/.ID.use` is
        held shared by every process using it."""
        return self.root / "view" / f".{id}.{kind}"

    def watch(self) -> None:
        """See `Store.watch`: nothing here can hang."""

    def close(self) -> None:
        """See `Store.close`: views are released by their blocks; nothing is held here."""

    def _unmount_if_unused(self, id: str, fd: int | None) -> None:
        """Unmount view `id` unless a process (other than the holder of `fd`) uses it."""
        try:
            with file_lock(self._view_lock(id, "mount")):
                use = self._view_lock(id, "use")
                if fd is None:
                    fd = _open_lock(use)
                if not _same_file(fd, use):
                    return  # the view was dropped and mounted again since fd was taken
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # another process still uses it; the last one out unmounts
                _remove(self.root / "view" / id)
                use.unlink(missing_ok=True)
        finally:
            if fd is not None:
                os.close(fd)

    def ids(self) -> list[str]:
        """The committed steps (every entry of `result/`)."""
        return sorted(p.name for p in (self.root / "result").iterdir())

    def delete(self, id: str) -> None:
        """Remove step `id` and the steps layered on it (they cannot exist without it)."""
        step = self._dir(id)
        if not step.is_dir():
            return
        for child in self.ids():
            lower = self._dir(child) / "lower"
            if lower.exists() and lower.read_text().strip() == id:
                self.delete(child)
        claim = self.tmp.claim(f"del-{id}")
        try:
            self._drop_view(id)
            with contextlib.suppress(FileNotFoundError):
                os.rename(step, claim.path)
            remove_tree(claim.path)
        finally:
            claim.release()

    def _drop_view(self, id: str) -> None:
        """Unmount step `id`'s view even if in use (lazily: open files stay readable)."""
        with self._views_lock:
            held = self._views.pop(id, None)
        if held is not None:
            os.close(held[0])
        with file_lock(self._view_lock(id, "mount")):
            _remove(self.root / "view" / id)
            self._view_lock(id, "use").unlink(missing_ok=True)
        self._view_lock(id, "mount").unlink(missing_ok=True)

    def df(self) -> float:
        """Free space of the store's filesystem, in percent."""
        return statvfs_free_pct(self.root)

    def state_dir(self) -> Path:
        """`ROOT/state`."""
        return self.root / "state"

    # -- caches ------------------------------------------------------------------------------

    def cache(self, name: str, user: tuple[int, int]) -> CacheLease:
        """A private copy of cache `name`'s latest version (created empty, owned by `user`)."""
        esc = escape_cache_name(name)
        main = self.root / "cache" / esc
        claim = self.cache_tmp.claim("c")
        try:
            with locked_counter(self.root / "cache-gen" / esc) as gen:
                if not main.is_dir():
                    self._new_cache(main, user)
                gen0 = gen.get()
                run_cmd(["cp", "-a", "--reflink=auto", "--", str(main), str(claim.path)])
        except BaseException:
            remove_tree(claim.path)
            claim.release()
            raise

        def release() -> None:
            try:
                with locked_counter(self.root / "cache-gen" / esc) as gen:
                    if gen.get() == gen0 and main.is_dir():
                        gen.set(gen0 + 1)
                        _exchange(claim.path, main)  # the old version lands in our tmp
            finally:
                remove_tree(claim.path)
                claim.release()

        return CacheLease(path=claim.path, release=once(release))

    def _new_cache(self, main: Path, user: tuple[int, int]) -> None:
        claim = self.cache_tmp.claim("new")
        try:
            claim.path.mkdir()
            os.chown(claim.path, *user)
            os.rename(claim.path, main)
        finally:
            remove_tree(claim.path)
            claim.release()

    def delete_cache(self, name: str) -> None:
        """Delete cache `name`; users still holding a copy will have their release discarded."""
        esc = escape_cache_name(name)
        main = self.root / "cache" / esc
        with locked_counter(self.root / "cache-gen" / esc) as gen:
            if not main.is_dir():
                return
            gen.set(gen.get() + 1)
            claim = self.cache_tmp.claim("del")
            try:
                os.rename(main, claim.path)
            finally:
                remove_tree(claim.path)
                claim.release()

    # -- recovery ----------------------------------------------------------------------------

    def sweep(self) -> None:
        """See `Store.sweep`: temporaries of dead processes (and their mounts), stale views."""
        self.tmp.sweep(_remove)
        self.cache_tmp.sweep(_remove)
        for view in (self.root / "view").iterdir():
            if not view.name.startswith("."):
                self._unmount_if_unused(view.name, None)


def open_backend(arg: str) -> OverlayStore:
    """Open (creating if needed) the overlayfs store at directory `arg`."""
    root = Path(arg).absolute()
    try:
        seal_root(root)
        store = OverlayStore(root)
    except OSError as e:
        raise StoreError(f"overlayfs:{arg}: cannot create store: {e.strerror or e}") from None
    return store
