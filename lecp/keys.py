# -*- test-case-name: tests.test_keys -*-
"""
Private keys, CSRs, certificate facts and PEM chains, with C{cryptography} only.

Key types are written as the original plugin wrote them: C{rsa:2048}, C{rsa:3072}, C{rsa:4096},
C{ecdsa:p-256}, C{ecdsa:p-384}: exactly the key types Let's Encrypt accepts.
"""

from __future__ import annotations

import base64
import datetime
import re

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

_CURVES = {"p-256": ec.SECP256R1, "p-384": ec.SECP384R1}
_CURVE_NAMES = {"secp256r1": "p-256", "secp384r1": "p-384"}
_RSA_SIZES = (2048, 3072, 4096)

DEFAULT_DOMAIN_KEY_TYPE = "rsa:4096"
DEFAULT_ACCOUNT_KEY_TYPE = "ecdsa:p-256"


@attrs.frozen
class KeyType:
    """
    One of the key types Let's Encrypt accepts.

    @ivar algorithm: C{"rsa"} or C{"ecdsa"}.
    @ivar parameter: the RSA modulus size in bits (as text) or the curve name (C{p-256}, C{p-384}).
    """

    algorithm: str
    parameter: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.parameter}"


ALL_KEY_TYPES = tuple(
    [KeyType("rsa", str(size)) for size in _RSA_SIZES] + [KeyType("ecdsa", c) for c in _CURVES]
)


def parse_key_type(text: str) -> KeyType:
    """
    Read a key type such as C{rsa:2048} or C{ecdsa:p-256} (case and C{_}/C{-} are forgiven).

    @raise ValueError: naming the accepted types, when C{text} is not one of them.
    """
    cleaned = str(text).strip().lower().replace("_", "-")
    cleaned = {"ec:p-256": "ecdsa:p-256", "ec:p-384": "ecdsa:p-384"}.get(cleaned, cleaned)
    for key_type in ALL_KEY_TYPES:
        if str(key_type) == cleaned:
            return key_type
    allowed = ", ".join(str(k) for k in ALL_KEY_TYPES)
    raise ValueError(f"unknown key type {text!r}: use one of {allowed}")


def generate_private_key(key_type: KeyType | str):
    """Make a new private key of the given type."""
    if isinstance(key_type, str):
        key_type = parse_key_type(key_type)
    if key_type.algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.parameter))
    return ec.generate_private_key(_CURVES[key_type.parameter]())


def key_type_of(key) -> KeyType:
    """The L{KeyType} of a private or public key."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return KeyType("rsa", str(key.key_size))
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        name = _CURVE_NAMES.get(key.curve.name)
        if name is not None:
            return KeyType("ecdsa", name)
        raise ValueError(f"the elliptic curve {key.curve.name} is not accepted by Let's Encrypt")
    raise ValueError(f"unsupported key ({type(key).__name__}): use RSA or ECDSA P-256/P-384")


def private_key_to_pem(key) -> bytes:
    """Serialise a private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes | str):
    """
    Load an unencrypted PEM private key (PKCS#1, SEC1 or PKCS#8).

    @raise ValueError: when the text is not such a key, or its type is not accepted.
    """
    if isinstance(pem, str):
        pem = pem.encode("ascii", "replace")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a usable unencrypted PEM private key ({e})") from None
    key_type_of(key)
    return key


def make_csr(key, names: list[str]) -> x509.CertificateSigningRequest:
    """
    A CSR for C{names} (subjectAltName DNS entries, the first also as the subject's CN, which
    Let's Encrypt's classic profile copies and newer profiles ignore).
    """
    if not names:
        raise ValueError("a certificate needs at least one name")
    builder = x509.CertificateSigningRequestBuilder()
    if len(names[0]) <= 64:
        builder = builder.subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
    )
    return builder.sign(key, hashes.SHA256())


_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def split_pem_chain(chain: bytes | str) -> list[str]:
    """The PEM certificates of a chain, in order, each ending in a newline."""
    if isinstance(chain, str):
        chain = chain.encode("ascii", "replace")
    return [m.group(0).decode("ascii").replace("\r\n", "\n") + "\n" for m in _PEM_CERT.finditer(chain)]


def join_pem_chain(pems: list[str]) -> str:
    """Join PEM certificates into one chain text with no blank lines."""
    return "".join(p.strip() + "\n" for p in pems if p.strip())


def load_certificate(pem: bytes | str) -> x509.Certificate:
    """
    Load the first certificate of a PEM text.

    @raise ValueError: when there is no parsable certificate in it.
    """
    blocks = split_pem_chain(pem)
    if not blocks:
        raise ValueError("no PEM certificate found")
    try:
        return x509.load_pem_x509_certificate(blocks[0].encode("ascii"))
    except ValueError as e:
        raise ValueError(f"the certificate does not parse ({e})") from None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _serial_der_bytes(serial: int) -> bytes:
    """The content octets of the DER INTEGER for a (positive) serial number."""
    length = serial.bit_length() // 8 + 1
    return serial.to_bytes(length, "big")


def ari_cert_id(cert: x509.Certificate) -> str | None:
    """
    The ARI CertID of RFC 9773: base64url(AKI keyIdentifier) "." base64url(serial DER bytes).

    C{None} when the certificate has no authority key identifier (a self-signed one, say).
    """
    try:
        aki = cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
    except x509.ExtensionNotFound:
        return None
    if aki.key_identifier is None:
        return None
    return f"{_b64url(aki.key_identifier)}.{_b64url(_serial_der_bytes(cert.serial_number))}"


def _name_attribute(name: x509.Name, oid) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


@attrs.frozen
class CertificateFacts:
    """What lecp needs to know about a certificate, read once from its PEM."""

    names: tuple[str, ...]
    common_name: str | None
    issuer_common_name: str | None
    issuer_organization: str | None
    not_before: datetime.datetime
    not_after: datetime.datetime
    serial: int
    ari_cert_id: str | None
    is_self_signed: bool
    key_type: KeyType

    @property
    def serial_hex(self) -> str:
        """The serial number as lower-case hex, as cPanel and openssl show it."""
        return format(self.serial, "x")

    @property
    def lifetime(self) -> datetime.timedelta:
        """From not-before to not-after."""
        return self.not_after - self.not_before

    def remaining(self, now: datetime.datetime) -> datetime.timedelta:
        """Validity left at C{now} (negative once expired)."""
        return self.not_after - now


def certificate_facts(cert: x509.Certificate | bytes | str) -> CertificateFacts:
    """Read the L{CertificateFacts} of a certificate object or PEM text."""
    if not isinstance(cert, x509.Certificate):
        cert = load_certificate(cert)
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    common_name = _name_attribute(cert.subject, NameOID.COMMON_NAME)
    if not names and common_name:
        names = (common_name,)
    return CertificateFacts(
        names=names,
        common_name=common_name,
        issuer_common_name=_name_attribute(cert.issuer, NameOID.COMMON_NAME),
        issuer_organization=_name_attribute(cert.issuer, NameOID.ORGANIZATION_NAME),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=cert.serial_number,
        ari_cert_id=ari_cert_id(cert),
        is_self_signed=cert.issuer == cert.subject,
        key_type=key_type_of(cert.public_key()),
    )


def key_matches_certificate(key, cert: x509.Certificate) -> bool:
    """Whether C{key} is the private key of C{cert}."""
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.DER, public) == cert.public_key().public_bytes(
        serialization.Encoding.DER, public
    )


def make_self_signed_certificate(key, names: list[str], days: int = 365, now=None) -> x509.Certificate:
    """
    A self-signed certificate for C{names}, as cPanel makes for new accounts; used for hostname
    placeholders and by the emulator.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )


def certificate_to_pem(cert: x509.Certificate) -> str:
    """A certificate as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
