"""Tests for L{lecp.acme.webroot}."""

from __future__ import annotations

import os
import stat

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from lecp.acme.webroot import WebrootError, WebrootResponder, remove_challenge_file, write_challenge_file
from lecp.interfaces import IChallengeResponder
from lecp.testing.fakeacme import MemoryResponder

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"


class WebrootTests(SynchronousTestCase):
    """Writing and removing challenge files safely."""

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)

    def test_interfaces(self):
        """Both responders provide IChallengeResponder."""
        verifyObject(IChallengeResponder, WebrootResponder(lambda n: self.root))
        verifyObject(IChallengeResponder, MemoryResponder())

    def test_write_then_remove(self):
        """The file is 0644 in 0755 folders, holds the key authorization, and is removed afterwards."""
        responder = WebrootResponder(lambda name: self.root)
        responder.start_responding("a.example", TOKEN, TOKEN + ".thumb")
        path = os.path.join(self.root, ".well-known", "acme-challenge", TOKEN)
        with open(path) as f:
            self.assertEqual(f.read(), TOKEN + ".thumb")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o755)
        responder.stop_responding("a.example", TOKEN)
        self.assertFalse(os.path.exists(path))
        responder.stop_responding("a.example", TOKEN)  # a second removal is harmless

    def test_refuses_symlinked_well_known(self):
        """A .well-known that is a symlink is refused, and nothing is written where it points."""
        elsewhere = os.path.abspath(self.mktemp())
        os.makedirs(elsewhere)
        os.symlink(elsewhere, os.path.join(self.root, ".well-known"))
        with self.assertRaises(WebrootError) as caught:
            write_challenge_file(self.root, TOKEN, "x")
        self.assertIn("symlink", str(caught.exception))
        self.assertEqual(os.listdir(elsewhere), [])

    def test_refuses_well_known_that_is_a_file(self):
        """A .well-known that is a file is refused with a clear error."""
        with open(os.path.join(self.root, ".well-known"), "w") as f:
            f.write("x")
        self.assertRaises(WebrootError, write_challenge_file, self.root, TOKEN, "x")

    def test_replaces_a_symlinked_token_without_following(self):
        """A symlink planted at the token's path is replaced, not written through."""
        target = os.path.join(os.path.abspath(self.mktemp()))
        with open(target, "w") as f:
            f.write("precious")
        folder = os.path.join(self.root, ".well-known", "acme-challenge")
        os.makedirs(folder)
        os.symlink(target, os.path.join(folder, TOKEN))
        write_challenge_file(self.root, TOKEN, "answer")
        with open(target) as f:
            self.assertEqual(f.read(), "precious")
        remove_challenge_file(self.root, TOKEN)

    def test_refuses_odd_tokens(self):
        """A token with path characters is refused."""
        self.assertRaises(WebrootError, write_challenge_file, self.root, "../../etc/passwd", "x")
