# -*- test-case-name: tests.test_daemon_scan -*-
"""
The renewal scan: every account's store, read by root without following symlinks, and a decision
for every certificate in it (L{lecp.daemon.policy}). It reads only local files: stores, the
installed certificates (C{/var/cpanel/ssl/apache_tls/SERVERNAME/certificates}) and cPanel's
domain map (C{/etc/userdatadomains.json}); no cPanel API call and no process per account, so a
pass over 10,000 accounts costs seconds. It yields to the reactor every few milliseconds.
"""

from __future__ import annotations

import json
import os
import time

import attrs
from twisted.logger import Logger

from lecp.daemon.policy import RENEW, WAIT, decide
from lecp.saferead import UnsafePath, read_beneath
from lecp.store import DOCUMENT, CertRecord, parse_document

log = Logger()
STORE_PATH = f".cpanel/nvdata/{DOCUMENT}"
SLICE_SECONDS = 0.01


@attrs.frozen
class Work:
    """One thing to do for one certificate of one account."""

    user: str
    vhost: str
    action: str  # renew, reinstall, resume
    reason: str
    expiry: float = 0.0
    added_names: tuple = ()
    disable_mail: bool = False


@attrs.define
class ScanResult:
    """What a pass found: the work, the alerts, and counts for /health and /metrics."""

    work: list = attrs.field(factory=list)
    alerts: list = attrs.field(factory=list)
    accounts: int = 0
    certificates: int = 0
    states: dict = attrs.field(factory=dict)
    errors: list = attrs.field(factory=list)
    next_due: float | None = None
    ari_checks: list = attrs.field(factory=list)


def vhost_domains(userdatadomains: dict) -> dict[tuple[str, str], tuple[set, str]]:
    """
    From cPanel's C{/etc/userdatadomains.json} (domain → [user, owner, type, base, docroot, ...]):
    (user, vhost) → (the domains the vhost answers to, its Apache servername).
    """
    hosts: dict = {}
    for domain, fields in userdatadomains.items():
        if not isinstance(fields, list) or len(fields) < 4:
            continue
        user, kind, base = str(fields[0]), str(fields[2]), str(fields[3])
        if kind == "main":
            entry = hosts.setdefault((user, domain), [set(), domain])
            entry[0].add(domain)
        elif kind == "parked":
            hosts.setdefault((user, base), [set(), base])[0].add(domain)
        elif kind in ("addon", "sub"):
            entry = hosts.setdefault((user, domain), [set(), base if kind == "addon" else domain])
            entry[0].add(domain)
            entry[1] = base if kind == "addon" else domain
    return {k: (v[0], v[1]) for k, v in hosts.items()}


@attrs.define
class InstalledCache:
    """Whether the installed certificate of a vhost is the stored one; re-read only when the file changed."""

    root: str
    _seen: dict = attrs.field(factory=dict)

    def matches(self, servername: str, cert_pem: str) -> bool:
        path = os.path.join(self.root, servername, "certificates")
        try:
            info = os.stat(path, follow_symlinks=False)
        except OSError:
            return False
        key = (info.st_mtime_ns, info.st_size, hash(cert_pem))
        cached = self._seen.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            with open(path, "rb") as f:
                installed = f.read(256 * 1024)
        except OSError:
            return False
        result = cert_pem.strip().encode() in installed
        self._seen[path] = (key, result)
        return result


def certificate_work(user, record: CertRecord, state, now, config, installed: InstalledCache, servername, domains,
                      disable_mail) -> tuple[Work | None, str, float | None]:
    """The work for one record (or None), its state for metrics, and when it is next due."""
    if not record.cert_pem or not record.key_pem:
        return None, "broken", None
    not_before = float(record.not_before or (record.expiry - 90 * 86400))
    matches = True
    # Installed once (cPanel gave it an id), or issued by lecp (which installs what it issues; an empty
    # id then means the job ended between storing and installing): it must be the installed one.
    if record.cert_id or record.directory:
        matches = installed.matches(servername, record.cert_pem)
    decision = decide(now, not_before, float(record.expiry), state.next_attempt if state else 0.0,
                      state.ari_pick if state else None, matches, config.remaining_fraction, config.renew_within_days)
    stored = set(record.vhost_domains)
    added = tuple(sorted(domains - stored)) if stored and domains else ()
    if decision.action == WAIT and added and not (state and now < state.next_attempt):
        decision = attrs.evolve(decision, action=RENEW, reason=f"new names on the website: {', '.join(added)}")
    status = "expired" if now >= record.expiry else ("failing" if state and state.attempts else "valid")
    if decision.action == WAIT:
        return None, status, decision.due_at
    names = tuple(n for d in added for n in (d, f"www.{d}"))
    return (Work(user, record.vhost, decision.action, decision.reason, float(record.expiry), names, disable_mail),
            status, None)


def scan_account(user: str, home: str, uid: int, now: float, config, states: dict, installed: InstalledCache,
                 hosts: dict, result: ScanResult) -> None:
    """Decide for every certificate and deferred order in one account's store."""
    try:
        raw = read_beneath(home, STORE_PATH, uid)
    except FileNotFoundError:
        return
    except (UnsafePath, OSError) as e:
        result.errors.append((user, f"store not read: {e}"))
        return
    try:
        document = parse_document(raw)
    except ValueError as e:
        result.errors.append((user, f"store does not parse: {e}"))
        return
    for vhost, pending in document.pending().items():
        state = states.get((user, vhost))
        if not state or now >= state.next_attempt:
            result.work.append(Work(user, vhost, "resume", "a deferred order is waiting", 0.0, (), document.disable_mail))
    for vhost, record in document.certificates().items():
        result.certificates += 1
        if hosts and (user, vhost) not in hosts:
            # The website was removed from the account (the original plugin's "Domain Removed"):
            # nothing to renew, and no failure mail about it.
            result.states["removed"] = result.states.get("removed", 0) + 1
            continue
        domains, servername = hosts.get((user, vhost), (set(), vhost))
        state = states.get((user, vhost))
        work, status, due = certificate_work(user, record, state, now, config, installed, servername, domains,
                                              document.disable_mail)
        result.states[status] = result.states.get(status, 0) + 1
        if work is not None and vhost not in document.pending():
            result.work.append(work)
        elif work is None and record.ari_id and record.directory and (
                state is None or state.ari_next_check is None or state.ari_next_check <= now):
            result.ari_checks.append((user, vhost, record.directory, record.ari_id, float(record.expiry),
                                      document.disable_mail))
        if due is not None and (result.next_due is None or due < result.next_due):
            result.next_due = due
        if state and state.attempts and record.expiry - now < config.alert_days * 86400 and \
                (state.last_alert is None or now - state.last_alert > 86400):
            result.alerts.append((user, vhost, float(record.expiry), state.last_error))


@attrs.frozen
class LocalFacts:
    """What a pass reads once from local files: Unix accounts, cPanel's domain map, root's state, installed certificates."""

    passwd: dict
    hosts: dict
    states: dict
    installed: InstalledCache

    @classmethod
    def read(cls, config) -> "LocalFacts":
        from lecp.daemon.accounts import read_passwd
        from lecp.daemon.state import read_states

        return cls(read_passwd(config.passwd), vhost_domains(read_userdatadomains(config.userdatadomains)),
                   read_states(os.path.join(config.state_dir, "lecp.sqlite3")), InstalledCache(config.apache_tls))

    def document(self, user: str):
        """
        The store of C{user}, read as root without following symlinks (owner checked); None when
        the account has none. Raises L{LookupError} for an account without a Unix user (or root's),
        and L{UnsafePath}, C{OSError} or C{ValueError} for a store that cannot be read or parsed.
        """
        entry = self.passwd.get(user)
        if entry is None or entry.pw_uid == 0:
            raise LookupError("no such Unix user")
        try:
            return parse_document(read_beneath(entry.pw_dir, STORE_PATH, entry.pw_uid))
        except FileNotFoundError:
            return None


def read_userdatadomains(path: str) -> dict:
    """cPanel's domain map; empty (logged) when it cannot be read."""
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError) as e:
        log.warn("Cannot read {path} ({error}): new names on websites will not be noticed", path=path, error=str(e))
        return {}


async def scan(accounts, passwd: dict, now: float, config, states: dict, installed: InstalledCache, hosts: dict,
               pause, stopping=lambda: False) -> ScanResult:
    """
    Scan C{accounts} (from WHM), yielding to the reactor (C{await pause()}) every 10 ms of work
    and stopping early when C{stopping()} says so.
    """
    result = ScanResult()
    started = time.monotonic()
    for account in accounts:
        if stopping():
            break
        if time.monotonic() - started > SLICE_SECONDS:
            await pause()
            started = time.monotonic()
        scan_listed_account(account, passwd, now, config, states, installed, hosts, result)
    return result


def scan_listed_account(account, passwd: dict, now: float, config, states: dict, installed: InstalledCache,
                        hosts: dict, result: ScanResult) -> None:
    """Scan one account WHM listed: suspended ones are skipped, and none is ever scanned as root."""
    if account.suspended:
        return
    entry = passwd.get(account.user)
    if entry is None or entry.pw_uid == 0:
        result.errors.append((account.user, "no such Unix user"))
        return
    result.accounts += 1
    scan_account(account.user, entry.pw_dir, entry.pw_uid, now, config, states, installed, hosts, result)
