"""
A TLS reverse proxy in front of Pebble for tests, able to misbehave on purpose: hold orders in
C{processing} (the CA has not issued yet), and inject faults. It presents Pebble's own TLS
certificate and forwards the C{Host} header unchanged, so Pebble builds every URL (and checks
every JWS C{url}) with the proxy's address.
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


@attrs.define
class ProxyControls:
    """What the proxy does to answers; change these while a test runs."""

    hold_orders: bool = False
    requests: list = attrs.field(factory=list)


class _Forward(Resource):
    isLeaf = True

    def __init__(self, reactor, upstream: str, http: HTTPClient, controls: ProxyControls):
        super().__init__()
        self.reactor, self.upstream, self.http, self.controls = reactor, upstream, http, controls

    def render(self, request):
        Deferred.fromCoroutine(self._forward(request)).addErrback(
            lambda f: (log.failure("proxy failed", f), request.setResponseCode(502), request.finish()))
        return server.NOT_DONE_YET

    async def _forward(self, request):
        body = request.content.read()
        path = request.uri.decode("latin-1")
        self.controls.requests.append((request.method.decode(), path))
        headers = {name: values for name, values in request.requestHeaders.getAllRawHeaders()
                   if name.lower() not in _HOP_BY_HOP - {b"host"}}
        response = await self.http.request(request.method.decode(), self.upstream + path, data=body or None,
                                           headers=headers, allow_redirects=False, reactor=self.reactor)
        content = await response.content()
        content = self._rewrite(content)
        request.setResponseCode(response.code)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in _HOP_BY_HOP:
                for value in values:
                    request.responseHeaders.addRawHeader(name, value)
        request.write(content)
        request.finish()

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
