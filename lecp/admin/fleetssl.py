# -*- test-case-name: tests.integration.test_admin -*-
"""
C{lecp import}: adopting what the original plugin (FleetSSL "Let's Encrypt for cPanel") left on
the server. Its per-user documents are lecp's own format, so nothing is converted or written:
this reports what was found in each account (certificates, whether each key matches its
certificate, whether it is installed, when it expires), the settings of
C{/etc/letsencrypt-cpanel.conf} translated into lecp's configuration, and any of the original
plugin's services still installed (two renewers on one server would race).
"""

from __future__ import annotations

import json
import os
import time

import attrs

from lecp.admin.inventory import account_users, unread_reason
from lecp.daemon.scan import LocalFacts
from lecp.saferead import UnsafePath

ORIGINAL_CONFIG = "/etc/letsencrypt-cpanel.conf"
ORIGINAL_FILES = ("etc/systemd/system/letsencrypt-cpanel.service", "etc/init.d/letsencrypt-cpanel",
                  "opt/fleetssl-cpanel", "etc/chkserv.d/letsencrypt-cpanel", "usr/local/bin/le-cp")


@attrs.frozen
class Found:
    """One certificate found in an account's document."""

    user: str
    vhost: str
    format: str  # "original" (written by the plugin) or "lecp"
    names: tuple
    not_after: float
    installed: bool
    problem: str = ""  # why lecp cannot renew it as it is; empty when it can

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.asdict(self).items()}


def _problem(record, now: float) -> str:
    from lecp.keys import key_matches_certificate, load_certificate, load_private_key

    if not record.cert_pem:
        return "no certificate is stored"
    if not record.key_pem:
        return "its private key is missing: it will be issued anew with a new key"
    try:
        if not key_matches_certificate(load_private_key(record.key_pem), load_certificate(record.cert_pem)):
            return "the stored key does not match the certificate: it will be issued anew with a new key"
    except ValueError as e:
        return f"the stored key or certificate cannot be read ({e})"
    if record.expiry and record.expiry <= now:
        return "expired: lecp renews it on its next pass"
    return ""


def survey_accounts(config, users=(), now: float | None = None) -> tuple[list[Found], list[tuple[str, str]], int]:
    """The certificates found in every account's document, the accounts that could not be read, and how many have a document."""
    now = time.time() if now is None else now
    local = LocalFacts.read(config)
    found, errors, documents = [], [], 0
    for account in account_users(config, users):
        try:
            document = local.document(account.user)
        except (LookupError, UnsafePath, OSError, ValueError) as e:
            errors.append((account.user, unread_reason(e)))
            continue
        if document is None:
            continue
        documents += 1
        raw_certs = document.raw.get("certs") or {}
        for vhost, record in document.certificates().items():
            raw = raw_certs.get(vhost) or {}
            servername = local.hosts.get((account.user, vhost), (set(), vhost))[1]
            found.append(Found(
                account.user, vhost, "lecp" if any(k.startswith("lecp_") for k in raw) else "original",
                tuple(record.names), float(record.expiry),
                bool(record.cert_id) and local.installed.matches(servername, record.cert_pem), _problem(record, now)))
    return found, errors, documents


def translate_settings(original: dict) -> tuple[dict, list[str]]:
    """
    lecp's configuration ({section: {key: value}}) equivalent to the original plugin's, and notes
    on the settings that have no equivalent or are not carried over.
    """
    config: dict = {}
    notes: list[str] = []

    def put(section, key, value):
        config.setdefault(section, {})[key] = value

    if original.get("email_admin_destination"):
        first = str(original["email_admin_destination"]).split(",")[0].strip()
        put("mail", "admin", first)
    if original.get("disablerenewalmail"):
        put("mail", "enabled", False)
    server = original.get("external_mail_server") or {}
    if isinstance(server, dict):
        if server.get("host"):
            put("mail", "host", str(server["host"]))
        if server.get("port"):
            put("mail", "port", int(server["port"]))
        if server.get("from_address"):
            put("mail", "from", str(server["from_address"]))
        if server.get("username"):
            put("mail", "username", str(server["username"]))
            notes.append("the SMTP password is not copied: write it to a root-only file and name it in "
                         "[mail] password_file")
    kind = str(original.get("crypto_key_type") or "").lower()
    if kind == "rsa":
        size = int(original.get("crypto_rsa_key_size") or 2048)
        put("certificates", "key_type", f"rsa:{min(max(size, 2048), 4096)}")
    elif kind == "ecdsa":
        put("certificates", "key_type", f"ecdsa:{str(original.get('crypto_ecdsa_curve') or 'p-256').lower()}")
    if "hostcert" in original:
        put("hostcert", "enabled", bool(original["hostcert"]))
    if original.get("hostextranames"):
        put("hostcert", "extra_names", [str(n) for n in original["hostextranames"]])
    if original.get("hostdocroot"):
        put("hostcert", "docroot", str(original["hostdocroot"]))
    if original.get("renewal_countdown_days"):
        put("renewal", "renew_within_days", int(original["renewal_countdown_days"]))
    for key, why in (("autossl", "lecp does not replace cPanel's AutoSSL; users issue from the page"),
                     ("hook_post_renewal", "post-renewal hooks are not supported"),
                     ("preferred_issuer_cn", "users choose a chain per certificate on the page"),
                     ("renewal_days_of_week", "lecp renews when due, spread over the day, on any day"),
                     ("renewal_times_of_day", "lecp renews when due, spread over the day, on any day")):
        if original.get(key):
            notes.append(f"{key} is not carried over: {why}")
    return config, notes


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def as_toml(config: dict) -> str:
    return "\n".join(f"[{section}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())
                     for section, values in config.items())


def read_original_config(path: str) -> dict | None:
    """The original plugin's configuration, or None when there is none; ValueError when unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} cannot be read ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def import_report(config, users=(), original_config: str = ORIGINAL_CONFIG, root: str = "/") -> dict:
    """Everything C{lecp import} reports, JSON-ready."""
    found, errors, documents = survey_accounts(config, users)
    report = {
        "documents": documents, "certificates": [f.to_json() for f in found], "errors": [list(e) for e in errors],
        "original_format": sum(1 for f in found if f.format == "original"),
        "needs_attention": sum(1 for f in found if f.problem and not f.problem.startswith("expired")),
        "original_files": [os.path.join(root, p) for p in ORIGINAL_FILES if os.path.lexists(os.path.join(root, p))],
        "settings": None, "settings_toml": "", "settings_notes": [], "settings_error": "",
    }
    try:
        original = read_original_config(original_config)
    except ValueError as e:
        report["settings_error"] = str(e)
        original = None
    if original is not None:
        settings, notes = translate_settings(original)
        report.update(settings=settings, settings_toml=as_toml(settings), settings_notes=notes)
    return report
