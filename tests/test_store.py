"""Tests for L{lecp.store}: layout compatibility, atomicity, locking, refusal of unsafe files, corruption."""

from __future__ import annotations

import json
import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from lecp.store import CertRecord, Document, PendingOrder, Store, StoreCorrupted, UnsafeStore

# A document as the original FleetSSL plugin wrote it (fields from reference/fleetssl.md §4).
ORIGINAL = {
    "accountkey": "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n",
    "last_renewal_check": 1700000000,
    "disable_mail": True,
    "cert_reuses": {"shop.example": "example.com"},
    "certs": {
        "example.com": {
            "domain": "example.com", "url": "https://acme/order/1", "key": "KEY", "cert": "CERT", "issuer": "CHAIN",
            "key_id": "k1", "cert_id": "c1", "cert_expiry": 1767225599,
            "alt_names": ["example.com", "www.example.com"], "challenge_method": "",
            "alternate_chains": {"R11": "CHAIN"}, "preferred_issuer": "", "some_future_field": 7,
        }
    },
}


class StoreTests(SynchronousTestCase):
    """The user's document."""

    def setUp(self):
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(self.home)
        self.store = Store(self.home)

    def write_raw(self, data: bytes):
        os.makedirs(self.store.folder, exist_ok=True)
        with open(self.store.path, "wb") as f:
            f.write(data)

    def test_missing_document_is_empty(self):
        """No document yet reads as an empty one, and reading creates nothing."""
        self.assertEqual(self.store.read().certificates(), {})
        self.assertFalse(os.path.exists(os.path.join(self.home, ".cpanel")))

    def test_original_plugin_document_loads_and_round_trips(self):
        """A FleetSSL document loads as it is; rewriting it keeps every field, unknown ones included."""
        self.write_raw(json.dumps(ORIGINAL).encode())
        document = self.store.read()
        record = document.certificate("example.com")
        self.assertEqual((record.cert_id, record.key_id, record.expiry), ("c1", "k1", 1767225599))
        self.assertEqual(record.names, ["example.com", "www.example.com"])
        self.assertEqual(record.challenge_method, "http-01")
        self.assertTrue(document.disable_mail)
        self.assertEqual(document.reuses(), {"shop.example": "example.com"})
        with self.store.update() as document:
            document.put_certificate(document.certificate("example.com"))
            document.set_account_url("https://acme/dir", "https://acme/acct/1")
        raw = json.loads(open(self.store.path).read())
        self.assertEqual(raw["certs"]["example.com"]["some_future_field"], 7)
        self.assertEqual(raw["accountkey"], ORIGINAL["accountkey"])
        self.assertEqual(raw["last_renewal_check"], 1700000000)
        self.assertEqual(raw["lecp_schema"], 1)
        self.assertEqual(raw["lecp_accounts"], {"https://acme/dir": "https://acme/acct/1"})

    def test_modes(self):
        """The document is 0600 and the folders 0700, and no temporary file is left."""
        with self.store.update() as document:
            document.disable_mail = True
        self.assertEqual(stat.S_IMODE(os.stat(self.store.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.store.folder).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.store.folder)).st_mode), 0o700)
        self.assertEqual(sorted(os.listdir(self.store.folder)), ["letsencrypt-cpanel", "letsencrypt-cpanel.lock"])

    def test_temporaries_of_dead_writers_are_swept(self):
        """A temporary copy left by a writer killed before its rename goes at the next update; others stay."""
        with self.store.update() as document:
            document.disable_mail = True
        for name in (".letsencrypt-cpanel.0123456789ab.tmp", "unrelated.tmp"):
            with open(os.path.join(self.store.folder, name), "w") as f:
                f.write('{"accountkey": "SECRET"}')
        self.assertIn(".letsencrypt-cpanel.0123456789ab.tmp", os.listdir(self.store.folder))  # reads leave it
        self.store.read()
        self.assertIn(".letsencrypt-cpanel.0123456789ab.tmp", os.listdir(self.store.folder))
        with self.store.update():
            pass
        self.assertEqual(sorted(os.listdir(self.store.folder)),
                         ["letsencrypt-cpanel", "letsencrypt-cpanel.lock", "unrelated.tmp"])

    def test_unchanged_update_writes_nothing(self):
        """An update that changes nothing leaves the file untouched."""
        with self.store.update() as document:
            document.disable_mail = True
        before = os.stat(self.store.path).st_ino
        with self.store.update() as document:
            document.disable_mail = True
        self.assertEqual(os.stat(self.store.path).st_ino, before)

    def test_failed_update_changes_nothing(self):
        """An exception inside an update leaves the document as it was."""
        with self.store.update() as document:
            document.disable_mail = True
        with self.assertRaises(RuntimeError):
            with self.store.update() as document:
                document.disable_mail = False
                raise RuntimeError("boom")
        self.assertTrue(self.store.read().disable_mail)

    def test_corrupt_document_kept_aside(self):
        """A document that does not parse is renamed, never replaced, and the error says where it went."""
        self.write_raw(b'{"certs": {"example.com": ')
        with self.assertRaises(StoreCorrupted) as caught:
            with self.store.update():
                pass
        kept = caught.exception.kept_as
        self.assertTrue(os.path.basename(kept).startswith("letsencrypt-cpanel.corrupt-"))
        with open(kept, "rb") as f:
            self.assertEqual(f.read(), b'{"certs": {"example.com": ')
        self.assertIn(kept, str(caught.exception))
        self.assertIn("keep working", str(caught.exception))
        with self.store.update() as document:
            document.disable_mail = True
        self.assertTrue(os.path.exists(kept))

    def test_wrong_shape_is_corrupt(self):
        """A JSON array, or certs that is not an object, counts as corrupt."""
        for data in (b"[1, 2]", b'{"certs": []}'):
            self.write_raw(data)
            self.assertRaises(StoreCorrupted, self.store.read)

    def test_symlinked_document_refused(self):
        """A document that is a symlink is neither read nor written through."""
        target = os.path.abspath(self.mktemp())
        with open(target, "w") as f:
            f.write(json.dumps({"certs": {}}))
        os.makedirs(self.store.folder)
        os.symlink(target, self.store.path)
        with self.assertRaises(UnsafeStore) as caught:
            self.store.read()
        self.assertIn("is a symlink", str(caught.exception))
        with self.assertRaises(UnsafeStore):
            with self.store.update() as document:
                document.disable_mail = True
        self.assertEqual(json.loads(open(target).read()), {"certs": {}})

    def test_symlinked_lock_and_folder_refused(self):
        """A lock that is a symlink, or an nvdata folder that is one, is refused."""
        target = os.path.abspath(self.mktemp())
        os.makedirs(target)
        os.makedirs(os.path.join(self.home, ".cpanel"))
        os.symlink(target, self.store.folder)
        with self.assertRaises(UnsafeStore):
            with self.store.update():
                pass
        self.assertEqual(os.listdir(target), [])
        os.unlink(self.store.folder)
        os.makedirs(self.store.folder)
        os.symlink(os.path.join(target, "x"), os.path.join(self.store.folder, "letsencrypt-cpanel.lock"))
        with self.assertRaises(UnsafeStore):
            with self.store.update():
                pass

    def test_foreign_owner_refused(self):
        """A document owned by another uid is refused, naming the owner."""
        with self.store.update() as document:
            document.disable_mail = True
        other = Store(self.home, uid=os.geteuid() + 4242)
        with self.assertRaises(UnsafeStore) as caught:
            other.read()
        self.assertIn(f"uid {os.geteuid() + 4242}", str(caught.exception))

    def test_pending_and_jobs(self):
        """Pending orders round-trip; a job marker of a dead process is ignored."""
        order = PendingOrder("example.com", "https://acme/order/9", "KEY", ("example.com",), "rsa:2048", "https://acme/dir", 10)
        with self.store.update() as document:
            document.put_pending(order)
            document.start_job("example.com", "issuance", 100.0)
            document.start_job("other.com", "renewal", 100.0, pid=2 ** 22 + 12345)
        document = self.store.read()
        self.assertEqual(document.pending()["example.com"], order)
        self.assertEqual(document.job("example.com", 101.0)["kind"], "issuance")
        self.assertIsNone(document.job("other.com", 101.0))
        self.assertIsNone(document.job("example.com", 100.0 + 31 * 60))


class CertRecordTests(SynchronousTestCase):
    """The record of one vhost's certificate."""

    def test_names_without_repeats(self):
        """Old daemons repeated the vhost in alt_names; names lists it once, first."""
        record = CertRecord.from_json("a.test", {"key": "K", "cert": "C", "alt_names": ["www.a.test", "a.test", "www.a.test"]})
        self.assertEqual(record.names, ["a.test", "www.a.test"])
        self.assertEqual(record.to_json()["alt_names"], ["www.a.test", "www.a.test"])

    def test_document_csrf_secret(self):
        """The CSRF secret is made once and kept."""
        document = Document()
        secret = document.ensure_csrf_secret()
        self.assertEqual(document.ensure_csrf_secret(), secret)
        self.assertGreaterEqual(len(secret), 40)
