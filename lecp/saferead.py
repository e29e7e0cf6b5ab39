# -*- test-case-name: tests.test_saferead -*-
"""
How root reads files inside a user's home without being tricked: every component of the path
is opened with C{O_NOFOLLOW} relative to its parent, and every component inside the home must
belong to the user. Root never writes there: writing is the worker's job, as the user.
"""

from __future__ import annotations

import errno
import os
import stat


class UnsafePath(OSError):
    """A path crossed a symlink or something the user does not own; says where."""


MAX_READ = 64 * 1024 * 1024


def open_beneath(home: str, relative: str, owner_uid: int) -> int:
    """
    Open C{home/relative} for reading, refusing symlinks at every step and anything below
    C{home} (C{home} included) not owned by C{owner_uid}. Returns a file descriptor.

    @raise UnsafePath: for a symlink or a foreign owner.
    @raise FileNotFoundError: when a component does not exist.
    """
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise UnsafePath(errno.EINVAL, f"refusing the path {relative!r}")
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        _check_owner(fd, home, owner_uid)
        where = home
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (0 if last else os.O_DIRECTORY)
            where = os.path.join(where, part)
            try:
                child = os.open(part, flags | os.O_NONBLOCK, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath(e.errno, f"{where} is a symlink or not a folder; refusing to follow it") from None
                raise
            os.close(fd)
            fd = child
            _check_owner(fd, where, owner_uid)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(errno.EINVAL, f"{where} is not a regular file")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_owner(fd: int, where: str, owner_uid: int) -> None:
    owner = os.fstat(fd).st_uid
    if owner != owner_uid:
        raise UnsafePath(errno.EPERM, f"{where} belongs to uid {owner}, not to the account (uid {owner_uid}); refusing it")


def read_beneath(home: str, relative: str, owner_uid: int, limit: int = MAX_READ) -> bytes:
    """The content of C{home/relative}, read safely (see L{open_beneath})."""
    fd = open_beneath(home, relative, owner_uid)
    try:
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1024 * 1024)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise UnsafePath(errno.EFBIG, f"{home}/{relative} is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
