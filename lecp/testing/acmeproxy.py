"""
A TLS reverse proxy in front of Pebble for tests, able to misbehave on purpose: hold orders in
C{processing} (the CA has not issued yet), and inject L{Fault}s into chosen requests: drop or
reset the connection (before or after Pebble saw the request), delay the answer, answer
500/503 with C{Retry-After}, answer C{rateLimited}, truncate the body. It presents Pebble's own
TLS certificate and forwards the C{Host} header unchanged, so Pebble builds every URL (and
checks every JWS C{url}) with the proxy's address.
"""

from __future__ import annotations

import json

import attrs
from treq.client import HTTPClient
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web import server
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.resource import Resource

from lecp.acme.http import trust_root

log = Logger()
_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"host"}


FAULT_KINDS = ("drop", "reset", "lose_answer", "delay", "status", "rate_limited", "truncate")


@attrs.define
class Fault:
    """
    Misbehave on the next C{count} requests whose path contains C{path} (and whose method is
    C{method}, when given):

      - C{drop}: close the connection without an answer (the CA never saw the request);
      - C{reset}: abort the connection (TCP RST), the CA never saw the request;
      - C{lose_answer}: forward to the CA, then close the connection without its answer;
      - C{delay}: forward after C{seconds};
      - C{status}: answer C{status} (500, 503...) with C{retry_after} seconds, if given;
      - C{rate_limited}: answer 429 C{rateLimited} with C{retry_after} seconds;
      - C{truncate}: forward, but cut the answer's body in half and close.
    """

    kind: str
    path: str = ""
    method: str = ""
    count: int = 1
    status: int = 503
    retry_after: int | None = None
    seconds: float = 0.0
    injected: int = 0

    def __attrs_post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {', '.join(FAULT_KINDS)}")

    def matches(self, method: str, path: str) -> bool:
        return self.injected < self.count and self.path in path and (not self.method or self.method == method)


@attrs.define
class ProxyControls:
    """What the proxy does to answers; change these while a test runs."""

    hold_orders: bool = False
    requests: list = attrs.field(factory=list)  # (method, path, clock time) of every request
    answers: list = attrs.field(factory=list)  # (method, path, status, clock time) of every answer forwarded
    faults: list = attrs.field(factory=list)
    waiting: set = attrs.field(factory=set)  # delays in progress, cancelled when the proxy stops

    def inject(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def count(self, path: str, method: str = "POST") -> int:
        """How many requests for C{path} the proxy received."""
        return sum(1 for m, p, _ in self.requests if path in p and m == method)


class _Forward(Resource):
    isLeaf = True

    def __init__(self, reactor, upstream: str, http: HTTPClient, controls: ProxyControls):
        super().__init__()
        self.reactor, self.upstream, self.http, self.controls = reactor, upstream, http, controls

    def render(self, request):
        Deferred.fromCoroutine(self._forward(request)).addErrback(self._failed, request)
        return server.NOT_DONE_YET

    @staticmethod
    def _failed(failure, request):
        from twisted.internet.defer import CancelledError

        if failure.check(CancelledError) or request.finished or request.channel is None:
            return
        log.failure("proxy failed", failure)
        request.setResponseCode(502)
        request.finish()

    async def _forward(self, request):
        body = request.content.read()
        path = request.uri.decode("latin-1")
        method = request.method.decode()
        self.controls.requests.append((method, path, self.reactor.seconds()))
        fault = next((f for f in self.controls.faults if f.matches(method, path)), None)
        if fault is not None:
            fault.injected += 1
            log.info("Injecting {kind} into {method} {path}", kind=fault.kind, method=method, path=path)
            if await self._inject_before(request, fault):
                return
        headers = {name: values for name, values in request.requestHeaders.getAllRawHeaders()
                   if name.lower() not in _HOP_BY_HOP - {b"host"}}
        response = await self.http.request(method, self.upstream + path, data=body or None,
                                           headers=headers, allow_redirects=False, reactor=self.reactor)
        content = await response.content()
        content = self._rewrite(content)
        self.controls.answers.append((method, path, response.code, self.reactor.seconds()))
        if fault is not None and fault.kind == "lose_answer":
            request.transport.abortConnection()
            return
        request.setResponseCode(response.code)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in _HOP_BY_HOP:
                for value in values:
                    request.responseHeaders.addRawHeader(name, value)
        if fault is not None and fault.kind == "truncate":
            request.setHeader(b"Content-Length", str(len(content)).encode())
            request.write(content[: len(content) // 2])
            _close_without_tls_goodbye(request)
            return
        request.write(content)
        request.finish()

    async def _inject_before(self, request, fault: Fault) -> bool:
        """Carry out the part of C{fault} that comes before forwarding; True when the request is done with."""
        from twisted.internet.task import deferLater

        if fault.kind == "drop":
            _close_without_tls_goodbye(request)
        elif fault.kind == "reset":
            request.transport.abortConnection()
        elif fault.kind == "delay":
            waiting = deferLater(self.reactor, fault.seconds, lambda: None)
            self.controls.waiting.add(waiting)
            try:
                await waiting
            finally:
                self.controls.waiting.discard(waiting)
            return False
        elif fault.kind in ("status", "rate_limited"):
            status = 429 if fault.kind == "rate_limited" else fault.status
            kind = "rateLimited" if fault.kind == "rate_limited" else "serverInternal"
            request.setResponseCode(status)
            if fault.retry_after is not None:
                request.setHeader(b"Retry-After", str(fault.retry_after).encode())
            request.setHeader(b"Content-Type", b"application/problem+json")
            request.write(json.dumps({"type": f"urn:ietf:params:acme:error:{kind}",
                                      "detail": f"injected by the test proxy ({status})"}).encode())
            request.finish()
        else:
            return False
        return True

    def _rewrite(self, content: bytes) -> bytes:
        if not self.controls.hold_orders or b'"finalize"' not in content:
            return content
        try:
            order = json.loads(content)
        except ValueError:
            return content
        if order.get("status") == "valid":
            order["status"] = "processing"
            order.pop("certificate", None)
            return json.dumps(order).encode()
        return content


def _close_without_tls_goodbye(request) -> None:
    """Close the TCP connection under the TLS layer (a FIN, no close_notify), as a dying peer would."""
    transport = request.channel.transport
    getattr(transport, "transport", transport).loseConnection()


@attrs.define
class ACMEProxy:
    """Listens on C{127.0.0.1:port} with TLS and forwards to Pebble; stop with L{stop}."""

    port: object
    pool: HTTPConnectionPool
    controls: ProxyControls

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port.getHost().port}/dir"

    def stop(self) -> Deferred:
        from twisted.internet.defer import gatherResults

        for waiting in list(self.controls.waiting):
            waiting.cancel()
        return gatherResults([self.port.stopListening(), self.pool.closeCachedConnections()])


def start_proxy(reactor, pebble, controls: ProxyControls | None = None) -> ACMEProxy:
    """A proxy in front of a running L{lecp.testing.pebble.Pebble}."""
    controls = controls or ProxyControls()
    with open(pebble.ca_bundle) as f:
        certificate = f.read()
    with open(pebble.ca_bundle.replace("-tls.pem", "-tls.key")) as f:
        key = f.read()
    server_options = ssl.PrivateCertificate.loadPEM(key + certificate).options()
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trust_root(pebble.ca_bundle)), pool=pool))
    site = server.Site(_Forward(reactor, f"https://127.0.0.1:{pebble.listen_port}", http, controls))
    site.log = lambda request: None
    port = reactor.listenSSL(0, site, server_options, interface="127.0.0.1")
    return ACMEProxy(port, pool, controls)
