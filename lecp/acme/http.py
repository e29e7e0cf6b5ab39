"""The real HTTP client for ACME: treq over a pooled Agent that trusts a given CA bundle or the system's."""

from __future__ import annotations

from treq.client import HTTPClient
from twisted.internet import ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

from lecp.keys import split_pem_chain


def trust_root(ca_bundle: str | None):
    """A Twisted trust root: the certificates of the PEM file C{ca_bundle}, or the platform's."""
    if not ca_bundle:
        return ssl.platformTrust()
    with open(ca_bundle, "rb") as f:
        pems = split_pem_chain(f.read())
    if not pems:
        raise ValueError(f"{ca_bundle} holds no PEM certificate; give a PEM CA bundle")
    return ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(p.encode("ascii")) for p in pems])


def make_http_pool(reactor, max_per_host: int = 8) -> HTTPConnectionPool:
    """A pool of persistent connections; close it with C{closeCachedConnections()} when done."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = max_per_host
    pool.retryAutomatically = False
    return pool


def make_http_client(reactor, ca_bundle: str | None = None, pool: HTTPConnectionPool | None = None) -> HTTPClient:
    """A treq HTTPClient with persistent connections, verifying TLS against C{ca_bundle}."""
    pool = pool or make_http_pool(reactor)
    policy = BrowserLikePolicyForHTTPS(trustRoot=trust_root(ca_bundle))
    return HTTPClient(Agent(reactor, contextFactory=policy, pool=pool))
