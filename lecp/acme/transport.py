# -*- test-case-name: tests.test_acme_transport -*-
"""
Signed HTTP to one ACME server: the nonce pool, JWS signing, C{badNonce} retries, timeouts and
the translation of error answers into L{lecp.acme.errors} exceptions.

HTTP goes through an injected treq-compatible client (the C{treq} module, a
C{treq.client.HTTPClient}, or C{treq.testing.StubTreq}); time through an injected
C{IReactorTime}.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import re

import attrs
import josepy as jose
from acme import jws
from twisted.internet.defer import CancelledError, Deferred, TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectError, ConnectionClosed, DNSLookupError, TimeoutError as ConnectTimeout
from twisted.logger import Logger
from twisted.web.client import RequestTransmissionFailed, ResponseFailed, ResponseNeverReceived
from twisted.web.http_headers import Headers

from lecp import __version__
from lecp.acme.errors import (
    ACMEConnectionError,
    ACMEHTTPError,
    ACMEProblem,
    ACMEProtocolError,
    BadNonce,
)

PROBLEM_CONTENT_TYPE = "application/problem+json"
JOSE_CONTENT_TYPE = "application/jose+json"
USER_AGENT = f"lecp/{__version__} (cPanel; Twisted)"
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
TRANSIENT_DELAYS = (1.0, 4.0)
MAX_TRANSIENT_WAIT = 20.0
TRANSIENT_STATUSES = (500, 502, 503, 504)

log = Logger()


def utc_now(clock) -> datetime.datetime:
    """The clock's time as an aware UTC datetime."""
    return datetime.datetime.fromtimestamp(clock.seconds(), tz=datetime.timezone.utc)


def parse_retry_after(value: str | None, now: datetime.datetime) -> datetime.datetime | None:
    """
    Read a C{Retry-After} header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

    @return: the moment from which a retry is allowed, or C{None} for a missing or unreadable value.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + datetime.timedelta(seconds=int(value))
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return max(moment, now)


_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]+)*)')


def parse_links(values: list[str]) -> list[tuple[str, str]]:
    """The C{(url, rel)} pairs of C{Link} header values (RFC 8288)."""
    found = []
    for value in values:
        for match in _LINK.finditer(value):
            rel = None
            for param in match.group(2).split(";"):
                name, _, arg = param.strip().partition("=")
                if name.strip().lower() == "rel":
                    rel = arg.strip().strip('"')
            if rel:
                for one in rel.split():
                    found.append((match.group(1), one))
    return found


@attrs.frozen
class Response:
    """A complete HTTP answer from the ACME server."""

    code: int
    headers: Headers
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        """The last value of header C{name}, decoded, or C{None}."""
        values = self.headers.getRawHeaders(name)
        return values[-1] if values else None

    @property
    def content_type(self) -> str:
        """The media type, without parameters, in lower case."""
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    @property
    def location(self) -> str | None:
        """The C{Location} header."""
        return self.header("location")

    def links(self, rel: str) -> list[str]:
        """The URLs of C{Link} headers with relation C{rel}."""
        return [url for url, r in parse_links(self.headers.getRawHeaders("link", [])) if r == rel]

    def json(self) -> dict:
        """
        The body as a JSON object.

        @raise ACMEProtocolError: when it is not one.
        """
        try:
            value = json.loads(self.body)
        except ValueError as e:
            raise ACMEProtocolError(self.url, f"the body is not JSON ({e})") from None
        if not isinstance(value, dict):
            raise ACMEProtocolError(self.url, "the body is not a JSON object")
        return value


_TRANSPORT_FAILURES = (
    CancelledError,
    DeferredTimeout,
    ConnectTimeout,
    ConnectError,
    ConnectionClosed,
    ResponseFailed,
    ResponseNeverReceived,
    RequestTransmissionFailed,
)


def _connection_reason(failure_value) -> str:
    if isinstance(failure_value, (CancelledError, DeferredTimeout, ConnectTimeout)):
        return "timed out"
    if isinstance(failure_value, DNSLookupError):
        return "the name does not resolve"
    if isinstance(failure_value, ConnectError):
        return failure_value.__class__.__name__.replace("Error", "").lower() or "connection failed"
    if isinstance(failure_value, (ResponseFailed, ResponseNeverReceived, RequestTransmissionFailed)):
        reasons = [str(r.value) for r in failure_value.reasons]
        return "; ".join(reasons) or "the connection failed mid-answer"
    return str(failure_value) or failure_value.__class__.__name__


@attrs.define
class JWSTransport:
    """
    Sends requests to an ACME server, signed with the account key.

    @ivar key: the account key (a C{josepy} JWK).
    @ivar alg: the JWS algorithm matching C{key}.
    @ivar kid: the account URL once known; requests are then signed with C{kid}, else with C{jwk}.
    @ivar max_bad_nonce_retries: how many times a C{badNonce} answer is retried with a fresh nonce.
    @ivar timeout: seconds allowed for one request, answer body included.
    @ivar transient_delays: the waits before retrying a request that met a transient failure
        (connection lost, truncated answer, timeout, HTTP 500/502/503/504); one retry per entry.
        A C{Retry-After} longer than C{max_transient_wait} is not waited for: the error is
        raised at once, carrying it, for the caller to schedule the retry.
    """

    _http: object
    _clock: object
    key: jose.JWK
    alg: jose.JWASignature
    kid: str | None = None
    new_nonce_url: str | None = None
    timeout: float = 30.0
    max_bad_nonce_retries: int = 5
    transient_delays: tuple = TRANSIENT_DELAYS
    max_transient_wait: float = MAX_TRANSIENT_WAIT
    user_agent: str = USER_AGENT
    _nonces: list = attrs.field(factory=list)
    requests_sent: int = 0
    bad_nonces_retried: int = 0

    def _collect_nonce(self, response: Response) -> None:
        nonce = response.header("replay-nonce")
        if nonce:
            try:
                jose.b64decode(nonce)
            except (ValueError, TypeError):
                log.warn("Ignoring a malformed Replay-Nonce from {url}", url=response.url)
                return
            self._nonces.append(nonce)

    async def _request(self, method: str, url: str, body: bytes | None = None, content_type=None) -> Response:
        headers = {b"User-Agent": [self.user_agent.encode()]}
        if content_type:
            headers[b"Content-Type"] = [content_type.encode()]

        async def send():
            response = await self._http.request(method, url, data=body, headers=headers, reactor=self._clock)
            length = response.length if isinstance(response.length, int) else None
            if length is not None and length > MAX_RESPONSE_BYTES:
                raise ACMEProtocolError(url, f"the answer is too large ({length} bytes)")
            content = await response.content()
            return Response(code=response.code, headers=response.headers, body=content, url=url)

        self.requests_sent += 1
        d = Deferred.fromCoroutine(send())
        d.addTimeout(self.timeout, self._clock)
        try:
            response = await d
        except _TRANSPORT_FAILURES as e:
            raise ACMEConnectionError(url, _connection_reason(e)) from None
        self._collect_nonce(response)
        return response

    def _raise_for_error(self, response: Response) -> None:
        if response.code < 400:
            return
        retry_after = parse_retry_after(response.header("retry-after"), utc_now(self._clock))
        if response.content_type == PROBLEM_CONTENT_TYPE or response.body.lstrip().startswith(b"{"):
            try:
                body = json.loads(response.body)
            except ValueError:
                body = None
            if isinstance(body, dict) and "type" in body:
                raise ACMEProblem.from_json(body, status=response.code, url=response.url, retry_after=retry_after)
        text = response.body[:200].decode("utf-8", "replace")
        raise ACMEHTTPError(status=response.code, url=response.url, body=text, retry_after=retry_after)

    async def get(self, url: str) -> Response:
        """An unauthenticated GET (the directory, ARI); errors raised as typed exceptions."""
        return await self._with_transient_retries(url, self._get_once)

    async def _get_once(self, url: str) -> Response:
        response = await self._request("GET", url)
        self._raise_for_error(response)
        return response

    def _transient_wait(self, error: Exception, attempt: int) -> float | None:
        """How long to wait before retrying after C{error}, or None when it must not be retried now."""
        if attempt >= len(self.transient_delays):
            return None
        if isinstance(error, ACMEConnectionError):
            return self.transient_delays[attempt]
        status = getattr(error, "status", None)
        if status not in TRANSIENT_STATUSES or getattr(error, "code", "") == "rateLimited":
            return None
        delay = self.transient_delays[attempt]
        if error.retry_after is not None:
            delay = max(delay, error.retry_after.timestamp() - self._clock.seconds())
        return delay if delay <= self.max_transient_wait else None

    async def _with_transient_retries(self, url: str, once, *args, **kwargs) -> Response:
        """C{once(url, ...)}, retried after transient failures as L{transient_delays} and Retry-After allow."""
        from twisted.internet.task import deferLater

        attempt = 0
        while True:
            try:
                return await once(url, *args, **kwargs)
            except (ACMEConnectionError, ACMEHTTPError, ACMEProblem) as error:
                delay = self._transient_wait(error, attempt)
                if delay is None:
                    raise
                attempt += 1
                log.info("Transient failure from {url} ({error}); retry {attempt} in {delay:.1f} s",
                         url=url, error=str(error), attempt=attempt, delay=delay)
                await deferLater(self._clock, delay, lambda: None)

    async def _fresh_nonce(self) -> str:
        if self._nonces:
            return self._nonces.pop()
        if not self.new_nonce_url:
            raise ACMEProtocolError("directory", "the directory has no newNonce URL")
        response = await self._request("HEAD", self.new_nonce_url)
        self._raise_for_error(response)
        if not self._nonces:
            raise ACMEProtocolError(self.new_nonce_url, "the newNonce answer has no Replay-Nonce header")
        return self._nonces.pop()

    def _sign(self, url: str, payload: bytes, nonce: str, use_jwk: bool) -> bytes:
        kid = None if use_jwk else self.kid
        signed = jws.JWS.sign(payload, key=self.key, alg=self.alg, nonce=jose.b64decode(nonce), url=url, kid=kid)
        return signed.json_dumps().encode()

    async def post(self, url: str, payload=None, *, use_jwk: bool = False) -> Response:
        """
        A signed POST: C{payload} is a josepy object or a dict, or C{None} for POST-as-GET.

        C{badNonce} answers are retried up to L{max_bad_nonce_retries} times, each with the nonce
        that came with the error.

        @raise ACMEProblem: for a problem document (a L{BadNonce} once retries ran out).
        """
        if payload is None:
            data = b""
        elif isinstance(payload, dict):
            data = json.dumps(payload).encode()
        else:
            data = payload.json_dumps().encode()
        if not use_jwk and self.kid is None:
            raise ACMEProtocolError(url, "no account URL is known yet to sign this request with")
        return await self._with_transient_retries(url, self._post_once, data, use_jwk)

    async def _post_once(self, url: str, data: bytes, use_jwk: bool) -> Response:
        attempt = 0
        while True:
            nonce = await self._fresh_nonce()
            response = await self._request("POST", url, self._sign(url, data, nonce, use_jwk), JOSE_CONTENT_TYPE)
            try:
                self._raise_for_error(response)
            except BadNonce:
                attempt += 1
                if attempt > self.max_bad_nonce_retries:
                    raise
                self.bad_nonces_retried += 1
                log.debug("badNonce from {url}, retry {attempt}", url=url, attempt=attempt)
                continue
            return response
