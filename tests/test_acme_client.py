"""Tests for L{lecp.acme.client}, against the in-memory CA of L{lecp.testing.fakeacme}."""

from __future__ import annotations

import datetime

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lecp.acme.client import ACMEClient, IssuedCertificate, PendingOrder
from lecp.acme.errors import (
    ACMEProblem,
    BadNonce,
    NoSupportedChallenge,
    OrderFailed,
    RateLimited,
    ValidationFailed,
)
from lecp.keys import certificate_facts, generate_private_key, load_certificate, make_csr, split_pem_chain
from lecp.testing.fakeacme import PROBLEM, FakeACME, MemoryResponder, http_date

START = 1_800_000_000  # 2027-01-15, a fixed "now" for every test
NAMES = ["example.com", "www.example.com"]

_DOMAIN_KEY = generate_private_key("ecdsa:p-256")
_ACCOUNT_KEY = generate_private_key("ecdsa:p-256")


class ACMEFixture(SynchronousTestCase):
    """A fake CA, a client wired to it through StubTreq, and a Clock."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(START)
        self.responder = MemoryResponder()
        self.ca = FakeACME(self.clock, responder=self.responder)
        self.client = self.make_client()
        self.csr = make_csr(_DOMAIN_KEY, NAMES)

    def make_client(self, account_url=None):
        return ACMEClient.create(StubTreq(self.ca), self.clock, self.ca.directory_url, _ACCOUNT_KEY, account_url=account_url)

    def drive(self, coroutine, max_seconds=600.0):
        """Run C{coroutine}, advancing the Clock through its sleeps; returns the fired Deferred."""
        d = Deferred.fromCoroutine(coroutine)
        self.slept = []
        until = self.clock.seconds() + max_seconds
        while not d.called and self.clock.getDelayedCalls() and self.clock.seconds() < until:
            step = min(c.getTime() for c in self.clock.getDelayedCalls()) - self.clock.seconds()
            self.slept.append(round(step, 3))
            self.clock.advance(step)
        return d

    def issue(self, deadline=None, **kw):
        return self.drive(self.client.issue(NAMES, self.csr, self.responder, deadline, **kw))


class IssuanceTests(ACMEFixture):
    """The happy paths of L{ACMEClient.issue}."""

    def test_issues_a_certificate_for_every_name(self):
        """An order for two names ends in a chain whose leaf carries both names and the CSR's key."""
        result = self.successResultOf(self.issue())
        self.assertIsInstance(result, IssuedCertificate)
        facts = certificate_facts(result.fullchain_pem)
        self.assertEqual(sorted(facts.names), sorted(NAMES))
        self.assertEqual(len(split_pem_chain(result.fullchain_pem)), 2)
        self.assertEqual(
            load_certificate(result.fullchain_pem).public_key().public_numbers(),
            _DOMAIN_KEY.public_key().public_numbers(),
        )

    def test_challenges_are_withdrawn_afterwards(self):
        """Every challenge published is withdrawn once the order is done."""
        self.successResultOf(self.issue())
        self.assertEqual(self.responder.published, {})
        self.assertEqual(len(self.responder.withdrawn), 2)

    def test_account_created_once_with_terms_agreed(self):
        """The first issuance registers the key; a second one reuses the account without a newAccount."""
        self.successResultOf(self.issue())
        self.assertEqual(len(self.ca.accounts), 1)
        self.assertEqual(self.ca.paths("POST").count("/new-account"), 1)
        self.successResultOf(self.issue())
        self.assertEqual(self.ca.paths("POST").count("/new-account"), 1)

    def test_find_account_by_key(self):
        """A client that knows only the key finds the existing account with onlyReturnExisting."""
        url = self.successResultOf(self.drive(self.client.register()))
        other = self.make_client()
        self.assertEqual(self.successResultOf(self.drive(other.find_account())), url)

    def test_find_account_none(self):
        """onlyReturnExisting for an unknown key answers None and creates nothing."""
        self.assertIsNone(self.successResultOf(self.drive(self.client.find_account())))
        self.assertEqual(self.ca.accounts, {})

    def test_reused_valid_authorizations_need_no_challenge(self):
        """Authorizations already valid are not answered again."""
        self.successResultOf(self.issue())
        for authz in self.ca.authzs.values():
            authz["status"] = "valid"
        order_count = len(self.ca.orders)
        self.ca.failures = {n: None for n in NAMES}  # a challenge answered now would fail
        order = self.successResultOf(self.drive(self.client.new_order(NAMES)))
        for url in order.body.authorizations:
            self.ca.authzs[int(url.rsplit("/", 1)[1])]["status"] = "valid"
        result = self.successResultOf(self.drive(self.client.drive(order, self.csr, self.responder)))
        self.assertIsInstance(result, IssuedCertificate)
        self.assertEqual(len(self.ca.orders), order_count + 1)

    def test_alternate_chains_downloaded(self):
        """Every Link rel=alternate chain is fetched and kept."""
        self.ca.alternate_chains = 2
        result = self.successResultOf(self.issue())
        self.assertEqual(len(result.alternate_chains), 2)
        issuers = {certificate_facts(split_pem_chain(c)[1]).common_name for c in result.alternate_chains}
        self.assertEqual(issuers, {"Fake Alternate 0", "Fake Alternate 1"})

    def test_profile_sent_only_when_offered(self):
        """A profile the CA lists goes into newOrder; one it does not list is left out."""
        self.successResultOf(self.issue(profile="tlsserver"))
        self.assertIsNone(list(self.ca.orders.values())[-1]["_profile"])
        self.ca.profiles = {"tlsserver": "45 days"}
        self.client = self.make_client()
        self.successResultOf(self.issue(profile="tlsserver"))
        self.assertEqual(list(self.ca.orders.values())[-1]["_profile"], "tlsserver")

    def test_replaces_sent(self):
        """An ARI renewal carries replaces."""
        self.successResultOf(self.issue(replaces="abc.def"))
        self.assertEqual(list(self.ca.orders.values())[-1]["_replaces"], "abc.def")

    def test_already_replaced_retried_without_replaces(self):
        """When the CA says the certificate was already replaced, the order is made again without replaces."""
        self.ca.already_replaced.add("abc.def")
        result = self.successResultOf(self.issue(replaces="abc.def"))
        self.assertIsInstance(result, IssuedCertificate)
        self.assertIsNone(list(self.ca.orders.values())[-1]["_replaces"])


class NonceTests(ACMEFixture):
    """Nonce handling and badNonce retries."""

    def test_bad_nonce_retried_five_times(self):
        """Five badNonce answers in a row are absorbed."""
        self.ca.bad_nonces = 5
        self.assertIsInstance(self.successResultOf(self.issue()), IssuedCertificate)

    def test_bad_nonce_gives_up_after_five_retries(self):
        """A sixth badNonce in a row is raised, with a message that says to try again."""
        self.ca.bad_nonces = 6
        failure = self.failureResultOf(self.issue(), BadNonce)
        self.assertIn("nonce", str(failure.value))

    def test_nonces_taken_from_every_answer(self):
        """After the first HEAD newNonce, every request uses a nonce from a previous answer, errors included."""
        self.ca.bad_nonces = 2
        self.successResultOf(self.issue())
        self.assertEqual(self.ca.paths("HEAD"), ["/nonce"])


class PollingTests(ACMEFixture):
    """Polling the order and authorizations: Retry-After, backoff, deadlines."""

    def test_backoff_without_retry_after(self):
        """Without Retry-After: quick looks, every second for 10 s, then doubling, capped at 10 s."""
        self.ca.processing_polls = 20
        self.successResultOf(self.issue(deadline=START + 120))
        self.assertEqual(self.slept, [0.05, 0.1, 0.2, 0.35, 0.5, 0.75] + [1.0] * 10 + [2.0, 4.0, 8.0, 10.0, 10.0])

    def test_retry_after_seconds_honoured(self):
        """Retry-After in seconds sets the wait between polls."""
        self.ca.processing_polls = 2
        self.ca.processing_retry_after = "7"
        self.successResultOf(self.issue())
        self.assertEqual(self.slept, [0.05, 7.0, 7.0])

    def test_retry_after_http_date_honoured(self):
        """Retry-After as an HTTP-date is waited for."""
        self.ca.processing_polls = 1
        self.ca.processing_retry_after = http_date(
            datetime.datetime.fromtimestamp(START + 30, tz=datetime.timezone.utc)
        )
        self.successResultOf(self.issue())
        self.assertEqual(self.slept, [0.05, 29.95])
        self.assertGreaterEqual(self.clock.seconds(), START + 30)

    def test_deadline_returns_pending_order(self):
        """An order still processing at the deadline is handed back with its URL, not abandoned."""
        self.ca.processing_polls = 1000
        result = self.successResultOf(self.issue(deadline=START + 20))
        self.assertIsInstance(result, PendingOrder)
        self.assertEqual(result.status, "processing")
        self.assertIn(result.order_url, [f"https://acme.test/order/{i}" for i in self.ca.orders])
        self.assertLessEqual(self.clock.seconds(), START + 20)

    def test_resume_finishes_a_pending_order(self):
        """Resuming a pending order later downloads the certificate without a new order."""
        self.ca.processing_polls = 1000
        pending = self.successResultOf(self.issue(deadline=START + 5))
        self.ca.processing_polls = 0
        self.ca._processing_left.clear()
        orders = len(self.ca.orders)
        result = self.successResultOf(self.drive(self.client.resume(pending.order_url, self.csr, self.responder)))
        self.assertIsInstance(result, IssuedCertificate)
        self.assertEqual(len(self.ca.orders), orders)

    def test_resume_from_pending_authorizations(self):
        """Resuming an order whose challenges were never answered publishes and answers them."""
        order = self.successResultOf(self.drive(self.client.ensure_account()))
        order = self.successResultOf(self.drive(self.client.new_order(NAMES)))
        result = self.successResultOf(self.drive(self.client.resume(order.url, self.csr, self.responder)))
        self.assertIsInstance(result, IssuedCertificate)

    def test_resume_ready_order_finalizes(self):
        """Resuming a ready order sends the CSR."""
        self.successResultOf(self.drive(self.client.ensure_account()))
        order = self.successResultOf(self.drive(self.client.new_order(NAMES)))
        for url in order.body.authorizations:
            self.ca.authzs[int(url.rsplit("/", 1)[1])]["status"] = "valid"
        result = self.successResultOf(self.drive(self.client.resume(order.url, self.csr, self.responder)))
        self.assertIsInstance(result, IssuedCertificate)
        self.assertEqual(self.ca.paths("POST").count(order.body.finalize.replace("https://acme.test", "")), 1)

    def test_authorization_pending_past_deadline(self):
        """Authorizations still pending at the deadline give a pending order, and challenges are withdrawn."""
        self.ca.pending_polls = 10_000
        result = self.successResultOf(self.issue(deadline=START + 3))
        self.assertIsInstance(result, PendingOrder)
        self.assertEqual(result.status, "pending")
        self.assertEqual(self.responder.published, {})

    def test_no_tight_loop(self):
        """However long the CA takes, polls are spaced: one a second at most, one per 10 s after the first 25 s."""
        self.ca.processing_polls = 1000
        self.successResultOf(self.issue(deadline=START + 600))
        polls = self.ca.paths("POST").count("/order/" + str(list(self.ca.orders)[-1]))
        self.assertLess(polls, 80)  # 19 in the first 26 s, then one per 10 s


class FailureTests(ACMEFixture):
    """Every way an order can fail, and what the error says."""

    def test_invalid_authorization_with_error(self):
        """A failed validation names the domain, the URL and the reason, and is raised at once."""
        self.ca.failures = {
            "www.example.com": {
                "type": PROBLEM + "connection",
                "detail": "127.0.0.1: Fetching http://www.example.com/.well-known/acme-challenge/x: Connection refused",
            }
        }
        failure = self.failureResultOf(self.issue(), ValidationFailed)
        message = str(failure.value)
        self.assertIn("www.example.com: the CA could not reach http://www.example.com/.well-known/acme-challenge/", message)
        self.assertIn("(connection refused)", message)
        self.assertEqual([f.identifier for f in failure.value.failures], ["www.example.com"])
        self.assertLess(self.clock.seconds() - START, 1)

    def test_invalid_authorization_without_error(self):
        """An invalid authorization with no error object still fails at once (acme2certifier does this)."""
        self.ca.failures = {"example.com": None}
        failure = self.failureResultOf(self.issue(deadline=START + 300), ValidationFailed)
        self.assertIn("example.com: the CA marked the authorization invalid and gave no reason", str(failure.value))
        self.assertLess(self.clock.seconds() - START, 1)

    def test_wrong_key_authorization(self):
        """A responder that publishes the wrong content fails validation with unauthorized."""

        class WrongResponder(MemoryResponder):
            def start_responding(self, identifier, token, key_authorization):
                MemoryResponder.start_responding(self, identifier, token, "nonsense")

        self.responder = WrongResponder()
        self.ca.responder = self.responder
        failure = self.failureResultOf(self.issue(), ValidationFailed)
        self.assertEqual(len(failure.value.failures), 2)
        self.assertEqual(self.responder.published, {})

    def test_rate_limited(self):
        """A rateLimited answer says until when, from Retry-After."""
        self.ca.reject_new_orders = (429, "rateLimited", "too many certificates for exact set", {"Retry-After": "3600"})
        failure = self.failureResultOf(self.issue(), RateLimited)
        self.assertEqual(failure.value.retry_after, datetime.datetime.fromtimestamp(START + 3600, tz=datetime.timezone.utc))
        self.assertIn("rate limited until 2027-01-15 09:", str(failure.value))

    def test_order_invalid_without_failed_authz(self):
        """An invalid order with valid authorizations raises OrderFailed with the order's error."""
        self.successResultOf(self.drive(self.client.ensure_account()))
        order = self.successResultOf(self.drive(self.client.new_order(NAMES)))
        oid = int(order.url.rsplit("/", 1)[1])
        self.ca.orders[oid]["status"] = "invalid"
        self.ca.orders[oid]["error"] = {"type": PROBLEM + "serverInternal", "detail": "signing failed"}
        failure = self.failureResultOf(self.drive(self.client.resume(order.url, self.csr, self.responder)), OrderFailed)
        self.assertIn("signing failed", str(failure.value))

    def test_account_lost_recovered(self):
        """When the CA forgot the account, the client registers again and the request succeeds."""
        self.successResultOf(self.issue())
        old = self.client.account_url
        self.ca.forget_accounts()
        self.assertIsInstance(self.successResultOf(self.issue()), IssuedCertificate)
        self.assertNotEqual(self.client.account_url, old)

    def test_no_http01_offered(self):
        """A CA that offers no challenge of the responder's type gets a clear error."""
        class AlpnResponder(MemoryResponder):
            challenge_type = "tls-alpn-01"

        self.responder = AlpnResponder()
        failure = self.failureResultOf(self.issue(), NoSupportedChallenge)
        self.assertIn("offered: dns-01, http-01", str(failure.value))

    def test_problem_keeps_subproblems(self):
        """A problem's subproblems and identifiers are kept and shown."""
        problem = ACMEProblem.from_json(
            {
                "type": PROBLEM + "rejectedIdentifier",
                "detail": "some names refused",
                "subproblems": [{"type": PROBLEM + "rejectedIdentifier", "detail": "forbidden",
                                 "identifier": {"type": "dns", "value": "bad.example"}}],
            }
        )
        self.assertEqual(problem.subproblems[0].identifier, "bad.example")
        self.assertIn("bad.example: the CA refused the request (rejectedIdentifier): forbidden", str(problem))


class OtherOperationsTests(ACMEFixture):
    """Revocation, deactivation and ARI."""

    def test_revoke(self):
        """A revoked certificate reaches the CA's revokeCert."""
        result = self.successResultOf(self.issue())
        self.successResultOf(self.drive(self.client.revoke(load_certificate(result.fullchain_pem))))
        self.assertEqual(self.ca.revoked[0].serial_number, load_certificate(result.fullchain_pem).serial_number)

    def test_abandon_deactivates_pending_authorizations(self):
        """Abandoning an order deactivates its pending authorizations."""
        self.successResultOf(self.drive(self.client.ensure_account()))
        order = self.successResultOf(self.drive(self.client.new_order(NAMES)))
        count = self.successResultOf(self.drive(self.client.abandon(order.url)))
        self.assertEqual(count, 2)
        self.assertEqual({a["status"] for a in self.ca.authzs.values()}, {"deactivated"})

    def test_renewal_info(self):
        """ARI answers the window, the explanation URL and Retry-After."""
        self.ca.ari = True
        self.ca.ari_window = ("2027-02-01T00:00:00Z", "2027-02-03T00:00:00Z")
        window = self.successResultOf(self.drive(self.client.renewal_info("aaa.bbb")))
        self.assertEqual(window.start, datetime.datetime(2027, 2, 1, tzinfo=datetime.timezone.utc))
        self.assertEqual(window.explanation_url, "https://acme.test/why")
        self.assertEqual(window.retry_after, datetime.datetime.fromtimestamp(START + 21600, tz=datetime.timezone.utc))
        picked = window.pick_time()
        self.assertTrue(window.start <= picked <= window.end)

    def test_renewal_info_absent(self):
        """Without renewalInfo in the directory there is no window and no request."""
        self.assertIsNone(self.successResultOf(self.drive(self.client.renewal_info("aaa.bbb"))))
        self.assertEqual([p for p in self.ca.paths() if p.startswith("/ari")], [])
