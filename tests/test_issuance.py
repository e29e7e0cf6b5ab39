"""Unit tests for L{lecp.issuance}: the jobs against the in-memory CA and a fake cPanel, on a Clock."""

from __future__ import annotations

import os

import attrs

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lecp.acme.client import ACMEClient
from lecp.config import Config
from lecp.cpanel.envelope import CPanelError
from lecp.cpanel.models import CertificateInfo, DomainName, InstalledHost, InstallResult, VirtualHost
from lecp.issuance import Jobs
from lecp.keys import ari_cert_id, load_certificate
from lecp.outcome import DEFERRED, FAILED, ISSUED, Outcome, Refused
from lecp.store import Store
from lecp.testing.fakeacme import PROBLEM, FakeACME

START = 1_800_000_000


class FakeCPanel:
    """The account's side of cPanel, in memory: one vhost, installs recorded."""

    def __init__(self, docroot):
        self.host = VirtualHost("a.test", "main", "a.test", docroot,
                                (DomainName("a.test", "main"), DomainName("www.a.test", "alias")))
        self.installed = {}
        self.fail_install = None
        self.hold = False  # when set, every call waits for its Deferred in self.held
        self.held = []
        self.calls = []

    async def _wait_if_held(self, call):
        self.calls.append(call)
        if self.hold:
            gate = Deferred()
            self.held.append(gate)
            await gate

    async def virtual_hosts(self):
        await self._wait_if_held("virtual_hosts")
        return [self.host]

    async def install_ssl(self, vhost, cert, key, cabundle=""):
        await self._wait_if_held("install_ssl")
        if self.fail_install:
            raise CPanelError("UAPI", "install_ssl", (self.fail_install,), "SSL")
        self.installed[vhost] = cert
        return InstallResult("cert-1", "key-1", vhost, f"installed on {vhost}", (), ())

    async def installed_hosts(self):
        info = CertificateInfo("cert-1", (), None, None, None, None, None, False, "", None, None)
        return [InstalledHost(v, (v,), (), "", info, pem) for v, pem in self.installed.items()]


class JobsTests(SynchronousTestCase):
    """Jobs with every collaborator faked."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(START)
        self.ca = FakeACME(self.clock)
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.home, "public_html"))
        self.cpanel = FakeCPanel(os.path.join(self.home, "public_html"))
        self.notified = []
        self.config = Config(directory=self.ca.directory_url, key_type="ecdsa:p-256", page_deadline=20)

        def acme_factory(directory, key, url):
            return ACMEClient.create(StubTreq(self.ca), self.clock, directory, key, account_url=url)

        async def notify(vhost):
            self.notified.append(vhost)
            return True

        self.jobs = Jobs(self.clock, self.config, Store(self.home), self.cpanel, acme_factory, None, notify)

    def drive(self, coroutine, max_seconds=600):
        d = Deferred.fromCoroutine(coroutine)
        until = self.clock.seconds() + max_seconds
        while not d.called and self.clock.getDelayedCalls() and self.clock.seconds() < until:
            self.clock.advance(min(c.getTime() for c in self.clock.getDelayedCalls()) - self.clock.seconds())
        return d

    def issue(self, **kw):
        return self.successResultOf(self.drive(self.jobs.issue("a.test", ["www.a.test"], **kw)))

    def test_issued(self):
        """Issued and installed; the account URL is remembered for the directory."""
        outcome = self.issue()
        self.assertEqual((outcome.kind, outcome.names), (ISSUED, ("a.test", "www.a.test")))
        document = self.jobs.store.read()
        self.assertTrue(document.account_url(self.ca.directory_url))
        self.assertEqual(document.certificate("a.test").cert_id, "cert-1")
        self.assertIn("a.test", self.cpanel.installed)

    def test_deadline_defers_and_tells_the_daemon(self):
        """Still processing at the page's deadline: deferred, pending stored with its key, daemon told."""
        self.ca.processing_polls = 10_000
        outcome = self.issue(deadline=20)
        self.assertEqual(outcome.kind, DEFERRED)
        self.assertEqual(self.notified, ["a.test"])
        pending = self.jobs.store.read().pending()["a.test"]
        self.assertIn("PRIVATE KEY", pending.key_pem)
        self.assertEqual(pending.order_url, outcome.order_url)
        self.assertLessEqual(self.clock.seconds(), START + 20)
        self.assertEqual(self.jobs.store.read().raw["lecp_jobs"], {})

    def test_network_failure_after_ordering_defers(self):
        """A CA that fails after the order exists leaves a resumable pending order, with the error kept."""
        self.ca.processing_polls = 10_000
        original = self.ca._order

        def broken(path, payload, account):
            from lecp.testing.fakeacme import _Problem

            raise _Problem(500, "serverInternal", "database on fire")

        self.ca._order = broken
        outcome = self.issue()
        self.assertEqual(outcome.kind, DEFERRED)
        self.assertIn("database on fire", self.jobs.store.read().pending()["a.test"].last_error)
        self.ca._order = original

    def test_rate_limited(self):
        """A rate limit is a failed outcome that says until when."""
        self.ca.reject_new_orders = (429, "rateLimited", "too many", {"Retry-After": "7200"})
        outcome = self.issue()
        self.assertEqual((outcome.kind, outcome.error_type, outcome.retry_after), (FAILED, "rate_limit", START + 7200))
        self.assertEqual(self.jobs.store.read().pending(), {})

    def test_validation_failure(self):
        """A name failing validation gives per-name problems, and no pending order is left."""
        self.ca.failures = {"www.a.test": {"type": PROBLEM + "unauthorized", "detail": "Invalid response from x: 404"}}
        outcome = self.issue()
        self.assertEqual((outcome.kind, outcome.error_type), (FAILED, "validation"))
        self.assertEqual([p.name for p in outcome.problems], ["www.a.test"])
        self.assertIn("HTTP 404", outcome.problems[0].reason)
        self.assertEqual(self.jobs.store.read().pending(), {})

    def test_install_failure_keeps_the_certificate(self):
        """When cPanel cannot install, the certificate and key are kept for Reinstall."""
        self.cpanel.fail_install = "Apache is down"
        outcome = self.issue()
        self.assertEqual((outcome.kind, outcome.error_type), (FAILED, "cpanel"))
        self.assertIn("Apache is down", outcome.message)
        record = self.jobs.store.read().certificate("a.test")
        self.assertIn("PRIVATE KEY", record.key_pem)
        self.assertEqual(record.cert_id, "")
        self.cpanel.fail_install = None
        self.assertEqual(self.successResultOf(self.drive(self.jobs.reinstall("a.test"))).kind, "reinstalled")

    def test_renewal_sends_replaces_when_the_ca_offers_ari(self):
        """With ARI in the directory, a renewal carries the old certificate's CertID and keeps the key."""
        self.issue()
        old = self.jobs.store.read().certificate("a.test")
        self.ca.ari = True  # a later process, whose client finds ARI in the directory
        self.jobs = attrs.evolve(self.jobs, acme_factory=lambda d, k, u: ACMEClient.create(
            StubTreq(self.ca), self.clock, d, k, account_url=u))
        outcome = self.successResultOf(self.drive(self.jobs.renew("a.test")))
        self.assertEqual(outcome.kind, ISSUED)
        order = list(self.ca.orders.values())[-1]
        self.assertEqual(order["_replaces"], ari_cert_id(load_certificate(old.cert_pem)))
        self.assertEqual(self.jobs.store.read().certificate("a.test").key_pem, old.key_pem)

    def test_view(self):
        """View shows the names, issuer, validity and chains of the stored certificate."""
        self.ca.alternate_chains = 1
        self.issue()
        view = self.successResultOf(self.drive(self.jobs.view("a.test")))
        self.assertEqual(view.names, ("a.test", "www.a.test"))
        self.assertEqual(view.issuer, "Fake Intermediate")
        self.assertEqual(view.not_after - view.not_before, 90 * 86400)
        self.assertEqual(len(view.chains), 2)
        self.assertTrue(view.installed)
        self.assertEqual(view.to_json()["names"], ["a.test", "www.a.test"])

    def test_settings_and_refusals(self):
        """Mail settings are stored; unknown vhosts and missing certificates are refused."""
        self.jobs.set_mail(False)
        self.assertTrue(self.jobs.store.read().disable_mail)
        failure = self.failureResultOf(self.drive(self.jobs.renew("a.test")), Refused)
        self.assertEqual(failure.value.status, 404)
        failure = self.failureResultOf(self.drive(self.jobs.issue("b.test")), Refused)
        self.assertIn("not a website of this account", failure.value.message)

    def test_jobs_at_once_share_one_website_list_and_take_turns_to_install(self):
        """Jobs of one batch running at once ask cPanel for the websites once and install one at a time."""
        self.issue()
        record = self.jobs.store.read().certificate("a.test")
        self.jobs._hosts = None
        self.cpanel.calls.clear()
        self.cpanel.hold = True
        lists = [Deferred.fromCoroutine(self.jobs.virtual_hosts()) for _ in range(3)]
        self.assertEqual(self.cpanel.calls, ["virtual_hosts"])
        self.cpanel.held.pop().callback(None)
        self.assertEqual([self.successResultOf(d)[0].name for d in lists], ["a.test"] * 3)
        installs = [Deferred.fromCoroutine(self.jobs.install(record)) for _ in range(2)]
        self.assertEqual(self.cpanel.calls, ["virtual_hosts", "install_ssl"])
        self.cpanel.held.pop().callback(None)
        self.assertEqual(self.cpanel.calls, ["virtual_hosts", "install_ssl", "install_ssl"])
        self.cpanel.held.pop().callback(None)
        self.assertEqual([self.successResultOf(d).kind for d in installs], [ISSUED, ISSUED])

    def test_jobs_of_one_process_share_one_acme_client(self):
        """A batch's jobs ask the CA for its directory, a first nonce and the account only once."""
        self.issue()
        self.assertEqual(self.successResultOf(self.drive(self.jobs.renew("a.test"))).kind, ISSUED)
        self.assertEqual(self.ca.paths("GET").count("/directory"), 1)
        self.assertEqual(self.ca.paths("HEAD").count("/nonce") + self.ca.paths("GET").count("/nonce"), 1)
        self.assertEqual(self.ca.paths("POST").count("/new-account"), 1)

    def test_outcome_json_round_trip(self):
        """An outcome survives JSON, as the worker hands it to the daemon."""
        self.ca.failures = {"www.a.test": None}
        outcome = self.issue()
        self.assertEqual(Outcome.from_json(outcome.to_json()), outcome)
