"""A static web server for a webroot, standing in for Apache during HTTP-01 validation in tests."""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File


class _QuietSite(Site):
    def log(self, request):
        """Access logs are noise in tests."""


def webroot_site(root: str) -> Site:
    """A Site serving the files under C{root}, without directory listings."""
    resource = File(root)
    resource.directoryListing = lambda: Resource()  # no listings: 404 like a locked-down Apache
    return _QuietSite(resource)


def listen_webroot(reactor, port: int, root: str, interface: str = "127.0.0.1"):
    """Serve C{root} on C{interface:port}; returns the listening port."""
    return reactor.listenTCP(port, webroot_site(root), interface=interface)
