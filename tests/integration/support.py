"""Shared set-up for integration tests: a real Pebble per test class and a webroot server per test."""

from __future__ import annotations

import os
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
