"""
Issuance and renewal through a proxy that breaks the CA's answers on purpose (lecp.testing.acmeproxy):
for each fault, the job either completes or ends in a persisted, resumable state with a clear
error; retries wait as the CA asked (Retry-After) or back off; nothing is retried in a tight loop;
no key or certificate is lost.
"""

from __future__ import annotations

import time

from lecp.acme.client import ACMEClient
from lecp.outcome import DEFERRED, FAILED, ISSUED
from lecp.testing.acmeproxy import Fault, start_proxy
from lecp.testing.pebble import PebbleSettings
from tests.integration.test_issuance import IssuanceTestCase

VHOST = "alice.test"
NAMES = ["alice.test", "www.alice.test"]


class FaultTests(IssuanceTestCase):
    """One fault at a time, on the request where it hurts most."""

    # No bad nonces from Pebble here: each test counts the requests its fault caused, and a
    # badNonce retry would add one (bad nonces have tests of their own, at Pebble's 5 %).
    settings = PebbleSettings(nosleep=True, alternate_roots=1, nonce_reject=0)

    def setUp(self):
        super().setUp()
        self.proxy = start_proxy(self.reactor, self.pebble)
        self.addCleanup(self.proxy.stop)
        self.controls = self.proxy.controls
        self.jobs = self.make_jobs(self.proxy.directory_url, page_deadline=30)

    def short_timeouts(self, seconds: float) -> None:
        """Make the jobs' ACME clients give up on a request after C{seconds}."""
        def factory(directory, key, url):
            return ACMEClient.create(self.http, self.reactor, directory, key, account_url=url, timeout=seconds)
        self.jobs.acme_factory = factory

    def gaps(self, path: str) -> list[float]:
        """Seconds between consecutive requests for C{path}."""
        times = [t for m, p, t in self.controls.requests if path in p and m == "POST"]
        return [b - a for a, b in zip(times, times[1:])]

    async def issue(self):
        return await self.jobs.issue(VHOST, NAMES)

    async def assert_issued(self, outcome):
        self.assertEqual(outcome.kind, ISSUED, outcome)
        record = self.store.read().certificate(VHOST)
        self.assertIsNotNone(record)
        self.assertEqual(self.store.read().pending(), {})
        self.assertEqual((await self.installed(VHOST)).certificate.id, record.cert_id)

    async def test_connection_reset_on_new_order(self):
        """A reset before the CA saw the order: retried after 1 s, issued."""
        self.controls.inject(Fault("reset", "/order-plz"))
        await self.assert_issued(await self.issue())
        self.assertEqual(self.controls.count("/order-plz"), 2)
        self.assertGreaterEqual(self.gaps("/order-plz")[0], 0.9)

    async def test_answer_lost_after_finalize(self):
        """The CA finalized but the answer was lost: the retry learns the order's state and downloads it."""
        self.controls.inject(Fault("lose_answer", "/finalize-order"))
        await self.assert_issued(await self.issue())

    async def test_dropped_connections_on_challenge(self):
        """Two dropped challenge answers in a row: retried with growing waits (1 s, then 4 s), then issued."""
        self.controls.inject(Fault("drop", "/chalZ", count=2))
        started = time.monotonic()
        await self.assert_issued(await self.issue())
        self.assertGreaterEqual(time.monotonic() - started, 4.9)

    async def test_503_with_short_retry_after(self):
        """503 with Retry-After 2 on the order poll: waited for (not hammered), then issued."""
        self.controls.inject(Fault("status", "/my-order", status=503, retry_after=2))
        await self.assert_issued(await self.issue())
        gaps = self.gaps("/my-order")
        self.assertTrue(any(g >= 1.9 for g in gaps), gaps)

    async def test_500_on_certificate_download(self):
        """serverInternal on the download, twice: retried, issued."""
        self.controls.inject(Fault("status", "/certZ", status=500, count=2))
        await self.assert_issued(await self.issue())

    async def test_truncated_answer(self):
        """A body cut in half (the order poll): treated as a failed connection, retried, issued."""
        self.controls.inject(Fault("truncate", "/my-order"))
        await self.assert_issued(await self.issue())

    async def test_delay_past_the_timeout(self):
        """The certificate download answers after the client's timeout: retried, issued."""
        self.short_timeouts(1.5)
        self.controls.inject(Fault("delay", "/certZ", seconds=3))
        await self.assert_issued(await self.issue())

    async def test_long_503_before_the_order(self):
        """503 asking for an hour on newOrder: one request, a clear failure carrying the hour, nothing half-done."""
        self.controls.inject(Fault("status", "/order-plz", status=503, retry_after=3600, count=5))
        before = time.time()
        outcome = await self.issue()
        self.assertEqual((outcome.kind, outcome.error_type), (FAILED, "acme"), outcome)
        self.assertIn("internal error", outcome.message)
        self.assertGreaterEqual(outcome.retry_after, before + 3590)
        self.assertEqual(self.controls.count("/order-plz"), 1)  # not retried now: the daemon waits the hour
        document = self.store.read()
        self.assertEqual((document.certificates(), document.pending()), ({}, {}))
        self.assertEqual(document.failure(VHOST)["kind"], FAILED)

    async def test_rate_limited(self):
        """rateLimited: one request, the failure says until when, the daemon will not retry before."""
        self.controls.inject(Fault("rate_limited", "/order-plz", retry_after=7200))
        outcome = await self.issue()
        self.assertEqual((outcome.kind, outcome.error_type), (FAILED, "rate_limit"), outcome)
        self.assertIn("rate limited until", outcome.message)
        self.assertGreaterEqual(outcome.retry_after, time.time() + 7100)
        self.assertEqual(self.controls.count("/order-plz"), 1)

    async def test_ca_down_after_the_order_then_resumed(self):
        """The CA fails every finalize for a while: the order is kept (deferred) with its key, and finished later."""
        self.controls.inject(Fault("status", "/finalize-order", status=500, count=3))
        outcome = await self.issue()
        self.assertEqual(outcome.kind, DEFERRED, outcome)
        pending = self.store.read().pending()[VHOST]
        self.assertEqual(self.controls.count("/finalize-order"), 3)  # 1 + 2 retries, spaced 1 s and 4 s
        self.assertGreaterEqual(min(self.gaps("/finalize-order")), 0.9)
        resumed = await self.jobs.resume(VHOST)
        await self.assert_issued(resumed)
        record = self.store.read().certificate(VHOST)
        self.assertEqual(record.key_pem, pending.key_pem)  # the key made for the order is the certificate's

    async def test_renewal_through_faults_keeps_the_certificate(self):
        """A renewal whose CA breaks down keeps the installed certificate and key, and completes when resumed."""
        await self.assert_issued(await self.issue())
        first = self.store.read().certificate(VHOST)
        self.controls.inject(Fault("reset", "/finalize-order", count=3))
        outcome = await self.jobs.renew(VHOST)
        self.assertEqual(outcome.kind, DEFERRED, outcome)
        kept = self.store.read().certificate(VHOST)
        self.assertEqual((kept.cert_pem, kept.key_pem), (first.cert_pem, first.key_pem))
        self.assertEqual((await self.installed(VHOST)).certificate.id, first.cert_id)
        await self.assert_issued(await self.jobs.resume(VHOST))
        renewed = self.store.read().certificate(VHOST)
        self.assertNotEqual(renewed.cert_pem, first.cert_pem)
        self.assertEqual(renewed.key_pem, first.key_pem)
