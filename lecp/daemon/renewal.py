# -*- test-case-name: tests.test_daemon_services -*-
"""
The renewal service: a pass at start (after a random 0-8 minute delay) and every interval
(12 h): scan every account, then run what is due in workers as the users (one worker per account,
whatever it has due), a bounded number at once. One user's failure never stops the pass.
"""

from __future__ import annotations

import random

import attrs
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.task import deferLater
from twisted.logger import Logger

from lecp.daemon.accounts import read_passwd
from lecp.daemon.scan import InstalledCache, Work, read_userdatadomains, scan, vhost_domains
from lecp.daemon.timed import TimedService
from lecp.outcome import FAILED, Outcome

log = Logger()
ARI_CONCURRENCY = 8


def job_for(work: Work) -> dict:
    """The worker job that carries out C{work}."""
    if work.action == "renew":
        job = {"job": "renew", "vhost": work.vhost}
        if work.added_names:
            job["optional_names"] = list(work.added_names)
        return job
    return {"job": work.action, "vhost": work.vhost}


@attrs.define(eq=False, slots=False)
class RenewalService(TimedService):
    """Keeps every certificate of every account renewed."""

    state: object = None
    whm: object = None
    runner: object = None
    recorder: object = None
    passwd: object = None
    rng: random.Random = attrs.field(factory=random.Random)
    installed: InstalledCache | None = None
    scanner: object = None  # async (config, now) -> (ScanResult, emails); None: scan in this process
    http: object = None  # a treq-compatible client for ARI; None: no ARI checks
    _ari_clients: dict = attrs.field(factory=dict)

    def first_delay(self) -> float:
        return self.rng.uniform(0, self.config.first_pass_delay)

    def interval(self) -> float:
        return self.config.renewal_interval

    def on_stop(self) -> None:
        if self.scanner is not None:
            self.scanner.stop()
        self.runner.stop()

    async def _scan_here(self, config, now):
        """The scan in this process, yielding to the reactor (used by tests, and when no scanner is set)."""
        accounts = await self.whm.accounts()
        if self.installed is None or self.installed.root != config.apache_tls:
            self.installed = InstalledCache(config.apache_tls)
        hosts = vhost_domains(read_userdatadomains(config.userdatadomains))
        passwd = self.passwd() if self.passwd is not None else read_passwd(config.passwd)
        result = await scan(accounts, passwd, now, config, self.state.all_certs(), self.installed, hosts,
                            pause=lambda: deferLater(self.clock, 0, lambda: None), stopping=lambda: self._stopping)
        return result, {a.user: a.emails for a in accounts}

    async def run_once(self) -> None:
        config = self.config
        started = self.clock.seconds()
        result, emails = await (self.scanner or self._scan_here)(config, started)
        self.recorder.emails = emails
        self.runner.passwd = read_passwd(config.passwd) if self.passwd is None else self.passwd()
        scanned = self.clock.seconds()
        for user, error in result.errors:
            log.warn("Account {user}: {error}", user=user, error=error)
        for user, vhost, expiry, message in result.alerts:
            await self.recorder.alert(user, vhost, expiry, message)
        self.status.counts = {"accounts": result.accounts, "certificates": result.certificates,
                              "by_state": dict(result.states), "due": len(result.work), "errors": len(result.errors),
                              "scan_seconds": round(scanned - started, 3)}
        self.state.set("last_scan", started)
        log.info("Scanned {accounts} accounts, {certificates} certificates in {seconds:.1f} s; {due} due",
                 accounts=result.accounts, certificates=result.certificates, seconds=scanned - started,
                 due=len(result.work))
        result.work.extend(await self.check_ari(result.ari_checks, started))
        by_user: dict = {}
        for work in result.work:
            by_user.setdefault(work.user, []).append(work)
        await gatherResults([Deferred.fromCoroutine(self.carry_out(works[0]) if len(works) == 1 else self.carry_out_batch(works))
                             for works in by_user.values()])
        await self.recorder.summary()

    async def _ari_client(self, directory: str):
        """A client for the CA's renewalInfo (unauthenticated: its key is never registered)."""
        client = self._ari_clients.get(directory)
        if client is None:
            from lecp.acme.client import ACMEClient
            from lecp.keys import generate_private_key

            client = ACMEClient.create(self.http, self.clock, directory, generate_private_key("ecdsa:p-256"))
            self._ari_clients[directory] = client
        return client

    async def check_ari(self, checks, now: float) -> list:
        """
        Ask the CA for the renewal window of each certificate whose ARI check is due (RFC 9773):
        keep a random moment inside the window, ask again after the CA's Retry-After (at most 12 h
        later), and return the work for certificates whose moment has come.
        """
        if not checks or self.http is None:
            return []
        from lecp.acme.errors import ACMEError

        semaphore = DeferredSemaphore(ARI_CONCURRENCY)
        offered, due = {}, []

        async def check(user, vhost, directory, ari_id, expiry, disable_mail):
            if directory != self.config.acme_directory:
                return
            client = await self._ari_client(directory)
            if directory not in offered:
                try:
                    offered[directory] = bool((await client.directory()).get("renewalInfo"))
                except ACMEError:
                    offered[directory] = False
            if not offered[directory]:
                return
            state = self.state.cert(user, vhost)
            await semaphore.acquire()
            try:
                window = await client.renewal_info(ari_id)
            except ACMEError as error:
                log.info("ARI for {vhost} ({user}) not available: {error}", vhost=vhost, user=user, error=str(error))
                state.ari_next_check = now + 6 * 3600
                self.state.save_cert(state)
                return
            finally:
                semaphore.release()
            start, end = window.start.timestamp(), window.end.timestamp()
            if state.ari_pick is None or not start <= state.ari_pick <= end:
                state.ari_pick = window.pick_time(self.rng).timestamp()
            retry = window.retry_after.timestamp() if window.retry_after else now + 6 * 3600
            state.ari_next_check = min(max(retry, now + 60), now + 12 * 3600)
            state.ari_explanation = window.explanation_url
            self.state.save_cert(state)
            if state.ari_pick <= now and now >= state.next_attempt:
                if window.explanation_url:
                    log.info("The CA asks to renew {vhost} early: {url}", vhost=vhost, url=window.explanation_url)
                due.append(Work(user, vhost, "renew", "the CA's renewal window (ARI) has opened", expiry, (), disable_mail))

        await gatherResults([Deferred.fromCoroutine(check(*c)) for c in checks])
        return due

    async def carry_out_batch(self, works: list) -> None:
        """Run all of one account's work in one worker (one start, one set of imports) and record each outcome."""
        if self._stopping:
            return
        try:
            outcomes = await self.runner.run_batch(works[0].user, [job_for(work) for work in works])
        except Exception as e:
            log.failure("Worker for {user}", user=works[0].user)
            outcomes = [Outcome(FAILED, w.vhost, f"the worker could not be run: {e}", error_type="worker") for w in works]
        for work, outcome in zip(works, outcomes):
            try:
                await self.recorder.record(work, outcome)
            except Exception:
                log.failure("Recording the outcome for {user} {vhost}", user=work.user, vhost=work.vhost)

    async def carry_out(self, work: Work) -> None:
        """Run one piece of work in a worker and record its outcome; never raises."""
        if self._stopping:
            return
        try:
            outcome = await self.runner.run(work.user, job_for(work))
        except Exception as e:
            log.failure("Worker for {user} {vhost}", user=work.user, vhost=work.vhost)
            outcome = Outcome(FAILED, work.vhost, f"the worker could not be run: {e}", error_type="worker")
        try:
            await self.recorder.record(work, outcome)
        except Exception:
            log.failure("Recording the outcome for {user} {vhost}", user=work.user, vhost=work.vhost)
