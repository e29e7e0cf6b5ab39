"""Tests for L{lecp.daemon.policy}."""

from twisted.trial.unittest import SynchronousTestCase

from lecp.daemon.policy import DAY, REINSTALL, RENEW, WAIT, backoff_delay, decide, renewal_time


class PolicyTests(SynchronousTestCase):
    """When certificates are due."""

    def test_ninety_days_renew_thirty_days_before(self):
        """A 90-day certificate is due with 30 days left."""
        self.assertEqual(renewal_time(0, 90 * DAY), 60 * DAY)

    def test_short_lifetimes(self):
        """45 days: at a third left (15 days); 6 days: at half (3 days)."""
        self.assertEqual(renewal_time(0, 45 * DAY), 30 * DAY)
        self.assertEqual(renewal_time(0, 6 * DAY), 3 * DAY)

    def test_decisions(self):
        """Wait before due, renew after, the ARI pick wins when earlier, backoff holds a retry."""
        self.assertEqual(decide(10 * DAY, 0, 90 * DAY).action, WAIT)
        self.assertEqual(decide(10 * DAY, 0, 90 * DAY).due_at, 60 * DAY)
        self.assertEqual(decide(61 * DAY, 0, 90 * DAY).action, RENEW)
        ari = decide(20 * DAY, 0, 90 * DAY, ari_pick=19 * DAY)
        self.assertEqual((ari.action, ari.reason), (RENEW, "the CA's renewal window (ARI) has opened"))
        held = decide(61 * DAY, 0, 90 * DAY, next_attempt=62 * DAY)
        self.assertEqual((held.action, held.due_at), (WAIT, 62 * DAY))

    def test_reinstall_before_expiry_only(self):
        """A certificate missing from cPanel is reinstalled while it is valid."""
        self.assertEqual(decide(10 * DAY, 0, 90 * DAY, installed_matches=False).action, REINSTALL)
        self.assertEqual(decide(91 * DAY, 0, 90 * DAY, installed_matches=False).action, RENEW)

    def test_backoff(self):
        """1 min, 10 min, 100 min, then daily."""
        schedule = (60, 600, 6000, 86400)
        self.assertEqual([backoff_delay(n, schedule) for n in range(6)], [0, 60, 600, 6000, 86400, 86400])
