# -*- test-case-name: tests.integration.test_issuance -*-
"""
The management jobs of one user, mixed into L{lecp.issuance.Jobs}: remove (optionally revoking),
reinstall with a chosen chain, re-use another vhost's certificate, undo a re-use, view, settings.

Fixes over the original plugin: removal leaves a certificate installed by someone else alone;
a re-use never throws away the target's own key; re-use checks the certificate covers the
target; revocation exists.
"""

from __future__ import annotations

import attrs
from twisted.logger import Logger

from lecp.acme.errors import ACMEError
from lecp.cpanel.envelope import CPanelError
from lecp.keys import certificate_facts, load_certificate, load_private_key
from lecp.outcome import FAILED, REINSTALLED, REMOVED, REUSE_REMOVED, REUSED, NameProblem, Outcome, Refused

log = Logger()


@attrs.frozen
class CertificateView:
    """Everything the view page shows about a stored certificate."""

    vhost: str
    names: tuple
    issuer: str
    not_before: int
    not_after: int
    serial: str
    key_type: str
    cert_id: str
    order_url: str
    challenge_method: str
    certificate_pem: str
    chain_pem: str
    chains: tuple
    preferred_issuer: str
    installed: bool
    reused_by: tuple

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.asdict(self).items()}


def _covers(names, name: str) -> bool:
    return any(n == name or (n.startswith("*.") and name.split(".", 1)[-1] == n[2:]) for n in names)


class ManagementJobs:
    """Mixed into L{lecp.issuance.Jobs}: uses its C{store}, C{cpanel}, C{install} and C{_client}."""

    def _record(self, vhost: str):
        record = self.store.read().certificate(vhost)
        if record is None:
            raise Refused(f"lecp has no certificate for {vhost}.", 404)
        return record

    async def _installed_is(self, vhost: str, cert_pem: str) -> bool:
        """Whether cPanel has exactly this certificate installed on C{vhost}."""
        for host in await self.cpanel.installed_hosts():
            if vhost in (host.servername, *host.domains) and host.certificate_pem.strip() == cert_pem.strip():
                return True
        return False

    async def remove(self, vhost: str, revoke: bool = False) -> Outcome:
        """
        Uninstall lecp's certificate from C{vhost} (and from vhosts re-using it), delete it and its
        key from SSL/TLS Manager, optionally revoke it, and forget it. A deferred order is abandoned.
        """
        document = self.store.read()
        record, pending = document.certificate(vhost), document.pending().get(vhost)
        if record is None and pending is None:
            raise Refused(f"lecp has no certificate for {vhost}.", 404)
        problems = []
        if record is not None:
            try:
                for target in [vhost, *document.reuse_targets(vhost)]:
                    if await self._installed_is(target, record.cert_pem):
                        await self.cpanel.delete_ssl(target)
                still_used = any(r.key_id == record.key_id for v, r in document.certificates().items() if v != vhost)
                for delete, ident in ((self.cpanel.delete_certificate, record.cert_id),
                                      (None if still_used else self.cpanel.delete_key, record.key_id)):
                    if delete is not None and ident:
                        try:
                            await delete(ident)
                        except CPanelError as error:
                            if "does not exist" not in str(error):
                                raise
            except CPanelError as error:
                return Outcome(FAILED, vhost, f"cPanel could not remove the certificate: {error}.",
                               "Nothing was forgotten; try again.", names=tuple(record.names), error_type="cpanel")
            if revoke:
                try:
                    client = await self._client(record.directory or self.config.acme_directory)
                    await client.ensure_account()
                    await client.revoke(load_certificate(record.cert_pem))
                except ACMEError as error:
                    problems.append(NameProblem(vhost, f"the certificate could not be revoked: {error}"))
        if pending is not None:
            try:
                client = await self._client(pending.directory)
                await client.ensure_account()
                await client.abandon(pending.order_url)
            except ACMEError as error:
                log.info("Could not deactivate the authorizations of {url}: {error}", url=pending.order_url, error=str(error))
        with self.store.update() as document:
            document.remove_certificate(vhost)
            document.remove_pending(vhost)
            for target in document.reuse_targets(vhost):
                document.set_reuse(target, None)
        revoked = " and revoked" if revoke and not problems else ""
        return Outcome(REMOVED, vhost, f"The certificate of {vhost} was removed{revoked}.",
                       names=tuple(record.names if record else pending.names), problems=tuple(problems))

    async def reinstall(self, vhost: str, preferred_issuer: str | None = None) -> Outcome:
        """
        Install the stored certificate again (after someone removed it in cPanel, say), with the
        chain of C{preferred_issuer} when given ("" means the CA's default), and remember the choice.
        """
        record = self._record(vhost)
        if preferred_issuer and preferred_issuer not in record.alternate_chains:
            offered = ", ".join(sorted(record.alternate_chains)) or "none"
            raise Refused(f"no chain from “{preferred_issuer}” is stored for {vhost}; offered: {offered}")
        await self.find_vhost(vhost)
        targets = self.store.read().reuse_targets(vhost)
        return await self.install(record, targets, REINSTALLED, preferred=preferred_issuer)

    async def reuse(self, source: str, target: str) -> Outcome:
        """Install C{source}'s certificate on the vhost C{target} as well, and keep it there on renewals."""
        if source == target:
            raise Refused("a website cannot re-use its own certificate")
        record = self._record(source)
        host = await self.find_vhost(target)
        document = self.store.read()
        if document.certificate(host.name) is not None:
            raise Refused(f"{host.name} has its own certificate from lecp; remove it first, then re-use {source}'s.", 409)
        covered = [n for n in host.name_list if _covers(record.names, n)]
        if not covered:
            raise Refused(f"the certificate of {source} covers none of the names of {host.name}.")
        try:
            await self.cpanel.install_ssl(host.name, record.cert_pem, record.key_pem, self.chain_for(record))
        except CPanelError as error:
            return Outcome(FAILED, host.name, f"cPanel could not install the certificate on {host.name}: {error}.",
                           "Try again; if it persists, contact your hosting provider.", error_type="cpanel")
        with self.store.update() as document:
            document.set_reuse(host.name, source)
        return Outcome(REUSED, host.name, f"{host.name} now uses the certificate of {source}, and will keep it when it renews.",
                       names=tuple(covered), expiry=record.expiry, issuer=record.issuer)

    async def remove_reuse(self, target: str) -> Outcome:
        """Stop re-using a certificate on C{target} and uninstall it there."""
        source = self.store.read().reuses().get(target)
        if source is None:
            raise Refused(f"{target} does not re-use another website's certificate.", 404)
        record = self.store.read().certificate(source)
        try:
            if record is not None and await self._installed_is(target, record.cert_pem):
                await self.cpanel.delete_ssl(target)
        except CPanelError as error:
            return Outcome(FAILED, target, f"cPanel could not uninstall the certificate: {error}.", "Try again.",
                           error_type="cpanel")
        with self.store.update() as document:
            document.set_reuse(target, None)
        return Outcome(REUSE_REMOVED, target, f"{target} no longer re-uses the certificate of {source}; it was uninstalled.")

    async def view(self, vhost: str) -> CertificateView:
        """The details of C{vhost}'s certificate."""
        record = self._record(vhost)
        facts = certificate_facts(record.cert_pem)
        load_private_key(record.key_pem)  # a broken key is reported here rather than at renewal
        return CertificateView(
            vhost=vhost, names=tuple(facts.names), issuer=facts.issuer_common_name or "",
            not_before=int(facts.not_before.timestamp()), not_after=int(facts.not_after.timestamp()),
            serial=facts.serial_hex, key_type=str(facts.key_type), cert_id=record.cert_id, order_url=record.order_url,
            challenge_method=record.challenge_method, certificate_pem=record.cert_pem,
            chain_pem=record.alternate_chains.get(record.preferred_issuer, record.chain_pem),
            chains=tuple(sorted(record.alternate_chains)), preferred_issuer=record.preferred_issuer,
            installed=await self._installed_is(vhost, record.cert_pem),
            reused_by=tuple(self.store.read().reuse_targets(vhost)),
        )

    def set_mail(self, enabled: bool) -> None:
        """The account's choice of renewal e-mails."""
        with self.store.update() as document:
            document.disable_mail = not enabled
