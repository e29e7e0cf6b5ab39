# -*- test-case-name: tests.test_acme_webroot -*-
"""HTTP-01 through a web server's document root: C{<root>/.well-known/acme-challenge/<token>}."""

from __future__ import annotations

import errno
import os
import re
from typing import Callable

import attrs
from zope.interface import implementer

from lecp.interfaces import IChallengeResponder

CHALLENGE_PATH = (".well-known", "acme-challenge")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class WebrootError(OSError):
    """A challenge file could not be written safely; says where and why."""


def _ensure_directory(parent_fd: int, name: str, where: str) -> int:
    """Open (creating, mode 0755) the directory C{name} under C{parent_fd}, refusing symlinks."""
    try:
        os.mkdir(name, 0o755, dir_fd=parent_fd)
    except FileExistsError:
        pass
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise WebrootError(
                e.errno,
                f"{where} is a symlink or not a folder; lecp will not write challenge files through it. "
                "Replace it with a real folder",
            ) from None
        raise


def open_challenge_directory(webroot: str) -> int:
    """
    Open C{<webroot>/.well-known/acme-challenge}, creating what is missing (0755), and never
    following a symlink below the document root. Returns a directory file descriptor.
    """
    root_fd = os.open(webroot, os.O_RDONLY | os.O_DIRECTORY)
    try:
        well_known = _ensure_directory(root_fd, CHALLENGE_PATH[0], os.path.join(webroot, CHALLENGE_PATH[0]))
    finally:
        os.close(root_fd)
    try:
        return _ensure_directory(well_known, CHALLENGE_PATH[1], os.path.join(webroot, *CHALLENGE_PATH))
    finally:
        os.close(well_known)


def write_challenge_file(webroot: str, token: str, content: str) -> str:
    """Write C{content} as the challenge file for C{token} (mode 0644); return its path."""
    if not _TOKEN.match(token):
        raise WebrootError(errno.EINVAL, f"refusing a challenge token with unexpected characters: {token!r}")
    dir_fd = open_challenge_directory(webroot)
    try:
        try:
            os.unlink(token, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, content.encode("ascii"))
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    return os.path.join(webroot, *CHALLENGE_PATH, token)


def remove_challenge_file(webroot: str, token: str) -> None:
    """Remove the challenge file for C{token}, if there; never follows symlinks."""
    if not _TOKEN.match(token):
        return
    try:
        dir_fd = open_challenge_directory(webroot)
    except OSError:
        return
    try:
        os.unlink(token, dir_fd=dir_fd)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        pass
    finally:
        os.close(dir_fd)


@implementer(IChallengeResponder)
@attrs.define
class WebrootResponder:
    """
    Answers HTTP-01 by writing files into each name's document root.

    @ivar webroot_for: maps a name to its document root.
    """

    webroot_for: Callable[[str], str]
    challenge_type = "http-01"
    written: dict = attrs.field(factory=dict)

    def start_responding(self, identifier, token, key_authorization):
        webroot = self.webroot_for(identifier)
        self.written[(identifier, token)] = write_challenge_file(webroot, token, key_authorization)

    def stop_responding(self, identifier, token):
        self.written.pop((identifier, token), None)
        remove_challenge_file(self.webroot_for(identifier), token)
