"""
One-click issuance end to end: lecp.issuance against a real Pebble and the cPanel emulator, the
emulator's web server answering Pebble's HTTP-01 checks from each vhost's document root.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile

from cryptography import x509
from twisted.internet.defer import gatherResults

from lecp.config import Config
from lecp.cpanel import CPanel, LiveAPI
from lecp.issuance import Jobs
from lecp.keys import certificate_facts, key_matches_certificate, load_certificate, load_private_key, split_pem_chain
from lecp.outcome import DEFERRED, FAILED, ISSUED, PREFLIGHT_FAILED, REINSTALLED, REMOVED, Refused
from lecp.preflight import preflight
from lecp.store import Store
from lecp.testing.acmeproxy import start_proxy
from lecp.testing.cpanel.build import create_server
from lecp.testing.cpanel.liveapi import listen_liveapi
from lecp.testing.cpanel.web import listen_web
from lecp.testing.pebble import PebbleSettings
from tests.integration.support import PebbleTestCase

SPEC = {
    "hostname": "server.lecp.test",
    "self_signed_key_type": "ecdsa:p-256",
    "accounts": [
        {"user": "alice", "domain": "alice.test", "addon": ["shop.test"], "sub": ["blog.alice.test"], "parked": ["alias.test"]},
        {"user": "bob", "domain": "bob.test"},
    ],
}


class IssuanceTestCase(PebbleTestCase):
    """Pebble, an emulated server with alice and bob, and Jobs for alice."""

    settings = PebbleSettings(nosleep=True, alternate_roots=1)
    serve_webroot = False  # the emulator's web server answers Pebble's HTTP-01 checks

    def setUp(self):
        super().setUp()
        self.server = create_server(os.path.abspath(self.mktemp()), SPEC)
        self.sockets = tempfile.mkdtemp(prefix="lecp-test-")
        self.ports = [
            listen_web(self.reactor, self.pebble.http_port, self.server),
            listen_liveapi(self.reactor, os.path.join(self.sockets, "alice.sock"), self.server, "alice"),
        ]
        self.live = LiveAPI(self.reactor, os.path.join(self.sockets, "alice.sock"))
        self.cpanel = CPanel(self.live)
        self.home = self.server.account("alice")["home"]
        self.store = Store(self.home)
        self.acme_clients = []
        self.jobs = self.make_jobs(self.pebble.directory_url)

    def make_jobs(self, directory, **overrides):
        config = Config(directory=directory, staging_directory=directory, ca_bundle=self.pebble.ca_bundle,
                        key_type="ecdsa:p-256", preflight_port=self.pebble.http_port,
                        preflight_resolve=f"dns:127.0.0.1:{self.pebble.dns_port}",
                        daemon_socket=os.path.join(self.sockets, "no-daemon.sock"), **overrides)
        jobs = Jobs.create(self.reactor, config, self.store, self.cpanel, http=self.http)
        original = jobs.acme_factory

        def counting(*args):
            client = original(*args)
            self.acme_clients.append(client)
            return client

        jobs.acme_factory = counting
        return jobs

    def tearDown(self):
        self.live.close()
        stopped = gatherResults([p.stopListening() for p in self.ports] + [self.pool.closeCachedConnections()])
        return stopped.addBoth(lambda result: (shutil.rmtree(self.sockets, True), result)[1])

    async def installed(self, vhost):
        for host in await self.cpanel.installed_hosts():
            if host.servername == vhost:
                return host
        return None


class IssueTests(IssuanceTestCase):
    """Issuing, refusing, deferring and resuming."""

    async def test_issue_three_names(self):
        """Main, www and an alias: issued, installed on the vhost, chained to Pebble's root, kept in the store."""
        outcome = await self.jobs.issue("alice.test", ["alice.test", "www.alice.test", "alias.test"])
        self.assertEqual(outcome.kind, ISSUED, outcome)
        self.assertEqual(outcome.names, ("alice.test", "www.alice.test", "alias.test"))
        host = await self.installed("alice.test")
        record = self.store.read().certificate("alice.test")
        self.assertEqual(host.certificate.id, record.cert_id)
        self.assertTrue(record.key_id)
        self.assertEqual(sorted(certificate_facts(host.certificate_pem).names), sorted(outcome.names))
        self.assertTrue(key_matches_certificate(load_private_key(record.key_pem), load_certificate(record.cert_pem)))
        chain = [x509.load_pem_x509_certificate(p.encode()) for p in split_pem_chain(record.cert_pem + record.chain_pem)]
        chain.append(x509.load_pem_x509_certificate(self.pebble.issuing_roots()[0].encode()))
        for child, parent in zip(chain, chain[1:]):
            child.verify_directly_issued_by(parent)
        self.assertEqual(stat.S_IMODE(os.stat(self.store.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.store.folder).st_mode), 0o700)
        self.assertEqual(self.store.read().pending(), {})
        self.assertEqual(len(record.alternate_chains), 2)
        docroot = self.server.account("alice")["main_domain"]["documentroot"]
        self.assertEqual(os.listdir(os.path.join(docroot, ".well-known", "acme-challenge")), [])

    async def test_foreign_names_refused_before_any_acme_request(self):
        """A name of bob's account, or of another of alice's vhosts, is refused with no ACME request made."""
        with self.assertRaises(Refused) as caught:
            await self.jobs.issue("alice.test", ["alice.test", "bob.test"])
        self.assertIn("bob.test cannot be added to the certificate of alice.test: it is not a domain of this account",
                      caught.exception.message)
        with self.assertRaises(Refused) as caught:
            await self.jobs.issue("alice.test", ["shop.test"])
        self.assertIn("it belongs to the website shop.test", caught.exception.message)
        with self.assertRaises(Refused) as caught:
            await self.jobs.issue("bob.test", ["bob.test"])
        self.assertEqual(caught.exception.status, 400)
        self.assertEqual(self.acme_clients, [])
        self.assertFalse(os.path.exists(self.store.path))

    async def test_names_normalised(self):
        """Upper case, trailing dots and the vhost's own name left out are all accepted."""
        outcome = await self.jobs.issue("Alice.Test.", ["WWW.alice.test."])
        self.assertEqual(outcome.names, ("alice.test", "www.alice.test"))

    async def test_key_type_not_offered(self):
        """A key type outside the configured list is refused."""
        with self.assertRaises(Refused) as caught:
            await self.jobs.issue("alice.test", [], key_type="rsa:1024")
        self.assertIn("rsa:1024 is not offered", caught.exception.message)

    async def test_second_issuance_while_one_runs(self):
        """While an issuance runs for a vhost, another one is refused with 409."""
        with self.store.update() as document:
            document.start_job("alice.test", "issuance", self.reactor.seconds())
        with self.assertRaises(Refused) as caught:
            await self.jobs.issue("alice.test", [])
        self.assertEqual(caught.exception.status, 409)
        self.assertIn("already running", caught.exception.message)

    async def test_deferred_then_resumed_with_the_same_key(self):
        """An order held in processing past the deadline is deferred, kept with its key, and resume installs it."""
        proxy = start_proxy(self.reactor, self.pebble)
        self.addCleanup(proxy.stop)
        proxy.controls.hold_orders = True
        jobs = self.make_jobs(proxy.directory_url)
        outcome = await jobs.issue("shop.test", ["shop.test", "www.shop.test"], deadline=1.5)
        self.assertEqual(outcome.kind, DEFERRED, outcome)
        pending = self.store.read().pending()["shop.test"]
        self.assertEqual(pending.order_url, outcome.order_url)
        self.assertIsNone(await self.installed("shop.alice.test"))
        proxy.controls.hold_orders = False
        resumed = await jobs.resume("shop.test")
        self.assertEqual(resumed.kind, ISSUED, resumed)
        host = await self.installed("shop.alice.test")
        self.assertTrue(key_matches_certificate(load_private_key(pending.key_pem), load_certificate(host.certificate_pem)))
        self.assertEqual(self.store.read().pending(), {})

    async def test_dry_run_changes_nothing(self):
        """A dry run gets a certificate from the staging directory and stores and installs nothing."""
        outcome = await self.jobs.issue("alice.test", ["www.alice.test"], dry_run=True)
        self.assertEqual((outcome.kind, outcome.dry_run), (ISSUED, True))
        self.assertIn("dry run succeeded", outcome.message)
        self.assertFalse(os.path.exists(self.store.path))
        self.assertIsNone(await self.installed("alice.test"))


class PreflightTests(IssuanceTestCase):
    """Names that do not reach this server are caught before the CA is asked."""

    async def test_unreachable_name_stops_issuance(self):
        """A name whose DNS points where nothing listens is reported with the reason; nothing is ordered."""
        self.pebble.set_ipv4("www.blog.alice.test", "127.0.0.2")
        outcome = await self.jobs.issue("blog.alice.test", ["www.blog.alice.test"])
        self.assertEqual(outcome.kind, PREFLIGHT_FAILED)
        [problem] = outcome.problems
        self.assertEqual(problem.name, "www.blog.alice.test")
        self.assertIn("connection refused", problem.reason)
        self.assertIn("port 80", problem.advice)
        self.assertEqual(self.acme_clients, [])

    async def test_skip_failed_names(self):
        """With skip_failed_names, the names that passed are issued."""
        self.pebble.set_ipv4("www.blog.alice.test", "127.0.0.2")
        outcome = await self.jobs.issue("blog.alice.test", ["www.blog.alice.test"], skip_failed_names=True)
        self.assertEqual((outcome.kind, outcome.names), (ISSUED, ("blog.alice.test",)))

    async def test_each_reason(self):
        """DNS pointing elsewhere, a 404, and a redirect loop are told apart."""
        docroot = self.server.account("alice")["main_domain"]["documentroot"]
        results = await preflight(self.reactor, {"alice.test": docroot, "www.alice.test": "/nonexistent"},
                                  self.pebble.http_port, 5, f"dns:127.0.0.1:{self.pebble.dns_port}")
        self.assertTrue(results[0].ok)
        self.assertFalse(results[1].ok)
        self.assertIn("could not be written", results[1].reason)
        other_root = self.server.account("alice")["addon_domains"][0]["documentroot"]
        results = await preflight(self.reactor, {"alice.test": other_root}, self.pebble.http_port, 5,
                                  f"dns:127.0.0.1:{self.pebble.dns_port}")
        self.assertIn("HTTP 404", results[0].reason)

    async def test_well_known_is_a_file(self):
        """A .well-known that is a file fails the pre-flight, and without pre-flight fails the order cleanly."""
        docroot = self.server.account("alice")["sub_domains"][0]["documentroot"]
        with open(os.path.join(docroot, ".well-known"), "w") as f:
            f.write("not a folder")
        outcome = await self.jobs.issue("blog.alice.test", [])
        self.assertEqual(outcome.kind, PREFLIGHT_FAILED)
        jobs = self.make_jobs(self.pebble.directory_url, preflight=False)
        outcome = await jobs.issue("blog.alice.test", [])
        self.assertEqual((outcome.kind, outcome.error_type), (FAILED, "webroot"))
        self.assertEqual(self.store.read().pending(), {})


class LifecycleTests(IssuanceTestCase):
    """Renewal, reinstallation, removal."""

    async def test_renewal_keeps_the_key(self):
        """A renewal gets a new certificate for the same names with the same private key."""
        first = await self.jobs.issue("alice.test", ["www.alice.test"])
        before = self.store.read().certificate("alice.test")
        renewed = await self.jobs.renew("alice.test")
        self.assertEqual(renewed.kind, ISSUED, renewed)
        after = self.store.read().certificate("alice.test")
        self.assertEqual(after.key_pem, before.key_pem)
        self.assertNotEqual(certificate_facts(after.cert_pem).serial, certificate_facts(before.cert_pem).serial)
        self.assertEqual(after.names, before.names)
        self.assertEqual((await self.installed("alice.test")).certificate.id, after.cert_id)
        self.assertEqual(first.names, renewed.names)

    async def test_removal_leaves_cpanel_and_store_clean(self):
        """Removing uninstalls, deletes the certificate and key from SSL/TLS Manager, and forgets it."""
        await self.jobs.issue("alice.test", [])
        record = self.store.read().certificate("alice.test")
        outcome = await self.jobs.remove("alice.test")
        self.assertEqual(outcome.kind, REMOVED)
        self.assertIsNone(await self.installed("alice.test"))
        stored = await self.cpanel.stored_certificates()
        self.assertNotIn(record.cert_id, [c.id for c in stored])
        self.assertIsNone(self.store.read().certificate("alice.test"))
        with self.assertRaises(Refused):
            await self.jobs.remove("alice.test")

    async def test_removal_leaves_someone_elses_certificate(self):
        """If another certificate was installed over lecp's meanwhile, removal leaves it installed."""
        from lecp.keys import certificate_to_pem, generate_private_key, make_self_signed_certificate, private_key_to_pem

        await self.jobs.issue("alice.test", [])
        key = generate_private_key("ecdsa:p-256")
        other = certificate_to_pem(make_self_signed_certificate(key, ["alice.test"]))
        await self.cpanel.install_ssl("alice.test", other, private_key_to_pem(key).decode())
        await self.jobs.remove("alice.test")
        self.assertEqual((await self.installed("alice.test")).certificate_pem.strip(), other.strip())

    async def test_reinstall_with_a_chosen_chain(self):
        """Reinstall puts the certificate back after it was removed in cPanel, with the chain asked for."""
        await self.jobs.issue("alice.test", [])
        await self.cpanel.delete_ssl("alice.test")
        record = self.store.read().certificate("alice.test")
        alternate = next(name for name in record.alternate_chains if record.alternate_chains[name] != record.chain_pem)
        outcome = await self.jobs.reinstall("alice.test", alternate)
        self.assertEqual(outcome.kind, REINSTALLED)
        installed_chain = open(os.path.join(self.server.installed_dir("alice.test"), "certificates")).read()
        self.assertIn(record.alternate_chains[alternate].strip(), installed_chain)
        self.assertEqual(self.store.read().certificate("alice.test").preferred_issuer, alternate)
        with self.assertRaises(Refused):
            await self.jobs.reinstall("alice.test", "No Such CA")

    async def test_reuse_checks(self):
        """Re-use is refused when the certificate covers none of the target's names, or the target has its own."""
        await self.jobs.issue("alice.test", [])
        with self.assertRaises(Refused) as caught:
            await self.jobs.reuse("alice.test", "shop.test")
        self.assertIn("covers none of the names of shop.test", caught.exception.message)
        await self.jobs.issue("shop.test", [])
        with self.assertRaises(Refused) as caught:
            await self.jobs.reuse("alice.test", "shop.test")
        self.assertEqual(caught.exception.status, 409)
        self.assertIsNotNone(self.store.read().certificate("shop.test"))
