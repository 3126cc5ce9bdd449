"""Writing a file so that it appears whole or not at all, and stays after a power cut.

Used for the local object store, the `.eml` mail folder and the demo's secrets: a reader
never sees half a file, and a crash never leaves a truncated one where a good one was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

# The leading dot keeps a leftover temporary file out of what readers list: it is not a
# valid object key, and it does not end in `.eml`.
TEMP_PREFIX = ".tmp-"


def write_atomically(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write `data` to `path` with permissions `mode` (not filtered by the umask).

    The bytes go to a temporary file in the same directory (created 0700 if missing),
    are flushed and fsynced, then renamed over `path` (atomic within one filesystem), and
    the directory is fsynced so the rename itself is durable. Raises `OSError`.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the entries of `directory` (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
