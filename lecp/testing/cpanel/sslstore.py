"""
The user's SSL/TLS Manager store (C{~/ssl/keys/ID.key}, C{~/ssl/certs/ID.crt}) with its index
C{~/ssl/ssl.db} (JSON here), and how cPanel describes and names certificates and keys
(reference/cpanel-api.md §3.3-3.8).

Descriptions are computed once, when an item is stored, so that listing needs no cryptography
import: one C{uapi} call must stay cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from lecp.fsutil import atomic_write


def _fs(name: str) -> str:
    name = re.sub(r"^\*", "_wildcard_", name or "")
    return re.sub(r"[^_a-zA-Z0-9]+", "_", name)


def _public_fields(public_key) -> dict:
    from cryptography.hazmat.primitives.asymmetric import rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        modulus = format(public_key.public_numbers().n, "x")
        return {"key_algorithm": "rsaEncryption", "modulus": modulus, "modulus_length": public_key.key_size,
                "ecdsa_curve_name": None, "ecdsa_public": None}
    numbers = public_key.public_numbers()
    width = (public_key.key_size + 3) // 4
    point = "04" + format(numbers.x, "x").zfill(width) + format(numbers.y, "x").zfill(width)
    curve = {"secp256r1": "prime256v1", "secp384r1": "secp384r1"}.get(public_key.curve.name, public_key.curve.name)
    return {"key_algorithm": "id-ecPublicKey", "modulus": None, "modulus_length": None,
            "ecdsa_curve_name": curve, "ecdsa_public": point}


def key_id(key) -> str:
    """cPanel's id of a private key."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        modulus = format(public.public_numbers().n, "x")
        return f"{modulus[:5]}_{modulus[-5:]}_{hashlib.md5(modulus.encode()).hexdigest()}"
    numbers = public.public_numbers()
    x = format(numbers.x, "x")
    return f"ec-{x[:10]}_{hashlib.md5(f'{x}_{numbers.y:x}_{public.curve.name}'.encode()).hexdigest()}"


def _name_text(name) -> str:
    parts = []
    for attribute in name:
        parts += [attribute.oid._name, str(attribute.value)]
    return "\n".join(parts)


def describe_certificate(pem: str) -> dict:
    """The certificate object cPanel puts in C{installed_hosts} (dotted keys, ints, 0/1), with its id."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from lecp.keys import certificate_facts, load_certificate

    cert = load_certificate(pem)
    facts = certificate_facts(cert)
    organization = cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    not_after = int(facts.not_after.timestamp())
    cn = _fs(facts.common_name or (facts.names[0] if facts.names else "cert"))
    digest = hashlib.md5(pem.strip().encode()).hexdigest()
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        modulus = format(public.public_numbers().n, "x")
        ident = f"{cn}_{modulus[:5]}_{modulus[-5:]}_{not_after}_{digest}"
    else:
        ident = f"ec-{cn}_{format(public.public_numbers().x, 'x')[:10]}_{not_after}_{digest}"
    described = {
        "id": ident,
        "domains": list(facts.names),
        "subject.commonName": facts.common_name,
        "issuer.commonName": facts.issuer_common_name,
        "issuer.organizationName": str(organization[0].value) if organization else None,
        "issuer_text": _name_text(cert.issuer),
        "subject_text": _name_text(cert.subject),
        "not_before": int(facts.not_before.timestamp()),
        "not_after": not_after,
        "is_self_signed": int(facts.is_self_signed),
        "is_autossl": 0,
        "auto_ssl_provider": None,
        "auto_ssl_provider_display_name": None,
        "validation_type": None if facts.is_self_signed else "dv",
        "signature_algorithm": cert.signature_algorithm_oid._name,
        "serial": facts.serial_hex,
    }
    described.update(_public_fields(public))
    return described


def covers(cert_names, name: str) -> bool:
    """Whether a certificate's names cover C{name} (exactly, or by a one-label wildcard)."""
    for pattern in cert_names:
        pattern = pattern.lower()
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]:
            return True
    return False


class UserSSLStore:
    """An account's SSL/TLS Manager store and its index."""

    def __init__(self, home: str, uid: int | None = None, gid: int | None = None):
        self.home, self.uid, self.gid = home, uid, gid
        self.folder = os.path.join(home, "ssl")

    def _chown(self, path: str) -> None:
        if self.uid is not None and os.geteuid() == 0:
            os.chown(path, self.uid, self.gid if self.gid is not None else self.uid, follow_symlinks=False)

    def _ensure(self, kind: str) -> str:
        folder = os.path.join(self.folder, kind)
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)
            self._chown(self.folder)
            self._chown(folder)
        return folder

    def index(self) -> dict:
        try:
            with open(os.path.join(self.folder, "ssl.db")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {"certs": {}, "keys": {}}

    def _save_index(self, index: dict) -> None:
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        path = os.path.join(self.folder, "ssl.db")
        atomic_write(path, json.dumps(index, indent=1, sort_keys=True).encode(), 0o600)
        self._chown(path)

    def _write(self, kind: str, name: str, text: str, mode: int) -> None:
        path = os.path.join(self._ensure(kind), name)
        atomic_write(path, text.encode(), mode)
        self._chown(path)

    def save_key(self, key_pem: str, friendly_name: str, now: int) -> str:
        """Store a key (once); returns its id."""
        from lecp.keys import load_private_key

        key = load_private_key(key_pem)
        ident = key_id(key)
        index = self.index()
        if ident not in index["keys"]:
            self._write("keys", f"{ident}.key", key_pem.strip() + "\n", 0o600)
            index["keys"][ident] = {"id": ident, "friendly_name": friendly_name, "created": now, **_public_fields(key.public_key())}
            self._save_index(index)
        return ident

    def save_certificate(self, cert_pem: str, friendly_name: str, now: int) -> tuple[str, dict]:
        """Store a certificate (once); returns its id and description."""
        described = describe_certificate(cert_pem)
        index = self.index()
        if described["id"] not in index["certs"]:
            self._write("certs", f"{described['id']}.crt", cert_pem.strip() + "\n", 0o644)
            index["certs"][described["id"]] = {**described, "friendly_name": friendly_name, "created": now}
            self._save_index(index)
        return described["id"], described

    def find_key_for(self, cert):
        """A stored key matching the certificate's public key, or C{None}."""
        from lecp.keys import key_matches_certificate, load_private_key

        for ident in self.index()["keys"]:
            try:
                with open(os.path.join(self.folder, "keys", f"{ident}.key")) as f:
                    key = load_private_key(f.read())
            except (OSError, ValueError):
                continue
            if key_matches_certificate(key, cert):
                return key
        return None

    def delete(self, kind: str, ident: str) -> dict | None:
        """Remove an item and its index entry; returns the entry, or C{None} if there was none."""
        index = self.index()
        entry = index[kind].pop(ident, None)
        if entry is None:
            return None
        try:
            os.unlink(os.path.join(self.folder, kind, ident + (".key" if kind == "keys" else ".crt")))
        except FileNotFoundError:
            pass
        self._save_index(index)
        return entry
