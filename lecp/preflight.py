# -*- test-case-name: tests.integration.test_issuance -*-
"""
HTTP-01 pre-flight: before ordering, lecp writes a probe file into each name's document root and
fetches C{http://NAME/.well-known/acme-challenge/PROBE} as the CA would (following up to 10
redirects, to HTTPS too, ignoring certificate errors there). Names that fail are reported with
the reason and not ordered, so they do not spend Let's Encrypt's failed-validation limit.
"""

from __future__ import annotations

import secrets
from urllib.parse import urljoin, urlsplit

import attrs
from twisted.internet import ssl
from twisted.internet.defer import CancelledError, Deferred, TimeoutError as DeferredTimeout, gatherResults
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError as ConnectTimeout
from twisted.logger import Logger
from treq.client import HTTPClient
from twisted.web.client import Agent, ResponseFailed, ResponseNeverReceived
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from lecp.acme.webroot import remove_challenge_file, write_challenge_file

MAX_REDIRECTS = 10
log = Logger()


@attrs.frozen
class PreflightResult:
    """What the pre-flight found for one name: C{ok}, or the reason and what to do."""

    name: str
    ok: bool
    reason: str = ""
    advice: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "reason": self.reason, "advice": self.advice}


@implementer(IStreamClientEndpoint)
@attrs.define
class _ResolvedBy:
    """Connects to the IPv4 address a given DNS server answers for C{host}."""

    reactor: object
    resolver: object
    host: str
    port: int
    timeout: float

    def connect(self, factory):
        from twisted.names import dns, error

        async def connect():
            try:
                answers, _, _ = await self.resolver.lookupAddress(self.host, timeout=(self.timeout,))
                address = next(a.payload.dottedQuad() for a in answers if a.type == dns.A)
            except (error.DomainError, error.DNSServerError, error.DNSQueryRefusedError, error.DNSNameError,
                    StopIteration, DeferredTimeout, CancelledError):
                raise DNSLookupError(self.host) from None
            return await TCP4ClientEndpoint(self.reactor, address, self.port, timeout=self.timeout).connect(factory)

        return Deferred.fromCoroutine(connect())


@implementer(IAgentEndpointFactory)
@attrs.define
class _Endpoints:
    """
    Connects by the system's DNS; or, with C{resolve_to}, to that address for every name, or
    (C{dns:HOST:PORT}) by that DNS server (the mock DNS an ACME test server uses).
    """

    reactor: object
    timeout: float
    resolve_to: str = ""
    _resolver: object = None

    def _dns(self):
        if self._resolver is None:
            from twisted.names import client  # only when asked: twisted.names is slow to import

            host, _, port = self.resolve_to[len("dns:"):].rpartition(":")
            self._resolver = client.Resolver(servers=[(host, int(port))], reactor=self.reactor, resolv=None)
        return self._resolver

    def endpointForURI(self, uri):
        host = uri.host.decode("ascii") if isinstance(uri.host, bytes) else uri.host
        if self.resolve_to.startswith("dns:"):
            endpoint = _ResolvedBy(self.reactor, self._dns(), host, uri.port, self.timeout)
        elif self.resolve_to:
            endpoint = TCP4ClientEndpoint(self.reactor, self.resolve_to, uri.port, timeout=self.timeout)
        else:
            endpoint = HostnameEndpoint(self.reactor, host, uri.port, timeout=self.timeout)
        if uri.scheme == b"https":
            # The CA ignores certificate errors on redirects to HTTPS; so does the pre-flight.
            endpoint = wrapClientTLS(ssl.CertificateOptions(verify=False), endpoint)
        return endpoint


class _Failed(Exception):
    def __init__(self, reason: str, advice: str):
        super().__init__(reason)
        self.reason, self.advice = reason, advice


_DNS_ADVICE = "point the domain's A record (and AAAA, if any) at this server, then try again"
_PORT_ADVICE = "check that the domain's DNS points to this server and that port 80 is open to the internet"
_BLOCKED_ADVICE = ("check that the domain points to this server and that no .htaccess rule, CDN or firewall "
                   "blocks or rewrites /.well-known/acme-challenge/")


async def _fetch(http, reactor, url: str, timeout: float) -> tuple[int, bytes, str | None]:
    async def get():
        response = await http.get(url, allow_redirects=False, reactor=reactor)
        return response, await response.content()

    d = Deferred.fromCoroutine(get())
    d.addTimeout(timeout, reactor)
    response, body = await d
    location = response.headers.getRawHeaders(b"location", [None])[-1]
    return response.code, body[:4096], location.decode("latin-1") if location else None


async def _check_name(http, reactor, name: str, port: int, token: str, expected: str, timeout: float) -> PreflightResult:
    url = f"http://{name}{'' if port == 80 else f':{port}'}/.well-known/acme-challenge/{token}"
    seen = []
    try:
        for _ in range(MAX_REDIRECTS + 1):
            if url in seen:
                raise _Failed("redirect loop", _BLOCKED_ADVICE)
            seen.append(url)
            try:
                code, body, location = await _fetch(http, reactor, url, timeout)
            except DNSLookupError:
                raise _Failed("the name does not resolve in DNS", _DNS_ADVICE) from None
            except _TRANSPORT_FAILURES as e:
                raise _Failed(_transport_reason(e, url), _PORT_ADVICE) from None
            if code in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                if urlsplit(url).scheme not in ("http", "https"):
                    raise _Failed(f"redirected to {url}, which the CA cannot follow", _BLOCKED_ADVICE)
                continue
            if code != 200:
                raise _Failed(f"the web server answered HTTP {code} for the test file", _BLOCKED_ADVICE)
            if body.strip() != expected.encode("ascii"):
                raise _Failed("another server answered: the test file's content did not match",
                              "the domain's DNS points to another server; point it here, then try again")
            return PreflightResult(name, True)
        raise _Failed(f"more than {MAX_REDIRECTS} redirects", _BLOCKED_ADVICE)
    except _Failed as failed:
        return PreflightResult(name, False, failed.reason, failed.advice)


_TRANSPORT_FAILURES = (ConnectError, ConnectTimeout, ResponseFailed, ResponseNeverReceived, CancelledError,
                       DeferredTimeout, OSError)


def _transport_reason(error: Exception, url: str) -> str:
    host = urlsplit(url).netloc
    if isinstance(error, (ConnectTimeout, CancelledError, DeferredTimeout)):
        return f"no answer from {host} (timed out)"
    if isinstance(error, ConnectError):
        kind = type(error).__name__.replace("Error", "").lower()
        return f"could not connect to {host} ({'connection refused' if 'refused' in kind else kind})"
    if isinstance(error, (ResponseFailed, ResponseNeverReceived)):
        return f"the connection to {host} failed ({'; '.join(str(r.value) for r in error.reasons)})"
    return f"fetching {url} failed ({error})"


async def preflight(reactor, docroots: dict[str, str], port: int = 80, timeout: float = 10.0,
                    resolve_to: str = "") -> list[PreflightResult]:
    """
    Check every name of C{docroots} (name → its document root) concurrently; the probe files are
    removed afterwards whatever happens.

    @param resolve_to: C{""} for the system's DNS, an IPv4 address to send every name to, or
        C{dns:HOST:PORT} for a DNS server of its own.
    """
    token = "lecp-preflight-" + secrets.token_urlsafe(18)
    expected = secrets.token_urlsafe(24)
    written, unwritable = [], {}
    try:
        for root in sorted(set(docroots.values())):
            try:
                write_challenge_file(root, token, expected)
                written.append(root)
            except OSError as e:
                unwritable[root] = PreflightResult(
                    "", False, f"the test file could not be written into {root} ({e.strerror or e})",
                    "check that the document root exists and that its .well-known is a real folder, not a link")
        http = HTTPClient(Agent.usingEndpointFactory(reactor, _Endpoints(reactor, timeout, resolve_to)))
        checks = {n: Deferred.fromCoroutine(_check_name(http, reactor, n, port, token, expected, timeout))
                  for n, root in docroots.items() if root not in unwritable}
        checked = dict(zip(checks, await gatherResults(list(checks.values()))))
        return [checked[n] if n in checked else attrs.evolve(unwritable[root], name=n) for n, root in docroots.items()]
    finally:
        for root in written:
            remove_challenge_file(root, token)
