# -*- test-case-name: tests.test_fsutil -*-
"""Files written so that a crash never leaves them half-written: temp file, fsync, rename, fsync folder."""

from __future__ import annotations

import os


def fsync_directory(path: str) -> None:
    """Make a rename inside C{path} durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_at(dir_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """
    Replace C{name} in the folder open as C{dir_fd} with C{data}, atomically, with permissions C{mode}.

    The temporary file (created exclusively, never through a symlink) lives in the same folder so
    the rename is atomic; it is removed if anything fails, and the old file stays intact until
    the rename.
    """
    tmp = f".{name}.{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    os.fsync(dir_fd)


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace the file at C{path} atomically (see L{atomic_write_at})."""
    folder = os.path.dirname(os.path.abspath(path))
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        atomic_write_at(dir_fd, os.path.basename(path), data, mode)
    finally:
        os.close(dir_fd)
