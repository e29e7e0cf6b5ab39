"""Tests for L{lecp.saferead}: how root reads inside a user's home."""

import os

from twisted.trial.unittest import SynchronousTestCase

from lecp.saferead import UnsafePath, read_beneath


class SafeReadTests(SynchronousTestCase):
    """Symlinks and foreign owners are refused at every step."""

    def setUp(self):
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.home, ".cpanel", "nvdata"))
        with open(os.path.join(self.home, ".cpanel", "nvdata", "doc"), "w") as f:
            f.write("data")
        self.uid = os.geteuid()

    def test_reads(self):
        """A plain path owned by the user is read."""
        self.assertEqual(read_beneath(self.home, ".cpanel/nvdata/doc", self.uid), b"data")

    def test_symlinked_folder_refused(self):
        """A folder on the way that is a symlink is refused."""
        elsewhere = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(elsewhere, "nvdata"))
        with open(os.path.join(elsewhere, "nvdata", "doc"), "w") as f:
            f.write("secret")
        os.rename(os.path.join(self.home, ".cpanel"), os.path.join(self.home, "old"))
        os.symlink(elsewhere, os.path.join(self.home, ".cpanel"))
        with self.assertRaises(UnsafePath) as caught:
            read_beneath(self.home, ".cpanel/nvdata/doc", self.uid)
        self.assertIn("symlink", str(caught.exception))

    def test_symlinked_file_refused(self):
        """The file itself being a symlink (to /etc/shadow, say) is refused."""
        path = os.path.join(self.home, ".cpanel", "nvdata", "doc")
        os.unlink(path)
        os.symlink("/etc/hostname", path)
        self.assertRaises(UnsafePath, read_beneath, self.home, ".cpanel/nvdata/doc", self.uid)

    def test_foreign_owner_refused(self):
        """Anything not owned by the account's uid is refused."""
        with self.assertRaises(UnsafePath) as caught:
            read_beneath(self.home, ".cpanel/nvdata/doc", self.uid + 1)
        self.assertIn("belongs to uid", str(caught.exception))

    def test_dot_dot_refused(self):
        """Relative tricks are refused outright."""
        self.assertRaises(UnsafePath, read_beneath, self.home, "../etc/passwd", self.uid)

    def test_not_a_regular_file(self):
        """A FIFO (which would hang a reader) is refused."""
        fifo = os.path.join(self.home, "pipe")
        os.mkfifo(fifo)
        self.assertRaises(UnsafePath, read_beneath, self.home, "pipe", self.uid)
