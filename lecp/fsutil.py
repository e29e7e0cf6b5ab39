# -*- test-case-name: tests.test_fsutil -*-
"""Files written so that a crash never leaves them half-written: temp file, fsync, rename, fsync folder."""

from __future__ import annotations

import os
import tempfile


def fsync_directory(path: str) -> None:
    """Make a rename inside C{path} durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """
    Replace C{path} with C{data} atomically, with permissions C{mode}.

    The temporary file lives in the same folder (so the rename is atomic) and is removed if
    anything fails; the old file stays intact until the rename.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_directory(folder)
