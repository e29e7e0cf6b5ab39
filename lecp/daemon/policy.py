# -*- test-case-name: tests.test_daemon_policy -*-
"""
When a certificate is due, as pure functions of its dates, root's state and the clock:

- the CA's ARI window, when it gave one: a random moment inside it (RFC 9773);
- else when a third of the lifetime remains (half for lifetimes under 10 days), and in any case
  within C{renew_within_days} of expiry for certificates of 90 days or more;
- after a failure, not before the backoff (1 min, 10 min, 100 min, then daily) or the CA's
  C{Retry-After} for rate limits.
"""

from __future__ import annotations

import attrs

DAY = 86400.0
RENEW, REINSTALL, WAIT = "renew", "reinstall", "wait"


@attrs.frozen
class Decision:
    """What to do with one certificate now, why, and (for C{wait}) from when it is due."""

    action: str
    reason: str
    due_at: float


def renewal_time(not_before: float, not_after: float, remaining_fraction: float = 1 / 3,
                 renew_within_days: float = 30.0) -> float:
    """The moment the lifetime rule makes a certificate due."""
    lifetime = max(not_after - not_before, 0.0)
    fraction = 0.5 if lifetime < 10 * DAY else remaining_fraction
    remaining = lifetime * fraction
    if lifetime >= 89 * DAY:
        remaining = max(remaining, renew_within_days * DAY)
    return not_after - remaining


def backoff_delay(attempts: int, schedule) -> float:
    """The wait after the C{attempts}-th failure in a row."""
    if attempts <= 0:
        return 0.0
    return float(schedule[min(attempts, len(schedule)) - 1])


def decide(now: float, not_before: float, not_after: float, next_attempt: float = 0.0, ari_pick: float | None = None,
           installed_matches: bool = True, remaining_fraction: float = 1 / 3, renew_within_days: float = 30.0) -> Decision:
    """The decision for one certificate (see the module docstring)."""
    if not installed_matches and now < not_after:
        return Decision(REINSTALL, "the certificate installed in cPanel is not the one lecp stored", now)
    due_at = renewal_time(not_before, not_after, remaining_fraction, renew_within_days)
    reason = f"{(not_after - now) / DAY:.1f} days of validity left"
    if ari_pick is not None and ari_pick < due_at:
        due_at, reason = ari_pick, "the CA's renewal window (ARI) has opened"
    if now < due_at:
        return Decision(WAIT, "not due yet", due_at)
    if now < next_attempt:
        return Decision(WAIT, "waiting after a failed attempt", next_attempt)
    return Decision(RENEW, reason, due_at)
