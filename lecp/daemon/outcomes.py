# -*- test-case-name: tests.test_daemon_services -*-
"""
What root does with the outcome of a job it ran as a user: backoff and retry times in its state,
e-mails (to the account, at most one failure mail per certificate per 48 h, never when the user
opted out), events for the admin's summary, and counters for /metrics.
"""

from __future__ import annotations

import collections

import attrs
from twisted.logger import Logger

from lecp.daemon import mail
from lecp.daemon.policy import backoff_delay
from lecp.daemon.scan import Work
from lecp.outcome import DEFERRED, FAILED, ISSUED, PREFLIGHT_FAILED, REINSTALLED, Outcome

log = Logger()


@attrs.define
class Recorder:
    """Records outcomes; C{emails} maps users to their contact addresses (from WHM)."""

    clock: object
    settings: object
    state: object
    mailer: object
    emails: dict = attrs.field(factory=dict)
    counters: collections.Counter = attrs.field(factory=collections.Counter)

    @property
    def config(self):
        return self.settings.config

    async def record(self, work: Work, outcome: Outcome) -> None:
        now = self.clock.seconds()
        self.counters[(work.action, outcome.kind)] += 1
        state = self.state.cert(work.user, work.vhost)
        to = self.emails.get(work.user, ())
        if outcome.kind in (ISSUED, REINSTALLED):
            state.attempts, state.last_error, state.error_type, state.next_attempt = 0, "", "", 0.0
            state.last_success, state.last_attempt, state.ari_pick = now, now, None
            self.state.save_cert(state)
            self.state.clear_pending(work.user, work.vhost)
            self.state.add_event(now, work.user, work.vhost, "renewed" if outcome.kind == ISSUED else "reinstalled",
                                 outcome.message)
            log.info("{action} of {vhost} ({user}): {kind}", action=work.action, vhost=work.vhost, user=work.user,
                     kind=outcome.kind)
            if outcome.kind == ISSUED and not work.disable_mail:
                await self.mailer.send(mail.renewed(to, work.vhost, outcome.names, outcome.expiry))
            return
        if outcome.kind == DEFERRED:
            retry = max(outcome.retry_after, now + self.config.orders_interval)
            self.state.set_pending(work.user, work.vhost, outcome.order_url, retry)
            state.next_attempt, state.last_attempt = retry, now
            self.state.save_cert(state)
            return
        state.attempts += 1
        state.last_attempt, state.last_error, state.error_type = now, outcome.message, outcome.error_type or outcome.kind
        state.next_attempt = max(now + backoff_delay(state.attempts, self.config.backoff), float(outcome.retry_after or 0))
        self.state.add_event(now, work.user, work.vhost, "failed", outcome.message)
        log.warn("{action} of {vhost} ({user}) failed ({attempts} in a row): {message}", action=work.action,
                 vhost=work.vhost, user=work.user, attempts=state.attempts, message=outcome.message)
        if outcome.kind in (FAILED, PREFLIGHT_FAILED) and not work.disable_mail and (
                state.last_failure_mail is None or now - state.last_failure_mail >= self.config.failure_mail_interval):
            if work.action == "resume" and "issue the certificate again" in outcome.advice:
                message = mail.order_failed(to, work.vhost, outcome.message)
            else:
                message = mail.renewal_failed(to, work.vhost, outcome.message, outcome.advice, work.expiry,
                                              state.next_attempt, outcome.problems)
            if await self.mailer.send(message):
                state.last_failure_mail = now
        self.state.save_cert(state)

    async def alert(self, user: str, vhost: str, expiry: float, message: str) -> None:
        """Tell the admin a certificate is about to expire without a successful renewal."""
        state = self.state.cert(user, vhost)
        if await self.mailer.send(mail.admin_alert((self.config.admin_email,), user, vhost, expiry, message)):
            state.last_alert = self.clock.seconds()
            self.state.save_cert(state)

    async def summary(self) -> None:
        """The periodic summary to the admin, when it is due."""
        now = self.clock.seconds()
        last = float(self.state.get("summary_sent", "0"))
        if not last:
            self.state.set("summary_sent", now)
            return
        if now - last < self.config.summary_interval:
            return
        events = self.state.events_since(last)
        renewed = sum(1 for e in events if e[3] == "renewed")
        failing = {}
        for _, user, vhost, kind, detail in events:
            if kind == "failed":
                failing[(user, vhost)] = detail
            elif kind in ("renewed", "reinstalled"):
                failing.pop((user, vhost), None)
        if await self.mailer.send(mail.admin_summary((self.config.admin_email,), last, renewed,
                                                     [(u, v, d) for (u, v), d in sorted(failing.items())])):
            self.state.set("summary_sent", now)
            self.state.prune_events(now - 90 * 86400)
