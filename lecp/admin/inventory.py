# -*- test-case-name: tests.integration.test_admin -*-
"""
Every certificate lecp holds on the server, read the way the renewal scan reads it (stores read
by root without following symlinks, root's state read-only, no cPanel call per account), with
the renewal decision for each: what C{lecp list}, C{lecp status} and C{lecp renew} work from.
"""

from __future__ import annotations

import time

import attrs

from lecp.daemon.scan import LocalFacts, certificate_work
from lecp.daemon.scanproc import list_accounts
from lecp.saferead import UnsafePath


class AdminError(Exception):
    """The command cannot do what was asked; the message says why and what to do."""


@attrs.frozen
class Entry:
    """One certificate (or deferred order) of one account, and what renewal would do with it."""

    user: str
    vhost: str
    state: str  # valid, due, expired, failing, pending, removed, broken
    names: tuple = ()
    not_after: float = 0.0
    installed: bool = False
    reason: str = ""  # why it is due, when it is
    action: str = ""  # renew, reinstall or resume when due; empty otherwise
    added_names: tuple = ()
    last_error: str = ""
    attempts: int = 0
    next_attempt: float = 0.0
    disable_mail: bool = False

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.asdict(self).items()}


@attrs.define
class Inventory:
    """The entries, the accounts read, and the accounts whose store could not be read (with why)."""

    entries: list = attrs.field(factory=list)
    accounts: int = 0
    errors: list = attrs.field(factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.entries:
            counts[entry.state] = counts.get(entry.state, 0) + 1
        return counts


def account_users(config, users=()) -> list:
    """The accounts WHM lists, narrowed to C{users}; L{AdminError} naming any that do not exist."""
    accounts = list_accounts(config)
    if users:
        known = {a.user for a in accounts}
        missing = [u for u in users if u not in known]
        if missing:
            raise AdminError(f"no cPanel account named {', '.join(missing)} (see `whmapi1 listaccts`)")
        accounts = [a for a in accounts if a.user in users]
    return accounts


def read_inventory(config, users=(), now: float | None = None) -> Inventory:
    """Every certificate of the accounts C{users} (default: all), with its state and renewal decision."""
    now = time.time() if now is None else now
    accounts = account_users(config, users)
    local = LocalFacts.read(config)
    inventory = Inventory()
    for account in accounts:
        try:
            document = local.document(account.user)
        except (LookupError, UnsafePath, OSError, ValueError) as e:
            inventory.errors.append((account.user, unread_reason(e)))
            continue
        inventory.accounts += 1
        if document is not None:
            inventory.entries.extend(_account_entries(account.user, document, now, config, local))
    return inventory


def unread_reason(error: Exception) -> str:
    return error.args[0] if isinstance(error, LookupError) else f"store not read: {error}"


def _account_entries(user, document, now, config, local: LocalFacts):
    states, installed, hosts = local.states, local.installed, local.hosts
    pending = document.pending()
    for vhost, order in pending.items():
        state = states.get((user, vhost))
        yield Entry(user, vhost, "pending", tuple(order.names), reason="a deferred order is waiting for the CA",
                    action="resume", last_error=state.last_error if state else "",
                    next_attempt=state.next_attempt if state else 0.0, disable_mail=document.disable_mail)
    for vhost, record in document.certificates().items():
        state = states.get((user, vhost))
        common = dict(names=tuple(record.names), not_after=float(record.expiry),
                      last_error=state.last_error if state else "", attempts=state.attempts if state else 0,
                      next_attempt=state.next_attempt if state else 0.0, disable_mail=document.disable_mail)
        if hosts and (user, vhost) not in hosts:
            yield Entry(user, vhost, "removed", reason="the website is no longer on the account", **common)
            continue
        domains, servername = hosts.get((user, vhost), (set(), vhost))
        work, status, _ = certificate_work(user, record, state, now, config, installed, servername, domains,
                                           document.disable_mail)
        is_installed = bool(record.cert_id or record.directory) and installed.matches(servername, record.cert_pem)
        if work is not None and status == "valid":
            status = "due"
        yield Entry(user, vhost, status, installed=is_installed, reason=work.reason if work else "",
                    action=work.action if work and vhost not in pending else "",
                    added_names=work.added_names if work else (), **common)
