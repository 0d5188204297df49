"""A deep diff of two files by diffoscope (Debian package diffoscope-minimal), when installed.

diffoscope unpacks what our own summaries only list (compressed members, ELF sections, .deb
control files, images...). It costs a Python start-up and more (0.3 s for two small files,
seconds for big archives), so the report asks it only about a few files, with a time limit and
a bounded output.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

TIMEOUT = 60.0
"""Seconds diffoscope may take for one pair of files."""
MAX_LINES = 60
"""Lines of its report kept."""


def installed() -> bool:
    """Whether diffoscope is on PATH."""
    return shutil.which("diffoscope") is not None


def deep_diff(a: Path, b: Path, *, max_lines: int = MAX_LINES, timeout: float = TIMEOUT) -> str:
    """diffoscope's text report on files `a` and `b` (its first `max_lines` lines), or one line
    saying why there is none. Call only if `installed()`."""
    argv = ["diffoscope", "--text", "-", "--text-color", "never", "--no-progress",
            f"--timeout={int(timeout)}", str(a), str(b)]  # fmt: skip
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout + 10, check=False)
    except subprocess.TimeoutExpired:
        return f"(diffoscope gave no answer within {timeout:g} s)"
    except OSError as e:
        return f"(cannot run diffoscope: {e.strerror or e})"
    if proc.returncode == 0:
        return "(diffoscope finds no difference)"
    if proc.returncode != 1:  # 2: diffoscope's own error
        why = proc.stderr.decode(errors="replace").strip().splitlines()
        return f"(diffoscope failed: {why[-1] if why else f'exit status {proc.returncode}'})"
    lines = proc.stdout.decode(errors="replace").splitlines()
    more = len(lines) - max_lines
    return "\n".join(lines[:max_lines] + ([f"... ({more} more lines)"] if more > 0 else []))
