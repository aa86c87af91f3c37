"""Atomic file output: write to a temporary file beside the target, fsync, rename.

Campaign output must survive the process being killed at any instruction: a
reader sees either the old file or the complete new one, never a torn write.

The temporary file is made by ``mkstemp`` (mode 0600, so no other user ever sees a
half-written file); before the rename it gets the mode a plain ``open`` would have
given: the replaced file's mode, or ``0666`` less the user's umask.  Text is encoded
with ``backslashreplace``: a lone surrogate (valid in a JSON string, e.g. a
scenario's ``name``) is written as ``\\udc80`` instead of failing half-way.
A write that fails for a reason of the file system (read-only, not a directory, no
space) raises :class:`OutputError`, which the CLI reports as bad output (exit 2).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from pathlib import Path


class OutputError(OSError):
    """An output path that cannot be written; ``filename`` is the path."""


_umask_lock = threading.Lock()


def umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~umask()


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8", "backslashreplace"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "is a directory", str(path))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(e.errno, e.strerror or str(e), str(e.filename or path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), _mode_for(path))
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(e.errno, e.strerror or str(e), str(path)) from None
        raise
