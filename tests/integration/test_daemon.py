"""
The real daemon, as a process (python -m twisted lecp), against Pebble issuing short-lived
certificates and the cPanel emulator with a real Unix account: it renews without anyone touching
it, finishes a deferred order it was signalled about, replaces the hostname's self-signed
certificate, answers /alive and /health, and stops on SIGTERM within 5 s.
"""

from __future__ import annotations

import json
import signal
import sys
import time

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from lecp.cpanel import WHM, WHMAPICommand
from lecp.keys import certificate_facts
from lecp.store import Store
from lecp.testing.acmeproxy import start_proxy
from lecp.testing.pebble import PebbleSettings, free_ports
from tests.integration.support import SystemTestCase


class _Daemon(ProcessProtocol):
    def __init__(self):
        self.output, self.ended = [], Deferred()

    def outReceived(self, data):
        self.output.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value)


class DaemonTests(SystemTestCase):
    """twistd lecp on a small emulated server."""

    settings = PebbleSettings(nosleep=True, certificate_validity=45)

    async def wait_for(self, check, timeout: float, what: str):
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            value = check()
            if value:
                return value
            await deferLater(self.reactor, 0.5, lambda: None)
        self.fail(f"waited {timeout:g} s for {what}; daemon log:\n" + b"".join(self.daemon.output).decode()[-6000:])

    def start_daemon(self):
        self.daemon = _Daemon()
        self.addCleanup(self.stop_daemon)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": ":".join(self.python_path)}
        self.process = self.reactor.spawnProcess(
            self.daemon, sys.executable, [sys.executable, "-m", "twisted", "lecp", "--config", self.config_path],
            env=env, path=self.base)

    async def stop_daemon(self):
        if not self.daemon.ended.called:
            self.process.signalProcess(signal.SIGKILL)
            await self.daemon.ended

    def store(self):
        return Store(self.home, uid=self.user.pw_uid).read()

    async def test_daemon_end_to_end(self):
        """Renewal, a signalled deferred order, the hostname certificate, health, and a clean SIGTERM."""
        proxy = start_proxy(self.reactor, self.pebble)
        self.addCleanup(proxy.stop)
        [health_port] = free_ports(1)
        self.write_config(proxy.directory_url,
                          "[renewal]\ninterval = 4\nfirst_pass_delay = 0\norders_interval = 2\nconcurrency = 2\n"
                          f"[mail]\nenabled = false\n[health]\nport = {health_port}\n"
                          f'[hostcert]\ndocroot = "{self.server.path("var", "www", "html")}"\n'
                          + self.paths_section())
        vhost = f"{self.users[0]}.test"

        # A certificate issued before the daemon runs, as the page would (the worker runs the same job).
        out, err, code = await self.run_worker({"job": "issue", "vhost": vhost, "names": [f"www.{vhost}"]})
        self.assertEqual(json.loads(out)["outcome"], "issued", out.decode() + err.decode()[-3000:])
        first = self.store().certificate(vhost)

        self.start_daemon()
        pool = HTTPConnectionPool(self.reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        http = HTTPClient(Agent(self.reactor, pool=pool))

        async def alive():
            try:
                response = await http.get(f"http://127.0.0.1:{health_port}/alive")
                return response.code == 200 and await response.content() == b"OK\n"
            except Exception:
                return False

        async def wait_alive():
            until = time.monotonic() + 30
            while time.monotonic() < until:
                if await alive():
                    return
                await deferLater(self.reactor, 0.2, lambda: None)
            self.fail("the daemon's /alive never answered:\n" + b"".join(self.daemon.output).decode()[-4000:])

        await wait_alive()

        # The hostname's self-signed service certificates get replaced.
        whm = WHM(WHMAPICommand(self.reactor, executable=self.server.path("bin", "whmapi1")))

        def hostname_done():
            for service in ("cpanel", "exim", "dovecot", "ftp"):
                with open(self.server.path("var", "cpanel", "ssl", service, "info.json")) as f:
                    if json.load(f)["is_self_signed"]:
                        return False
            return True

        await self.wait_for(hostname_done, 60, "the hostname certificate")
        services = await whm.service_certificates()
        self.assertEqual({s.service: s.info.is_self_signed for s in services},
                         {"cpanel": False, "exim": False, "dovecot": False, "ftp": False})
        self.assertIn("server.lecp.test", services[0].info.domains)

        # The short-lived certificate is renewed by the daemon with the same key, untouched by anyone.
        renewed = await self.wait_for(
            lambda: (r := self.store().certificate(vhost)) and r.cert_pem != first.cert_pem and r.cert_id and r, 90,
            "the renewal")
        self.assertEqual(renewed.key_pem, first.key_pem)
        self.assertGreater(certificate_facts(renewed.cert_pem).not_after, certificate_facts(first.cert_pem).not_after)

        # A deferred order: the CA holds it; the worker signals the daemon; once released, the daemon finishes it.
        proxy.controls.hold_orders = True
        blog = f"blog.{vhost}"
        out, err, code = await self.run_worker({"job": "issue", "vhost": blog, "deadline": 1})
        self.assertEqual(json.loads(out)["outcome"], "deferred", err.decode()[-3000:])
        self.assertIn(blog, self.store().pending())
        proxy.controls.hold_orders = False
        await self.wait_for(lambda: blog not in self.store().pending() and (r := self.store().certificate(blog))
                            and r.cert_id, 60, "the deferred order to be finished and installed")
        installed = self.server.installed(f"blog.{vhost}")
        self.assertEqual(installed["cert_id"], self.store().certificate(blog).cert_id)

        # /health answers with every service.
        response = await http.get(f"http://127.0.0.1:{health_port}/health")
        health = json.loads(await response.content())
        self.assertEqual(sorted(health["services"]), ["hostcert", "orders", "renewal"])
        self.assertGreaterEqual(health["services"]["renewal"]["runs"], 1)

        # SIGTERM: the daemon stops within 5 s.
        started = time.monotonic()
        self.process.signalProcess(signal.SIGTERM)
        await self.daemon.ended
        self.assertLess(time.monotonic() - started, 5.0)
        self.assertIn(b"Main loop terminated", b"".join(self.daemon.output))

    test_daemon_end_to_end.timeout = 300
