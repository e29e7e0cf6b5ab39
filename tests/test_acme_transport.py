"""Tests for L{lecp.acme.transport}: header parsing, error mapping, timeouts and connection failures."""

from __future__ import annotations

import datetime

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from lecp.acme.errors import ACMEConnectionError, ACMEHTTPError, ACMEProtocolError, RateLimited, ServerInternal
from lecp.acme.transport import JWSTransport, parse_links, parse_retry_after
from lecp.acme.client import jwk_and_alg
from lecp.keys import generate_private_key

NOW = datetime.datetime(2027, 1, 15, 12, 0, tzinfo=datetime.timezone.utc)


class HeaderParsingTests(SynchronousTestCase):
    """Retry-After and Link."""

    def test_retry_after_seconds(self):
        """Delta-seconds count from now."""
        self.assertEqual(parse_retry_after("120", NOW), NOW + datetime.timedelta(seconds=120))

    def test_retry_after_http_date(self):
        """An HTTP-date is read as UTC."""
        self.assertEqual(
            parse_retry_after("Fri, 15 Jan 2027 13:00:00 GMT", NOW), NOW + datetime.timedelta(hours=1)
        )

    def test_retry_after_in_the_past_is_now(self):
        """A date already past means: now."""
        self.assertEqual(parse_retry_after("Thu, 01 Jan 2026 00:00:00 GMT", NOW), NOW)

    def test_retry_after_garbage(self):
        """Missing or unreadable values give None."""
        for value in (None, "", "soon", "-5"):
            self.assertIsNone(parse_retry_after(value, NOW))

    def test_links(self):
        """Several links, quoted and unquoted rel, several rels in one."""
        links = parse_links(['<https://a/x>;rel="alternate", <https://a/y>; rel=alternate', '<https://a/up>;rel="up index"'])
        self.assertEqual(
            links, [("https://a/x", "alternate"), ("https://a/y", "alternate"), ("https://a/up", "up"), ("https://a/up", "index")]
        )


class _Answer(Resource):
    isLeaf = True

    def __init__(self, code, body, headers):
        super().__init__()
        self.code, self.body, self.headers = code, body, headers

    def render(self, request):
        request.setResponseCode(self.code)
        for k, v in self.headers.items():
            request.setHeader(k, v)
        return self.body


class _Never:
    """An HTTP client whose requests never answer."""

    calls = 0

    def request(self, *args, **kwargs):
        self.calls += 1
        return Deferred()


class _Sequence:
    """An HTTP client answering each request with the next of C{answers} (code, body, headers)."""

    def __init__(self, answers):
        self.answers, self.calls = list(answers), 0

    def request(self, method, url, **kwargs):
        code, body, headers = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return StubTreq(_Answer(code, body, headers)).request(method, url, **kwargs)


class _Refusing:
    """An HTTP client whose connections are refused."""

    def request(self, *args, **kwargs):
        from twisted.internet.error import ConnectionRefusedError

        d = Deferred()
        d.errback(ConnectionRefusedError("refused"))
        return d


class TransportErrorTests(SynchronousTestCase):
    """How answers and failures become typed errors."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW.timestamp())
        self.jwk, self.alg = jwk_and_alg(generate_private_key("ecdsa:p-256"))

    def transport(self, http):
        return JWSTransport(http, self.clock, key=self.jwk, alg=self.alg, kid="https://ca/acct/1", new_nonce_url="https://ca/nonce")

    def get(self, code, body, headers=None):
        transport = self.transport(StubTreq(_Answer(code, body, headers or {})))
        return Deferred.fromCoroutine(transport.get("https://ca/thing"))

    def test_problem_document(self):
        """A problem+json answer becomes the matching ACMEProblem subclass, with Retry-After."""
        body = b'{"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many"}'
        failure = self.failureResultOf(
            self.get(429, body, {"Content-Type": "application/problem+json", "Retry-After": "60"}), RateLimited
        )
        self.assertEqual(failure.value.retry_after, NOW + datetime.timedelta(seconds=60))
        self.assertEqual(failure.value.status, 429)

    def test_server_internal(self):
        """serverInternal is retried after 1 s and 4 s, then says the CA failed and lecp will retry."""
        body = b'{"type": "urn:ietf:params:acme:error:serverInternal", "detail": "db down"}'
        d = self.get(500, body, {"Content-Type": "application/problem+json"})
        self.assertNoResult(d)
        self.clock.advance(1)
        self.assertNoResult(d)
        self.clock.advance(4)
        failure = self.failureResultOf(d, ServerInternal)
        self.assertIn("retry later", str(failure.value))

    def test_html_error(self):
        """A proxy's HTML 503 becomes ACMEHTTPError with the status and the wait asked."""
        failure = self.failureResultOf(self.get(503, b"<html>busy</html>", {"Retry-After": "30"}), ACMEHTTPError)
        self.assertIn("HTTP 503", str(failure.value))
        self.assertIn("2027-01-15 12:00:30 UTC", str(failure.value))

    def test_not_json(self):
        """A 200 that is not JSON is a protocol error when parsed."""
        response = self.successResultOf(self.get(200, b"<html>", {}))
        self.assertRaises(ACMEProtocolError, response.json)

    def test_timeout(self):
        """A request that never answers times out after 30 s, on the injected clock, twice retried."""
        http = _Never()
        d = Deferred.fromCoroutine(self.transport(http).get("https://ca/thing"))
        for step in (30, 1, 30, 4):
            self.assertNoResult(d)
            self.clock.advance(step)
        self.assertNoResult(d)
        self.clock.advance(30)
        failure = self.failureResultOf(d, ACMEConnectionError)
        self.assertEqual(http.calls, 3)
        self.assertIn("timed out", str(failure.value))

    def test_refused(self):
        """A refused connection says so and names the URL."""
        d = Deferred.fromCoroutine(self.transport(_Refusing()).get("https://ca/x"))
        self.clock.advance(1)
        self.clock.advance(4)
        failure = self.failureResultOf(d, ACMEConnectionError)
        self.assertIn("https://ca/x", str(failure.value))
        self.assertIn("connectionrefused", str(failure.value).replace(" ", "").lower())

    def test_short_retry_after_is_waited_for(self):
        """A 503 asking for 7 s is retried once 7 s have passed (not before), and the retry's answer counts."""
        answers = [(503, b"busy", {"Retry-After": "7"}), (200, b'{"ok": true}', {})]
        http = _Sequence(answers)
        d = Deferred.fromCoroutine(self.transport(http).get("https://ca/thing"))
        self.clock.advance(6.9)
        self.assertNoResult(d)
        self.assertEqual(http.calls, 1)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d).json(), {"ok": True})
        self.assertEqual(http.calls, 2)

    def test_long_retry_after_is_left_to_the_caller(self):
        """A 503 asking for more than 20 s is raised at once, carrying the moment, for the caller to schedule."""
        http = _Sequence([(503, b"busy", {"Retry-After": "120"})])
        failure = self.failureResultOf(Deferred.fromCoroutine(self.transport(http).get("https://ca/thing")), ACMEHTTPError)
        self.assertEqual(failure.value.retry_after, NOW + datetime.timedelta(seconds=120))
        self.assertEqual(http.calls, 1)

    def test_rate_limit_is_never_retried(self):
        """rateLimited is not transient: one request, no retry."""
        body = b'{"type": "urn:ietf:params:acme:error:rateLimited", "detail": "slow down"}'
        http = _Sequence([(503, body, {"Content-Type": "application/problem+json", "Retry-After": "1"})])
        self.failureResultOf(Deferred.fromCoroutine(self.transport(http).get("https://ca/thing")), RateLimited)
        self.assertEqual(http.calls, 1)

    def test_newnonce_without_header(self):
        """A newNonce answer without Replay-Nonce is a protocol error, not a hang."""
        transport = self.transport(StubTreq(_Answer(200, b"", {})))
        failure = self.failureResultOf(Deferred.fromCoroutine(transport.post("https://ca/x", {})), ACMEProtocolError)
        self.assertIn("Replay-Nonce", str(failure.value))
