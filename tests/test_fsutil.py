"""Tests for L{lecp.fsutil}."""

from __future__ import annotations

import os
import stat
from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from lecp import fsutil
from lecp.fsutil import atomic_write


class AtomicWriteTests(SynchronousTestCase):
    """atomic_write replaces whole files or nothing."""

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.path = os.path.join(self.folder, "doc")

    def content(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def assertFailedWriteKeepsOld(self, failing: str, error: OSError):
        """With C{failing} (an C{os} function) raising C{error}, a write raises it, keeps the old file and leaves no other."""
        atomic_write(self.path, b"old")
        with mock.patch(failing, side_effect=error):
            self.assertRaises(OSError, atomic_write, self.path, b"new")
        self.assertEqual(self.content(), b"old")
        self.assertEqual(os.listdir(self.folder), ["doc"])

    def test_writes_with_mode(self):
        """The file has the content and the mode asked, and no temporary file is left."""
        atomic_write(self.path, b"hello", 0o600)
        self.assertEqual(self.content(), b"hello")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(os.listdir(self.folder), ["doc"])

    def test_failure_keeps_old_content(self):
        """When the rename fails, the old file is intact and the temporary file is gone."""
        self.assertFailedWriteKeepsOld("os.rename", OSError("disk full"))

    def test_content_is_written_unnamed(self):
        """While the content is written and synced, the folder shows no new name: a writer killed then leaves nothing."""
        atomic_write(self.path, b"old")
        seen = []
        real_fsync = os.fsync

        def fsync(fd):
            seen.append(sorted(os.listdir(self.folder)))
            return real_fsync(fd)

        with mock.patch("os.fsync", side_effect=fsync):
            atomic_write(self.path, b"new")
        self.assertEqual(seen[0], ["doc"])  # the file's own fsync, before it has a name
        self.assertEqual(self.content(), b"new")
        self.assertEqual(os.listdir(self.folder), ["doc"])

    def test_failure_while_writing_leaves_nothing(self):
        """A failure before the rename (here: the sync) keeps the old file and leaves no other file."""
        self.assertFailedWriteKeepsOld("os.fsync", OSError("I/O error"))

    def test_named_temporary_where_unnamed_files_are_missing(self):
        """Without O_TMPFILE the write goes through a named temporary file, with the same result."""
        with mock.patch.object(fsutil, "_UNNAMED_FILES", False):
            self.assertFailedWriteKeepsOld("os.rename", OSError("disk full"))
            atomic_write(self.path, b"new", 0o640)
        self.assertEqual(self.content(), b"new")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
        self.assertEqual(os.listdir(self.folder), ["doc"])
