"""Atomic file writes: a reader (a watching service, a resuming run) never sees half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Files this project writes are for other processes and users to read.
FILE_MODE = 0o644


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; on success it is synced and renamed onto
    ``path``, on failure removed. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    scratch = Path(name)
    try:
        yield scratch
        with open(scratch, "rb") as written:
            os.fsync(written.fileno())
        scratch.chmod(FILE_MODE)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
