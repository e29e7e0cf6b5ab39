# -*- test-case-name: tests.test_fsutil -*-
"""Files written so that a crash never leaves them half-written: unnamed file, fsync, link, rename, fsync folder."""

from __future__ import annotations

import errno
import os

# Unnamed files (O_TMPFILE) are given a name through /proc/self/fd, so both must be there.
_UNNAMED_FILES = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


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

    The new content is written and fsynced into an unnamed file of the folder (C{O_TMPFILE}), which
    is given a temporary name only to be renamed over C{name}: a process killed while writing
    leaves nothing behind (the kernel drops the unnamed file), which matters since stores hold
    private keys. Where the filesystem has no unnamed files, a named temporary file (created
    exclusively, never through a symlink) takes its place. Either way it is removed if anything
    fails, and the old file stays intact until the rename.
    """
    tmp = f".{name}.{os.urandom(6).hex()}.tmp"
    fd = _open_unnamed(dir_fd, mode)
    named = fd is None
    if named:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            if not named:
                os.link(f"/proc/self/fd/{fd}", tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
                named = True
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        if named:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
        raise
    os.fsync(dir_fd)


def _open_unnamed(dir_fd: int, mode: int) -> int | None:
    """An unnamed file in the folder C{dir_fd}, open for writing; None where the system has none."""
    if not _UNNAMED_FILES:
        return None
    try:
        return os.open(".", os.O_TMPFILE | os.O_WRONLY, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None
        raise


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace the file at C{path} atomically (see L{atomic_write_at})."""
    folder = os.path.dirname(os.path.abspath(path))
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        atomic_write_at(dir_fd, os.path.basename(path), data, mode)
    finally:
        os.close(dir_fd)
