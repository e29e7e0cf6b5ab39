"""Tests for L{lecp.tap}: the twistd plugin's options and service tree."""

import os

from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from lecp.config import load
from lecp.tap import Options, makeService


class TapTests(SynchronousTestCase):
    """twistd lecp."""

    def config(self, text=""):
        path = os.path.abspath(self.mktemp())
        state = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(f'[paths]\nstate_dir = "{state}"\ndaemon_socket = "{state}/lecp.sock"\n[health]\nport = 18765\n' + text)
        return path

    def test_four_named_children(self):
        """makeService builds renewal, orders, hostcert and health, and listens for health on 127.0.0.1 only."""
        options = Options()
        options.parseOptions(["--config", self.config()])
        reactor = MemoryReactorClock()
        parent = makeService(options, reactor)
        for name in ("renewal", "orders", "hostcert", "health"):
            self.assertIsNotNone(parent.getServiceNamed(name))
        parent.startService()
        self.addCleanup(parent.stopService)
        self.assertEqual([(port, interface) for port, _, _, interface in reactor.tcpServers], [(18765, "127.0.0.1")])
        self.assertEqual(len(reactor.unixServers), 1)
        self.assertTrue(reactor.getDelayedCalls())

    def test_bad_configuration_stops_the_start(self):
        """A wrong value is a usage error naming the key."""
        with self.assertRaises(usage.UsageError) as caught:
            Options().parseOptions(["--config", self.config("[renewal]\nconcurrency = 0\n")])
        self.assertIn("[renewal] concurrency: must be a whole number from 1 to 64", str(caught.exception))

    def test_plugin_is_found(self):
        """twistd finds the lecp plugin."""
        from twisted.application.service import IServiceMaker

        self.assertIn("lecp", [p.tapname for p in getPlugins(IServiceMaker)])


class ReloadTests(SynchronousTestCase):
    """SIGHUP's reload."""

    def test_reload(self):
        """A good file replaces the configuration in force; a bad one is logged and the old one stays."""
        from lecp.tap import Settings

        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("[renewal]\nconcurrency = 2\n")
        settings = Settings(load(path), path)
        with open(path, "w") as f:
            f.write("[renewal]\nconcurrency = 7\n")
        settings.reload()
        self.assertEqual(settings.config.concurrency, 7)
        with open(path, "w") as f:
            f.write("[renewal]\nconcurrency = 'many'\n")
        settings.reload()
        self.assertEqual(settings.config.concurrency, 7)

    def test_json_logs(self):
        """--logger=lecp.logs.json_stdout gives an observer writing JSON."""
        from lecp.logs import json_stdout

        self.assertTrue(callable(json_stdout()))
