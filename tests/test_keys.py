"""Tests for L{lecp.keys}."""

from __future__ import annotations

import base64
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from lecp import keys


class KeyTypeTests(SynchronousTestCase):
    """Parsing and generating key types."""

    def test_parse_every_accepted_type(self):
        """Each of Let's Encrypt's key types parses to itself."""
        for text in ("rsa:2048", "rsa:3072", "rsa:4096", "ecdsa:p-256", "ecdsa:p-384"):
            self.assertEqual(str(keys.parse_key_type(text)), text)

    def test_parse_forgives_case_and_underscore(self):
        """ECDSA:P_256 and ec:p-384 are understood."""
        self.assertEqual(str(keys.parse_key_type("ECDSA:P_256")), "ecdsa:p-256")
        self.assertEqual(str(keys.parse_key_type("ec:p-384")), "ecdsa:p-384")

    def test_parse_rejects_with_the_allowed_list(self):
        """An unaccepted type is refused, naming the accepted ones."""
        with self.assertRaises(ValueError) as caught:
            keys.parse_key_type("rsa:1024")
        self.assertIn("rsa:1024", str(caught.exception))
        self.assertIn("ecdsa:p-384", str(caught.exception))

    def test_generate_and_round_trip(self):
        """Generated keys have the asked type and survive PEM serialisation."""
        for text in ("rsa:2048", "ecdsa:p-256", "ecdsa:p-384"):
            key = keys.generate_private_key(text)
            again = keys.load_private_key(keys.private_key_to_pem(key))
            self.assertEqual(str(keys.key_type_of(again)), text)

    def test_defaults(self):
        """Domain keys default to RSA 4096 (the original specification), account keys to P-256."""
        self.assertEqual(keys.DEFAULT_DOMAIN_KEY_TYPE, "rsa:4096")
        self.assertEqual(keys.DEFAULT_ACCOUNT_KEY_TYPE, "ecdsa:p-256")

    def test_load_rejects_garbage_and_other_curves(self):
        """Non-keys and keys Let's Encrypt would refuse are rejected with a reason."""
        with self.assertRaises(ValueError):
            keys.load_private_key(b"not a key")
        other = ec.generate_private_key(ec.SECP521R1())
        with self.assertRaises(ValueError) as caught:
            keys.load_private_key(keys.private_key_to_pem(other))
        self.assertIn("secp521r1", str(caught.exception))


def _issued(ca_key, ca_name, leaf_key, names, serial):
    now = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name),
                                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test CA Org")]))
        .public_key(leaf_key.public_key()).serial_number(serial)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


class CertificateTests(SynchronousTestCase):
    """CSRs, certificate facts, ARI CertIDs and PEM chains."""

    def setUp(self):
        self.ca_key = keys.generate_private_key("ecdsa:p-256")
        self.leaf_key = keys.generate_private_key("ecdsa:p-256")

    def test_csr_has_every_name(self):
        """The CSR carries all names as SANs and the first as CN, signed by the key."""
        csr = keys.make_csr(self.leaf_key, ["a.example", "www.a.example"])
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["a.example", "www.a.example"])
        self.assertEqual(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, "a.example")
        self.assertTrue(csr.is_signature_valid)

    def test_csr_without_names_refused(self):
        """A CSR needs a name."""
        self.assertRaises(ValueError, keys.make_csr, self.leaf_key, [])

    def test_facts(self):
        """Names, issuer, validity, serial and key type are read from the certificate."""
        cert = _issued(self.ca_key, "R11", self.leaf_key, ["a.example", "www.a.example"], 0x1234)
        facts = keys.certificate_facts(keys.certificate_to_pem(cert))
        self.assertEqual(facts.names, ("a.example", "www.a.example"))
        self.assertEqual((facts.issuer_common_name, facts.issuer_organization), ("R11", "Test CA Org"))
        self.assertEqual(facts.lifetime, datetime.timedelta(days=90))
        self.assertEqual(facts.serial_hex, "1234")
        self.assertEqual(str(facts.key_type), "ecdsa:p-256")
        self.assertFalse(facts.is_self_signed)

    def test_ari_cert_id(self):
        """The CertID is base64url(AKI) '.' base64url(serial DER), with the sign byte when the high bit is set."""
        cert = _issued(self.ca_key, "R11", self.leaf_key, ["a.example"], 0x87654321)
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        expected = base64.urlsafe_b64encode(aki).rstrip(b"=").decode() + "." + "AIdlQyE"
        self.assertEqual(keys.ari_cert_id(cert), expected)

    def test_ari_cert_id_of_self_signed(self):
        """A certificate without an authority key identifier has no CertID."""
        cert = keys.make_self_signed_certificate(self.leaf_key, ["a.example"])
        self.assertIsNone(keys.ari_cert_id(cert))
        self.assertTrue(keys.certificate_facts(cert).is_self_signed)

    def test_split_and_join_chain(self):
        """A chain with CRLFs and blank lines splits into clean PEMs and joins without blank lines."""
        a = keys.certificate_to_pem(_issued(self.ca_key, "R11", self.leaf_key, ["a.example"], 1))
        b = keys.certificate_to_pem(_issued(self.ca_key, "R11", self.leaf_key, ["b.example"], 2))
        messy = "\n\n" + a.replace("\n", "\r\n") + "\n\n" + b
        parts = keys.split_pem_chain(messy)
        self.assertEqual(parts, [a, b])
        self.assertEqual(keys.join_pem_chain(parts), a + b)

    def test_key_matches_certificate(self):
        """The right key matches, another does not."""
        cert = _issued(self.ca_key, "R11", self.leaf_key, ["a.example"], 1)
        self.assertTrue(keys.key_matches_certificate(self.leaf_key, cert))
        self.assertFalse(keys.key_matches_certificate(self.ca_key, cert))

    def test_load_certificate_errors(self):
        """Text without a certificate is refused clearly."""
        with self.assertRaises(ValueError) as caught:
            keys.load_certificate("hello")
        self.assertIn("no PEM certificate", str(caught.exception))
