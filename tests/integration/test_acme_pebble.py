"""lecp.acme against a real Pebble: issuance, chains, failures, recovery, the command line."""

from __future__ import annotations

import os
import stat
import sys

from cryptography import x509

from lecp.acme.client import IssuedCertificate
from lecp.acme.errors import ValidationFailed
from lecp.keys import certificate_facts, generate_private_key, key_matches_certificate, load_certificate, make_csr, split_pem_chain
from lecp.testing.pebble import PebbleSettings
from tests.integration.support import PebbleTestCase, fresh_names


def assert_chain_to_root(test, fullchain_pem: str, root_pem: str) -> None:
    """Each certificate is signed by the next, and the last by the root."""
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in split_pem_chain(fullchain_pem)]
    chain.append(x509.load_pem_x509_certificate(root_pem.encode()))
    for child, parent in zip(chain, chain[1:]):
        child.verify_directly_issued_by(parent)
    test.assertGreaterEqual(len(chain), 3)


class FastPebbleTests(PebbleTestCase):
    """Pebble with PEBBLE_VA_NOSLEEP=1."""

    settings = PebbleSettings(nosleep=True, alternate_roots=1, chain_length=2)

    async def test_two_name_rsa2048_issuance(self):
        """A 2-name RSA-2048 order ends in a certificate for both names, chaining to Pebble's root."""
        names = fresh_names(2)
        key = generate_private_key("rsa:2048")
        client = self.make_client()
        result = await client.issue(names, make_csr(key, names), self.responder, self.reactor.seconds() + 60)
        self.assertIsInstance(result, IssuedCertificate)
        self.assertEqual(sorted(certificate_facts(result.fullchain_pem).names), sorted(names))
        self.assertTrue(key_matches_certificate(key, load_certificate(result.fullchain_pem)))
        roots = self.pebble.issuing_roots()
        assert_chain_to_root(self, result.fullchain_pem, roots[0])
        self.assertEqual(len(result.alternate_chains), 1)
        assert_chain_to_root(self, result.alternate_chains[0], roots[1])
        self.assertEqual(os.listdir(os.path.join(self.webroot, ".well-known", "acme-challenge")), [])

    async def test_every_key_type(self):
        """Pebble issues for every key type lecp offers."""
        client = self.make_client()
        for key_type in ("rsa:3072", "ecdsa:p-256", "ecdsa:p-384"):
            names = fresh_names(1)
            key = generate_private_key(key_type)
            result = await client.issue(names, make_csr(key, names), self.responder, self.reactor.seconds() + 60)
            self.assertEqual(str(certificate_facts(result.fullchain_pem).key_type), key_type)

    async def test_lost_account_recovered(self):
        """A client holding an account URL the CA does not know registers again and issues."""
        stale = self.pebble.directory_url.replace("/dir", "/my-account/gone")
        client = self.make_client(account_url=stale)
        names = fresh_names(1)
        result = await client.issue(names, make_csr(generate_private_key("ecdsa:p-256"), names), self.responder)
        self.assertIsInstance(result, IssuedCertificate)
        self.assertNotEqual(client.account_url, stale)

    async def test_find_existing_account(self):
        """onlyReturnExisting finds the account a key registered before, and None for a new key."""
        key = generate_private_key("ecdsa:p-256")
        url = await self.make_client(key).register()
        self.assertEqual(await self.make_client(key).find_account(), url)
        self.assertIsNone(await self.make_client().find_account())

    async def test_missing_challenge_file_fails_with_reason(self):
        """When the webroot does not serve the file, the error names the domain, the URL and the HTTP status."""

        class Forgetful:
            challenge_type = "http-01"

            def start_responding(self, identifier, token, key_authorization):
                pass

            def stop_responding(self, identifier, token):
                pass

        names = fresh_names(1)
        client = self.make_client()
        with self.assertRaises(ValidationFailed) as caught:
            await client.issue(names, make_csr(generate_private_key("ecdsa:p-256"), names), Forgetful())
        message = str(caught.exception)
        self.assertIn(f"{names[0]}: the CA could not reach http://{names[0]}", message)
        self.assertIn("/.well-known/acme-challenge/", message)
        self.assertIn("404", message)

    async def test_unreachable_domain_fails_with_connection_refused(self):
        """A name whose DNS points where nothing listens fails with 'connection refused', at once."""
        names = fresh_names(1)
        self.pebble.set_ipv4(names[0], "127.0.0.2")
        client = self.make_client()
        start = self.reactor.seconds()
        with self.assertRaises(ValidationFailed) as caught:
            await client.issue(names, make_csr(generate_private_key("ecdsa:p-256"), names), self.responder)
        self.assertIn("connection refused", str(caught.exception))
        self.assertLess(self.reactor.seconds() - start, 15)

    async def test_revoke(self):
        """A certificate lecp issued can be revoked by its account."""
        names = fresh_names(1)
        client = self.make_client()
        result = await client.issue(names, make_csr(generate_private_key("ecdsa:p-256"), names), self.responder)
        await client.revoke(load_certificate(result.fullchain_pem))

    async def test_command_line_issue(self):
        """python -m lecp.acme issue writes privkey.pem (0600), fullchain.pem and the account key; exit 0."""
        from twisted.internet.utils import getProcessOutputAndValue

        out = os.path.abspath(self.mktemp())
        names = fresh_names(2)
        args = ["-m", "lecp.acme", "issue", "--directory", self.pebble.directory_url, "--ca-bundle",
                self.pebble.ca_bundle, "--webroot", self.webroot, "--key-type", "rsa:2048", "--out", out, *names]
        stdout, stderr, code = await getProcessOutputAndValue(sys.executable, args, env=os.environ)
        self.assertEqual((code, stderr), (0, b""))
        self.assertEqual(sorted(os.listdir(out)), ["account.key", "fullchain.pem", "privkey.pem"])
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(out, "privkey.pem")).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(out, "account.key")).st_mode), 0o600)
        with open(os.path.join(out, "fullchain.pem")) as f:
            self.assertEqual(sorted(certificate_facts(f.read()).names), sorted(names))

    async def test_command_line_errors(self):
        """Bad input exits non-zero with one line on stderr and writes nothing."""
        from twisted.internet.utils import getProcessOutputAndValue

        out = os.path.abspath(self.mktemp())
        args = ["-m", "lecp.acme", "issue", "--directory", self.pebble.directory_url, "--ca-bundle",
                self.pebble.ca_bundle, "--webroot", self.webroot, "--key-type", "rsa:1024", "--out", out, "a.example.com"]
        stdout, stderr, code = await getProcessOutputAndValue(sys.executable, args, env=os.environ)
        self.assertEqual(code, 1)
        self.assertEqual(stderr.count(b"\n"), 1)
        self.assertIn(b"unknown key type 'rsa:1024'", stderr)
        self.assertFalse(os.path.exists(out))

    async def test_command_line_unreachable_ca(self):
        """An unreachable directory is reported in one line, exit 1."""
        from twisted.internet.utils import getProcessOutputAndValue

        args = ["-m", "lecp.acme", "issue", "--directory", "https://127.0.0.1:1/dir", "--webroot", self.webroot,
                "--out", os.path.abspath(self.mktemp()), "a.example.com"]
        stdout, stderr, code = await getProcessOutputAndValue(sys.executable, args, env=os.environ)
        self.assertEqual(code, 1)
        self.assertEqual(stderr.count(b"\n"), 1)
        self.assertIn(b"could not talk to the CA at https://127.0.0.1:1/dir", stderr)


class DefaultPebbleTests(PebbleTestCase):
    """Pebble as shipped: validation sleeps 0-4 s, 5 % of nonces rejected, 50 % authz reuse."""

    settings = PebbleSettings.defaults()

    async def test_two_name_issuance(self):
        """A 2-name order succeeds despite validation delays and bad nonces."""
        names = fresh_names(2)
        client = self.make_client()
        result = await client.issue(names, make_csr(generate_private_key("rsa:2048"), names), self.responder)
        self.assertEqual(sorted(certificate_facts(result.fullchain_pem).names), sorted(names))

    async def test_thirty_consecutive_issuances(self):
        """
        30 issuances (3 accounts, 10 in a row each, run side by side to save wall time), with
        names reused half the time: not a single failure, and badNonce answers were met and absorbed.
        `make soak` runs 200 (LECP_LOAD_ISSUANCES).
        """
        import os

        from twisted.internet.defer import Deferred, gatherResults

        key = generate_private_key("ecdsa:p-256")
        per_lane = -(-int(os.environ.get("LECP_LOAD_ISSUANCES", "30")) // 3)

        async def lane(client):
            first = fresh_names(2)
            for i in range(per_lane):
                names = first if i % 2 else fresh_names(2)  # reuse exercises Pebble's authz reuse
                result = await client.issue(names, make_csr(key, names), self.responder, self.reactor.seconds() + 60)
                self.assertIsInstance(result, IssuedCertificate, f"issuance {i + 1}: {result}")
            return client.bad_nonces_retried

        clients = [self.make_client() for _ in range(3)]
        retried = await gatherResults([Deferred.fromCoroutine(lane(c)) for c in clients])
        self.assertGreater(sum(retried), 0)

    test_thirty_consecutive_issuances.timeout = 3600
