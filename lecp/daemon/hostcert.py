# -*- test-case-name: tests.integration.test_daemon -*-
"""
The hostname certificate for cPanel's own services (cpanel, exim, dovecot, ftp): when one of
them presents a self-signed certificate, one that is due by the renewal rule, or one missing a
configured name, lecp issues a certificate for the hostname through HTTP-01 in the hostname's
document root (C{/var/www/html}), with a root-owned ACME account and key under
C{/var/lib/lecp/hostcert/}, installs it for those services (cPanel restarts them itself), and
tells the admin. This is the one job root runs itself: nothing in it touches a user's home.
"""

from __future__ import annotations

import json
import os

import attrs
from twisted.logger import Logger

from lecp.acme.client import ACMEClient, IssuedCertificate
from lecp.acme.errors import ACMEError
from lecp.acme.webroot import WebrootResponder
from lecp.daemon import mail
from lecp.daemon.policy import RENEW, decide
from lecp.daemon.timed import TimedService
from lecp.fsutil import atomic_write
from lecp.keys import (
    certificate_facts,
    generate_private_key,
    join_pem_chain,
    load_private_key,
    make_csr,
    private_key_to_pem,
    split_pem_chain,
)

log = Logger()
HOSTCERT_KEY_TYPE = "rsa:2048"  # cPanel's services and old mail clients expect RSA


class HostCertBusy(RuntimeError):
    """Another process holds the hostname certificate's lock."""


@attrs.define(eq=False, slots=False)
class HostCertService(TimedService):
    """Keeps the hostname's service certificates valid."""

    whm: object = None
    mailer: object = None
    http: object = None

    def first_delay(self) -> float:
        return min(60.0, self.config.first_pass_delay)

    def interval(self) -> float:
        return self.config.renewal_interval

    @property
    def folder(self) -> str:
        return os.path.join(self.config.state_dir, "hostcert")

    def _load(self) -> dict:
        try:
            with open(os.path.join(self.folder, "hostcert.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def _save(self, data: dict) -> None:
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        atomic_write(os.path.join(self.folder, "hostcert.json"), json.dumps(data, indent=1).encode(), 0o600)

    def _needs(self, service, names: list[str], now: float) -> str | None:
        """Why a service's certificate must be replaced, or None."""
        info = service.info
        if info is None or not service.certificate_pem:
            return "it has no certificate"
        if info.is_self_signed:
            return "its certificate is self-signed"
        missing = [n for n in names if n not in info.domains]
        if missing:
            return f"its certificate does not cover {', '.join(missing)}"
        if info.not_after and info.not_before:
            decision = decide(now, info.not_before.timestamp(), info.not_after.timestamp(),
                              remaining_fraction=self.config.remaining_fraction,
                              renew_within_days=self.config.renew_within_days)
            if decision.action == RENEW:
                return f"its certificate is due ({decision.reason})"
        return None

    async def survey(self) -> tuple[str, list[str], list, dict]:
        """The hostname, the names its certificate needs, the managed services' certificates, and why each needs replacing (or None)."""
        hostname = await self.whm.hostname()
        names = [hostname] + [n for n in self.config.hostcert_names if n != hostname]
        services = [s for s in await self.whm.service_certificates() if s.service in self.config.hostcert_services]
        now = self.clock.seconds()
        return hostname, names, services, {s.service: self._needs(s, names, now) for s in services}

    def stored(self) -> dict:
        """What lecp keeps of the hostname certificate (certificate, chain, names; no keys)."""
        data = self._load()
        return {k: data[k] for k in ("cert", "chain", "names") if k in data}

    async def run_once(self) -> None:
        if not self.config.hostcert:
            self.status.counts = {"enabled": False}
            return
        lock = self._lock()
        if lock is None:
            raise HostCertBusy("another lecp process (the daemon, or `lecp hostcert run`) is updating the hostname "
                               "certificate right now; try again in a minute")
        try:
            await self._run_locked()
        finally:
            os.close(lock)  # releases the flock

    def _lock(self) -> int | None:
        """An exclusive lock shared by the daemon and the admin's command, or None when another holds it."""
        import fcntl

        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.folder, "hostcert.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    async def _run_locked(self) -> None:
        now = self.clock.seconds()
        hostname, names, services, reasons = await self.survey()
        needing = {k: v for k, v in reasons.items() if v}
        self.status.counts = {"hostname": hostname, "services": len(services), "needing": sorted(needing)}
        if not needing:
            return
        data = self._load()
        stored = data.get("cert")
        fresh = None
        if stored and set(names) <= set(certificate_facts(stored).names):
            facts = certificate_facts(stored)
            if decide(now, facts.not_before.timestamp(), facts.not_after.timestamp(),
                      remaining_fraction=self.config.remaining_fraction,
                      renew_within_days=self.config.renew_within_days).action != RENEW:
                fresh = data
        if fresh is None:
            fresh = await self._issue(names, data)
            if fresh is None:
                return
        installed = []
        for service in services:
            if reasons.get(service.service) or service.certificate_pem.strip() != fresh["cert"].strip():
                await self.whm.install_service_certificate(service.service, fresh["cert"], fresh["key"], fresh["chain"])
                installed.append(service.service)
        log.info("Installed the certificate for {names} on {services}", names=names, services=installed)
        await self.mailer.send(mail.Message((self.config.admin_email,), f"lecp: the certificate of {hostname} was updated", (
            f"lecp installed a Let's Encrypt certificate for {', '.join(names)} on: {', '.join(installed)}.",
            "Reasons: " + "; ".join(f"{k}: {v}" for k, v in sorted(needing.items())) + ".",
        )))

    async def _issue(self, names: list[str], data: dict) -> dict | None:
        config = self.config
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        if data.get("account_key"):
            account_key = load_private_key(data["account_key"])
        else:
            account_key = generate_private_key("ecdsa:p-256")
            data["account_key"] = private_key_to_pem(account_key).decode()
            self._save(data)
        key_pem = data.get("key") or private_key_to_pem(generate_private_key(HOSTCERT_KEY_TYPE)).decode()
        directory = config.acme_directory
        client = ACMEClient.create(self.http, self.clock, directory, account_key,
                                   account_url=(data.get("accounts") or {}).get(directory))
        os.makedirs(config.hostcert_docroot, mode=0o755, exist_ok=True)
        responder = WebrootResponder(lambda name: config.hostcert_docroot)
        try:
            result = await client.issue(names, make_csr(load_private_key(key_pem), names), responder,
                                        self.clock.seconds() + 120)
        except ACMEError as error:
            raise RuntimeError(f"the hostname certificate could not be issued: {error}") from None
        data.setdefault("accounts", {})[directory] = client.account_url
        if not isinstance(result, IssuedCertificate):
            self._save(data)
            raise RuntimeError(f"the CA had not issued the hostname certificate after 120 s (order {result.order_url}); "
                               "it is tried again on the next pass")
        pems = split_pem_chain(result.fullchain_pem)
        data.update({"key": key_pem, "cert": pems[0], "chain": join_pem_chain(pems[1:]), "names": names})
        self._save(data)
        return data
