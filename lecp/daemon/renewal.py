# -*- test-case-name: tests.test_daemon_services -*-
"""
The renewal service: a pass at start (after a random 0-8 minute delay) and every interval
(12 h): scan every account, then run what is due in workers as the users, a bounded number at
once. One user's failure never stops the pass.
"""

from __future__ import annotations

import pwd
import random

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.logger import Logger

from lecp.daemon.scan import InstalledCache, Work, read_userdatadomains, scan, vhost_domains
from lecp.daemon.timed import TimedService
from lecp.outcome import FAILED, Outcome

log = Logger()


def _passwd() -> dict:
    return {p.pw_name: p for p in pwd.getpwall()}


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
    passwd: object = _passwd
    rng: random.Random = attrs.field(factory=random.Random)
    installed: InstalledCache | None = None

    def first_delay(self) -> float:
        return self.rng.uniform(0, self.config.first_pass_delay)

    def interval(self) -> float:
        return self.config.renewal_interval

    def on_stop(self) -> None:
        self.runner.stop()

    async def run_once(self) -> None:
        config = self.config
        started = self.clock.seconds()
        accounts = await self.whm.accounts()
        self.recorder.emails = {a.user: a.emails for a in accounts}
        if self.installed is None or self.installed.root != config.apache_tls:
            self.installed = InstalledCache(config.apache_tls)
        hosts = vhost_domains(read_userdatadomains(config.userdatadomains))
        result = await scan(accounts, self.passwd(), started, config, self.state.all_certs(), self.installed, hosts,
                            pause=lambda: deferLater(self.clock, 0, lambda: None), stopping=lambda: self._stopping)
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
        await gatherResults([Deferred.fromCoroutine(self.carry_out(work)) for work in result.work])
        await self.recorder.summary()

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
