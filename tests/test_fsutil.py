"""Tests for L{lecp.fsutil}."""

from __future__ import annotations

import os
import stat
from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from lecp.fsutil import atomic_write


class AtomicWriteTests(SynchronousTestCase):
    """atomic_write replaces whole files or nothing."""

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.path = os.path.join(self.folder, "doc")

    def test_writes_with_mode(self):
        """The file has the content and the mode asked, and no temporary file is left."""
        atomic_write(self.path, b"hello", 0o600)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"hello")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(os.listdir(self.folder), ["doc"])

    def test_failure_keeps_old_content(self):
        """When the rename fails, the old file is intact and the temporary file is gone."""
        atomic_write(self.path, b"old")
        with mock.patch("os.rename", side_effect=OSError("disk full")):
            self.assertRaises(OSError, atomic_write, self.path, b"new")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertEqual(os.listdir(self.folder), ["doc"])
