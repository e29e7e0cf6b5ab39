"""Shared set-up for integration tests: a real Pebble per test class and a webroot server per test."""

from __future__ import annotations

import atexit
import os
import shutil
import sysconfig
import tempfile
import uuid

from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from lecp.acme.client import ACMEClient
from lecp.acme.http import make_http_client, make_http_pool
from lecp.acme.webroot import WebrootResponder
from lecp.keys import generate_private_key
from lecp.testing.pebble import Pebble, PebbleSettings
from lecp.testing.webserver import listen_webroot


def fresh_names(count: int = 2) -> list[str]:
    """New names for each issuance, so no authorization or rate limit carries over."""
    base = f"t{uuid.uuid4().hex[:12]}.example.com"
    return [base] + [f"{label}.{base}" for label in ("www", "mail", "shop")[: count - 1]]


class PebbleTestCase(TestCase):
    """
    Starts Pebble with C{settings} once for the class (failing loudly if Pebble is missing) and,
    for each test, serves a fresh webroot on Pebble's HTTP-01 port.
    """

    settings = PebbleSettings()
    serve_webroot = True  # False when the test serves Pebble's HTTP-01 port itself

    @classmethod
    def setUpClass(cls):
        cls._workdir = tempfile.TemporaryDirectory(prefix="lecp-pebble-")
        cls.pebble = Pebble(os.path.join(cls._workdir.name, "pebble"), cls.settings).start()

    @classmethod
    def tearDownClass(cls):
        cls.pebble.stop()
        cls._workdir.cleanup()

    def setUp(self):
        from twisted.internet import reactor

        self.reactor = reactor
        self.webroot = os.path.abspath(self.mktemp())
        os.makedirs(self.webroot)
        self.listening = listen_webroot(reactor, self.pebble.http_port, self.webroot) if self.serve_webroot else None
        self.pool = make_http_pool(reactor)
        self.http = make_http_client(reactor, self.pebble.ca_bundle, pool=self.pool)
        self.responder = WebrootResponder(lambda name: self.webroot)

    def tearDown(self):
        stopping = [self.pool.closeCachedConnections()]
        if self.listening is not None:
            stopping.append(self.listening.stopListening())
        return gatherResults(stopping)

    def make_client(self, account_key=None, account_url=None) -> ACMEClient:
        return ACMEClient.create(
            self.http, self.reactor, self.pebble.directory_url,
            account_key or generate_private_key("ecdsa:p-256"), account_url=account_url,
        )


SYSTEM_PYTHON = "/usr/bin/python3"
_portable = []


def _link_or_copy(source, destination):
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def portable_python() -> tuple[str, list[str]]:
    """
    A Python any Unix user can run, and the sys.path entries that give it lecp and its
    dependencies from a world-readable copy. The test's own interpreter and checkout may sit
    below folders only root can enter (a pyenv under /root, say), as a real install never does.
    """
    if not _portable:
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            raise RuntimeError(f"{SYSTEM_PYTHON} is missing: the privilege tests need Debian's python3")
        base = tempfile.mkdtemp(prefix="lecp-pyenv-")
        atexit.register(shutil.rmtree, base, True)
        import lecp

        site = os.path.join(base, "site")
        shutil.copytree(sysconfig.get_paths()["purelib"], site, copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns("*.pth", "__pycache__", "_pytest", "pip", "lecp*"))
        shutil.copytree(os.path.dirname(lecp.__file__), os.path.join(base, "src", "lecp"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        for folder, dirs, files in os.walk(base):
            os.chmod(folder, 0o755)
            for name in files:
                path = os.path.join(folder, name)
                os.chmod(path, os.stat(path).st_mode | 0o444)
        _portable.extend([SYSTEM_PYTHON, [os.path.join(base, "src"), site]])
    return _portable[0], _portable[1]
