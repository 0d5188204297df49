"""Progress lines of pytest-xdist workers, shown on the controller's terminal.

A worker has no terminal, and pytest-xdist carries nothing from a worker to the controller
before a test ends but its reports. So each worker writes its progress lines (`LiveOutput`'s
notices, never in place) to a file of its own in a directory the controller made, and a
thread of the controller shows every complete new line, prefixed with the worker's name
(`[gw0] [slow] running ...`), on a line of its own.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

POLL = 0.25  # seconds between looks at the workers' files

WORKER_KEY = "obuilder_progress_file"
"""The `workerinput` key naming the file a worker writes its progress lines to."""


class FileTerminal:
    """The `progress.Terminal` of a worker: lines appended to its progress file (opened for
    each write: notices are seconds apart, and a spec item then holds no open file)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._at_line_start = True

    def write(self, content: str, *, flush: bool = False) -> None:
        if not content:
            return
        try:
            with self._path.open("a", encoding="utf-8") as f:
                f.write(content)
        except OSError:
            return  # the controller has finished (or is stopping) and removed the directory
        self._at_line_start = content.endswith("\n")

    def write_line(self, line: str) -> None:
        self.ensure_newline()
        self.write(line + "\n")

    def ensure_newline(self) -> None:
        if not self._at_line_start:
            self.write("\n")


class ProgressRelay:
    """The controller's side: the workers' files, and the thread that shows their lines."""

    def __init__(self, terminal: Any) -> None:
        self._terminal = terminal
        self.dir = Path(tempfile.mkdtemp(prefix="obuilder-progress-"))
        self._read: dict[Path, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="obuilder-progress", daemon=True)
        self._thread.start()

    def file_for(self, worker: str) -> Path:
        """The file worker `worker` (`gw0`) writes to."""
        return self.dir / f"{worker}.log"

    def close(self) -> None:
        """Show what is left, stop the thread, remove the files."""
        self._stop.set()
        self._thread.join()
        self._show_new_lines()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            self._show_new_lines()

    def _show_new_lines(self) -> None:
        for path in sorted(self.dir.glob("*.log")):
            with path.open("rb") as f:
                f.seek(self._read.get(path, 0))
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]
            self._read[path] = self._read.get(path, 0) + len(complete)
            for line in complete.decode("utf-8", errors="replace").splitlines():
                if line.strip():
                    self._show(f"[{path.stem}] {line}")

    def _show(self, line: str) -> None:
        # On a line of its own: after the result letters the controller has written so far.
        width: int = getattr(getattr(self._terminal, "_tw", None), "width_of_current_line", 0)
        if width:
            self._terminal.write("\n")
        self._terminal.write(line + "\n", flush=True)
