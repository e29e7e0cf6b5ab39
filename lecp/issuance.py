# -*- test-case-name: tests.integration.test_issuance -*-
"""
The jobs for one cPanel user: issue, resume a deferred order, renew; and (L{lecp.manage})
remove, reinstall, re-use and view. The page runs them as the user; the daemon runs them in a
worker process as the user; the code is the same.

Nothing is lost on the way: the order URL and the new key are stored (as a pending order)
before the CA is asked to finalize, the certificate is stored before cPanel is asked to install
it, and the store is only ever changed in short locked transactions, never across network waits.
"""

from __future__ import annotations

import time

import attrs
from twisted.internet.defer import DeferredLock
from twisted.logger import Logger

from lecp import names as domain_names
from lecp.acme.client import ACMEClient, IssuedCertificate, PendingOrder as ACMEPending
from lecp.acme.errors import (
    ACMEConnectionError,
    ACMEError,
    ACMEHTTPError,
    ACMEProblem,
    OrderFailed,
    RateLimited,
    ValidationFailed,
)
from lecp.acme.webroot import WebrootError, WebrootResponder
from lecp.config import Config
from lecp.cpanel.envelope import CPanelError
from lecp.keys import (
    DEFAULT_ACCOUNT_KEY_TYPE,
    ari_cert_id,
    certificate_facts,
    generate_private_key,
    join_pem_chain,
    load_certificate,
    load_private_key,
    make_csr,
    private_key_to_pem,
    split_pem_chain,
)
from lecp.manage import ManagementJobs
from lecp.outcome import CHECKED, DEFERRED, FAILED, ISSUED, PREFLIGHT_FAILED, NameProblem, Outcome, Refused
from lecp.store import CertRecord, PendingOrder, Store, StoreError

log = Logger()
MAX_NAMES = 100


def chain_issuer(chain_pem: str) -> str:
    """The name a chain is offered under: the issuer CN of its top certificate."""
    pems = split_pem_chain(chain_pem)
    if not pems:
        return ""
    return certificate_facts(pems[-1]).issuer_common_name or ""


def record_from_issuance(vhost: str, names, key_pem: str, issued: IssuedCertificate, key_type: str,
                         directory: str, previous: CertRecord | None = None, vhost_domains=()) -> CertRecord:
    """The store record for a freshly issued certificate (keeping the user's chain choice)."""
    pems = split_pem_chain(issued.fullchain_pem)
    leaf, chain = pems[0], join_pem_chain(pems[1:])
    facts = certificate_facts(leaf)
    alternates = {chain_issuer(issued.fullchain_pem): chain}
    for alternate in issued.alternate_chains:
        alternate_pems = split_pem_chain(alternate)
        alternates[chain_issuer(alternate)] = join_pem_chain(alternate_pems[1:])
    return CertRecord(
        vhost=vhost, key_pem=key_pem, cert_pem=leaf, chain_pem=chain, order_url=issued.order_url,
        expiry=int(facts.not_after.timestamp()), alt_names=tuple(n for n in names if n != vhost),
        alternate_chains=alternates, preferred_issuer=previous.preferred_issuer if previous else "",
        key_type=key_type, issuer=facts.issuer_common_name or "", not_before=int(facts.not_before.timestamp()),
        directory=directory, vhost_domains=tuple(vhost_domains), ari_id=facts.ari_cert_id or "",
        extra=previous.extra if previous else {},
    )


def chosen_chain(record: CertRecord, preferred: str | None = None) -> str:
    """The chain to install: the preferred issuer's when offered, else the one the CA sent first."""
    wanted = record.preferred_issuer if preferred is None else preferred
    if wanted and wanted in record.alternate_chains:
        return record.alternate_chains[wanted]
    return record.chain_pem


def failure_outcome(vhost: str, names, error: Exception, dry_run: bool = False) -> Outcome:
    """An error as a failed outcome that says what happened and what to do."""
    names = tuple(names)
    if isinstance(error, ValidationFailed):
        problems = tuple(NameProblem(f.identifier, str(f).split(": ", 1)[-1]) for f in error.failures)
        return Outcome(FAILED, vhost, "Let's Encrypt could not confirm that this server answers for "
                       + ", ".join(p.name for p in problems) + ".",
                       "Check each name's DNS and that nothing blocks /.well-known/acme-challenge/, then try again.",
                       names=names, problems=problems, error_type="validation", dry_run=dry_run)
    if isinstance(error, RateLimited):
        retry = int(error.retry_after.timestamp()) if error.retry_after else 0
        return Outcome(FAILED, vhost, str(error), "Wait until then; renewals of existing certificates are not affected.",
                       names=names, error_type="rate_limit", retry_after=retry, dry_run=dry_run)
    asked = getattr(error, "retry_after", None)  # the CA's Retry-After: the daemon never retries before it
    asked = int(asked.timestamp()) if asked is not None else 0
    if isinstance(error, (ACMEConnectionError, ACMEHTTPError)):
        return Outcome(FAILED, vhost, f"Let's Encrypt could not be reached: {error}.",
                       "This is usually temporary; try again in a few minutes.", names=names,
                       error_type="network", retry_after=asked, dry_run=dry_run)
    if isinstance(error, (ACMEProblem, OrderFailed, ACMEError)):
        return Outcome(FAILED, vhost, f"Let's Encrypt refused the request: {error}.",
                       "If this persists, contact your hosting provider with this message.", names=names,
                       error_type="acme", retry_after=asked, dry_run=dry_run)
    if isinstance(error, CPanelError):
        return Outcome(FAILED, vhost, f"cPanel reported an error: {error}.",
                       "Try again; if it persists, contact your hosting provider with this message.", names=names,
                       error_type="cpanel", dry_run=dry_run)
    if isinstance(error, StoreError):
        return Outcome(FAILED, vhost, str(error), "", names=names, error_type="store", dry_run=dry_run)
    if isinstance(error, WebrootError):
        return Outcome(FAILED, vhost, f"The validation file could not be written: {error.strerror or error}.",
                       "Check that the website's document root exists and that .well-known in it is a real folder.",
                       names=names, error_type="webroot", dry_run=dry_run)
    raise error


@attrs.define
class Jobs(ManagementJobs):
    """
    Every job for one user, with its collaborators injected.

    @ivar cpanel: a L{lecp.cpanel.CPanel} for this user.
    @ivar acme_factory: C{(directory, account_key, account_url) -> ACMEClient}.
    @ivar preflight: C{async (docroots) -> [PreflightResult]}, or C{None} to skip pre-flight.
    @ivar notify: C{async (vhost) -> bool}, tells the daemon about a deferred order.
    """

    reactor: object
    config: Config
    store: Store
    cpanel: object
    acme_factory: object
    preflight: object = None
    notify: object = None
    probe: object = None  # the pre-flight even when config turns it off for issuance (for L{check})
    _hosts: list | None = None  # the account's websites, asked of cPanel once per process
    _hosts_lock: DeferredLock = attrs.field(factory=DeferredLock, init=False)
    _install_lock: DeferredLock = attrs.field(factory=DeferredLock, init=False)  # one cPanel install at a time
    _clients: dict = attrs.field(factory=dict, init=False)  # (directory, persist) → ACMEClient

    @classmethod
    def create(cls, reactor, config: Config, store: Store, cpanel, http=None) -> "Jobs":
        """Jobs wired to the real ACME client, pre-flight and daemon socket as C{config} says."""
        from lecp.acme.http import make_http_client
        from lecp.notify import notify_pending
        from lecp.preflight import preflight

        http = http or make_http_client(reactor, config.ca_bundle or None)

        def acme_factory(directory, account_key, account_url):
            return ACMEClient.create(http, reactor, directory, account_key, account_url=account_url)

        async def check(docroots):
            return await preflight(reactor, docroots, config.preflight_port, config.preflight_timeout,
                                   config.preflight_resolve)

        async def notify(vhost):
            return await notify_pending(reactor, config.daemon_socket, vhost)

        return cls(reactor, config, store, cpanel, acme_factory, check if config.preflight else None, notify, check)

    # Helpers

    chain_for = staticmethod(chosen_chain)

    def _now(self) -> float:
        return self.reactor.seconds()

    async def virtual_hosts(self) -> list:
        """The account's websites; one cPanel call however many jobs this process runs (a batch)."""
        async with self._hosts_lock:
            if self._hosts is None:
                self._hosts = await self.cpanel.virtual_hosts()
        return self._hosts

    async def find_vhost(self, name: str):
        """The account's virtual host called C{name}; refused (404) when there is none."""
        try:
            wanted = domain_names.normalise(name)
        except domain_names.BadName as e:
            raise Refused(str(e)) from None
        for host in await self.virtual_hosts():
            if host.name == wanted:
                return host
        raise Refused(f"{wanted} is not a website of this account.", 400)

    async def _checked_names(self, host, requested) -> list[str]:
        """Normalised names, the vhost's own first; refused before any ACME request if one is not the vhost's."""
        if len(requested) > MAX_NAMES:
            raise Refused(f"a certificate can hold at most {MAX_NAMES} names; {len(requested)} were asked for")
        names = [host.name]
        for raw in requested:
            try:
                name = domain_names.normalise(raw)
            except domain_names.BadName as e:
                raise Refused(str(e)) from None
            if not host.owns(name):
                others = [h.name for h in await self.virtual_hosts() if h.owns(name)]
                where = f"it belongs to the website {others[0]}" if others else "it is not a domain of this account"
                raise Refused(f"{name} cannot be added to the certificate of {host.name}: {where}.")
            if name not in names:
                names.append(name)
        return names

    def _account(self, document, directory: str, persist: bool):
        """The account key (made and stored on first use) and the account URL known for C{directory}."""
        if document.account_key_pem:
            try:
                return load_private_key(document.account_key_pem), document.account_url(directory)
            except ValueError as e:
                raise StoreError(f"the stored ACME account key cannot be used ({e})") from None
        key = generate_private_key(DEFAULT_ACCOUNT_KEY_TYPE)
        if persist:
            document.account_key_pem = private_key_to_pem(key).decode()
        return key, None

    async def _client(self, directory: str, persist: bool = True) -> ACMEClient:
        """
        The account's client for C{directory}: one per process, so that the jobs of a batch share
        its directory, nonces and account instead of asking the CA for them again.
        """
        client = self._clients.get((directory, persist))
        if client is None:
            if persist:
                with self.store.update() as document:
                    key, url = self._account(document, directory, persist=True)
            else:
                key, url = self._account(self.store.read(), directory, persist=False)
            client = self._clients[directory, persist] = self.acme_factory(directory, key, url)
        return client

    def _remember_account(self, client: ACMEClient, directory: str) -> None:
        if client.account_url:
            with self.store.update() as document:
                if document.account_url(directory) != client.account_url:
                    document.set_account_url(directory, client.account_url)

    def _claim(self, vhost: str, kind: str) -> None:
        with self.store.update() as document:
            running = document.job(vhost, time.time())
            if running is not None:
                raise Refused(f"A {running['kind']} is already running for {vhost}; wait for it to finish.", 409)
            document.start_job(vhost, kind, time.time())

    def _release(self, vhost: str) -> None:
        try:
            with self.store.update() as document:
                document.end_job(vhost)
        except StoreError:
            log.failure("Could not clear the job marker of {vhost}", vhost=vhost)

    async def _preflight(self, host, names) -> list:
        if self.preflight is None:
            return []
        return await self.preflight({n: host.document_root for n in names})

    # Jobs

    async def issue(self, vhost: str, names=(), key_type: str | None = None, dry_run: bool = False,
                    skip_failed_names: bool = False, deadline: float | None = None) -> Outcome:
        """
        Issue and install a certificate for C{names} of the virtual host C{vhost}.

        @param skip_failed_names: order the names that passed the pre-flight instead of stopping.
        @param deadline: seconds to wait for the CA before handing the order to the daemon.
        @raise Refused: for input that cannot be acted on (nothing is changed).
        """
        key_type = (key_type or self.config.key_type).lower()
        if key_type not in self.config.key_types:
            raise Refused(f"the key type {key_type} is not offered here; choose one of {', '.join(self.config.key_types)}")
        host = await self.find_vhost(vhost)
        names = await self._checked_names(host, names)
        if not dry_run:
            self._claim(host.name, "issuance")
        try:
            outcome = await self._issue(host, names, key_type, dry_run, skip_failed_names, deadline)
            if not dry_run:
                self._remember(outcome)
            return outcome
        finally:
            if not dry_run:
                self._release(host.name)

    async def check(self, vhost: str, names=()) -> Outcome:
        """
        The pre-flight alone, for the admin's self-test: whether each name of C{vhost} (default:
        the website's own) reaches this server as Let's Encrypt would reach it. Changes nothing.
        """
        host = await self.find_vhost(vhost)
        names = await self._checked_names(host, names)
        probe = self.probe or self.preflight
        if probe is None:
            raise Refused("no pre-flight is available in this set-up")
        failed = [r for r in await probe({n: host.document_root for n in names}) if not r.ok]
        if failed:
            return Outcome(PREFLIGHT_FAILED, host.name,
                           "These names do not reach this server: " + ", ".join(r.name for r in failed) + ".",
                           "See each name's reason; see README.md, Troubleshooting.", names=tuple(names),
                           problems=tuple(NameProblem(r.name, r.reason, r.advice) for r in failed))
        return Outcome(CHECKED, host.name, f"Every name reaches this server: {', '.join(names)}.", names=tuple(names))

    def _remember(self, outcome: Outcome) -> None:
        """Keep the last failure of a vhost for the page (the next success clears it)."""
        try:
            with self.store.update() as document:
                if outcome.ok:
                    document.set_failure(outcome.vhost, None)
                else:
                    document.set_failure(outcome.vhost, {"time": int(time.time()), "message": outcome.message,
                                                         "advice": outcome.advice, "kind": outcome.kind,
                                                         "problems": [p.to_json() for p in outcome.problems]})
        except StoreError:
            log.failure("Could not record the outcome for {vhost}", vhost=outcome.vhost)

    async def _issue(self, host, names, key_type, dry_run, skip_failed_names, deadline) -> Outcome:
        results = await self._preflight(host, names)
        failed = [r for r in results if not r.ok]
        if failed:
            problems = tuple(NameProblem(r.name, r.reason, r.advice) for r in failed)
            passing = [n for n in names if n not in {r.name for r in failed}]
            if not skip_failed_names or host.name not in passing:
                return Outcome(PREFLIGHT_FAILED, host.name,
                               "These names do not reach this server yet: " + ", ".join(p.name for p in problems) + ".",
                               "Fix them, or leave them out, and try again. Nothing was asked of Let's Encrypt.",
                               names=tuple(names), problems=problems, dry_run=dry_run)
            names = passing
        directory = self.config.staging_directory if dry_run else self.config.acme_directory
        key = generate_private_key(key_type)
        key_pem = private_key_to_pem(key).decode()
        return await self._order(host, names, key_pem, key_type, directory, dry_run, deadline, renewal=False)

    async def _order(self, host, names, key_pem, key_type, directory, dry_run, deadline, renewal, replaces=None,
                     client=None) -> Outcome:
        deadline = self._now() + (self.config.page_deadline if deadline is None else deadline)
        client = client or await self._client(directory, persist=not dry_run)
        responder = WebrootResponder(lambda name: host.document_root)
        csr = make_csr(load_private_key(key_pem), names)
        pending = None
        try:
            await client.ensure_account()
            if not dry_run:
                self._remember_account(client, directory)
            order = await client.new_order(names, profile=self.config.profile or None, replaces=replaces)
            if not dry_run:
                pending = PendingOrder(host.name, order.url, key_pem, tuple(names), key_type, directory,
                                       int(time.time()), renewal=renewal)
                with self.store.update() as document:
                    document.put_pending(pending)
            result = await client.drive(order, csr, responder, deadline)
        except (ValidationFailed, OrderFailed) as error:
            if pending is not None:
                with self.store.update() as document:
                    document.remove_pending(host.name)
            return failure_outcome(host.name, names, error, dry_run)
        except (ACMEError, CPanelError, WebrootError) as error:
            if pending is None:
                return failure_outcome(host.name, names, error, dry_run)
            if isinstance(error, WebrootError):  # the challenge could not be published: this order cannot succeed
                with self.store.update() as document:
                    document.remove_pending(host.name)
                return failure_outcome(host.name, names, error, dry_run)
            return await self._defer(host.name, names, pending, str(error))
        if isinstance(result, ACMEPending):
            retry = int(result.retry_after.timestamp()) if result.retry_after else 0
            return await self._defer(host.name, names, attrs.evolve(pending, retry_after=retry), "")
        if dry_run:
            return Outcome(ISSUED, host.name, "The dry run succeeded: Let's Encrypt's staging service issued a test "
                           "certificate for these names, and it was thrown away. Nothing was installed.",
                           names=tuple(names), order_url=result.order_url, dry_run=True)
        return await self._complete(host, names, key_pem, key_type, directory, result)

    async def _defer(self, vhost: str, names, pending: PendingOrder, error: str) -> Outcome:
        with self.store.update() as document:
            document.put_pending(attrs.evolve(pending, last_error=error))
        if self.notify is not None:
            await self.notify(vhost)
        advice = "Nothing to do: the server finishes it in the background and installs the certificate."
        message = ("Let's Encrypt is still working on this certificate. It is usually ready within minutes."
                   if not error else f"The order was interrupted ({error}); the server will pick it up again.")
        return Outcome(DEFERRED, vhost, message, advice, names=tuple(names), order_url=pending.order_url)

    async def _complete(self, host, names, key_pem, key_type, directory, issued: IssuedCertificate) -> Outcome:
        """Store the certificate (and forget the pending order), then install it and record cPanel's ids."""
        with self.store.update() as document:
            previous = document.certificate(host.name)
            record = record_from_issuance(host.name, names, key_pem, issued, key_type, directory, previous, host.domains)
            document.put_certificate(record)
            document.remove_pending(host.name)
            targets = document.reuse_targets(host.name)
        log.info("Issued {names} for {vhost} until {expiry}", names=names, vhost=host.name, expiry=record.expiry)
        return await self.install(record, targets, ISSUED)

    async def install(self, record: CertRecord, targets=(), kind: str = ISSUED, preferred: str | None = None) -> Outcome:
        """Install a stored certificate on its vhost and its re-use targets; record cPanel's ids."""
        chain = chosen_chain(record, preferred)
        try:
            async with self._install_lock:
                result = await self.cpanel.install_ssl(record.vhost, record.cert_pem, record.key_pem, chain)
        except CPanelError as error:
            return Outcome(FAILED, record.vhost, f"The certificate was issued and kept, but cPanel could not install it: {error}.",
                           "Use Reinstall to try again; if it keeps failing, contact your hosting provider.",
                           names=tuple(record.names), expiry=record.expiry, issuer=record.issuer,
                           error_type="cpanel", order_url=record.order_url)
        with self.store.update() as document:
            current = document.certificate(record.vhost)
            if current is not None and current.cert_pem == record.cert_pem:
                changes = {"cert_id": result.cert_id, "key_id": result.key_id}
                if preferred is not None:
                    changes["preferred_issuer"] = preferred
                document.put_certificate(attrs.evolve(current, **changes))
        problems = []
        for target in targets:
            try:
                async with self._install_lock:
                    await self.cpanel.install_ssl(target, record.cert_pem, record.key_pem, chain)
            except CPanelError as error:
                problems.append(NameProblem(target, f"could not install the re-used certificate: {error}"))
        message = result.message or f"The certificate is installed on {record.vhost}."
        return Outcome(kind, record.vhost, message, names=tuple(record.names), problems=tuple(problems),
                       expiry=record.expiry, issuer=record.issuer, order_url=record.order_url)

    async def resume(self, vhost: str, deadline: float | None = None) -> Outcome:
        """Finish a deferred order of C{vhost} with the key stored for it."""
        outcome = await self._resume(vhost, deadline)
        if outcome.kind != DEFERRED:
            self._remember(outcome)
        return outcome

    async def _resume(self, vhost: str, deadline: float | None) -> Outcome:
        pending = self.store.read().pending().get(vhost)
        if pending is None:
            raise Refused(f"there is no deferred order for {vhost}", 404)
        host = await self.find_vhost(vhost)
        client = await self._client(pending.directory)
        csr = make_csr(load_private_key(pending.key_pem), list(pending.names))
        deadline = self._now() + (self.config.page_deadline if deadline is None else deadline)
        try:
            result = await client.resume(pending.order_url, csr, WebrootResponder(lambda n: host.document_root), deadline)
        except (ValidationFailed, OrderFailed, ACMEProblem) as error:
            if isinstance(error, (ValidationFailed, OrderFailed)) or error.code in ("malformed", "unauthorized"):
                # The order is dead (failed, expired, or unknown to the CA): forget it.
                with self.store.update() as document:
                    document.remove_pending(vhost)
                outcome = failure_outcome(vhost, pending.names, error)
                return attrs.evolve(outcome, advice="The order could not be finished; issue the certificate again.")
            with self.store.update() as document:
                document.put_pending(attrs.evolve(pending, attempts=pending.attempts + 1, last_error=str(error)))
            return failure_outcome(vhost, pending.names, error)
        except (ACMEError, CPanelError) as error:
            with self.store.update() as document:
                document.put_pending(attrs.evolve(pending, attempts=pending.attempts + 1, last_error=str(error)))
            return failure_outcome(vhost, pending.names, error)
        if isinstance(result, ACMEPending):
            retry = int(result.retry_after.timestamp()) if result.retry_after else 0
            with self.store.update() as document:
                document.put_pending(attrs.evolve(pending, attempts=pending.attempts + 1, retry_after=retry))
            return Outcome(DEFERRED, vhost, "Let's Encrypt is still working on this certificate.",
                           "Nothing to do: it is finished and installed in the background.",
                           names=pending.names, order_url=pending.order_url)
        self._remember_account(client, pending.directory)
        return await self._complete(host, list(pending.names), pending.key_pem, pending.key_type, pending.directory, result)

    async def renew(self, vhost: str, names=None, optional_names=(), skip_failed_names: bool = False,
                    deadline: float | None = None) -> Outcome:
        """
        Renew C{vhost}'s certificate with the same private key (as the original specification
        asks) and ARI's C{replaces} when the CA offers ARI.

        @param names: the names to renew for (default: the certificate's).
        @param optional_names: names to add (say, a domain newly parked on the website), left out
            when they fail the pre-flight; the certificate's own names are never dropped silently.
        """
        record = self.store.read().certificate(vhost)
        if record is None:
            raise Refused(f"lecp has no certificate for {vhost} to renew", 404)
        host = await self.find_vhost(vhost)
        required = await self._checked_names(host, names if names is not None else record.names)
        optional = [n for n in await self._checked_names(host, optional_names) if n not in required]
        names = required + optional
        self._claim(vhost, "renewal")
        try:
            results = await self._preflight(host, names)
            failed = {r.name: r for r in results if not r.ok}
            problems = tuple(NameProblem(r.name, r.reason, r.advice) for r in failed.values())
            if any(n in failed for n in required):
                passing = [n for n in names if n not in failed]
                if not skip_failed_names or host.name not in passing:
                    outcome = Outcome(PREFLIGHT_FAILED, vhost, "These names no longer reach this server: "
                                      + ", ".join(failed) + ".", "Fix their DNS, or remove them, before the certificate expires.",
                                      names=tuple(names), problems=problems)
                    self._remember(outcome)
                    return outcome
            names = [n for n in names if n not in failed]
            directory = self.config.acme_directory
            replaces = None
            client = await self._client(directory)
            try:
                if (await client.directory()).get("renewalInfo") and record.directory == directory:
                    replaces = ari_cert_id(load_certificate(record.cert_pem))
            except ACMEError as error:
                outcome = failure_outcome(vhost, names, error)
            else:
                key_type = record.key_type or str(certificate_facts(record.cert_pem).key_type)
                outcome = await self._order(host, names, record.key_pem, key_type, directory, False, deadline,
                                            renewal=True, replaces=replaces, client=client)
            self._remember(outcome)
            return outcome
        finally:
            self._release(vhost)
