"""
The emulated server's Apache: serves each domain's document root by C{Host} header, as cPanel's
virtual hosts do, so that an ACME server's HTTP-01 check of C{www.alice.test} reads the file
lecp wrote into that vhost's document root. The hostname is served from C{DIR/var/www/html}.
"""

from __future__ import annotations

import os

from twisted.web import resource, server as web_server
from twisted.web.pages import notFound
from twisted.web.static import File

from lecp.testing.cpanel.server import Server, vhost_for


class VirtualHosts(resource.Resource):
    """Picks the document root by the Host header; unknown hosts get 404."""

    isLeaf = False

    def __init__(self, server: Server):
        super().__init__()
        self.server = server

    def _root_for(self, host: str) -> str | None:
        host = host.split(":")[0].strip().lower().rstrip(".")
        if not host:
            return None
        if host == self.server.settings.get("hostname"):
            return self.server.path("var", "www", "html")
        for user in self.server.users():
            vhost = vhost_for(self.server.account(user), host)
            if vhost is not None:
                return vhost["documentroot"]
        return None

    def getChildWithDefault(self, name, request):
        root = self._root_for((request.getHeader("host") or ""))
        if root is None or not os.path.isdir(root):
            return notFound("No such site", "This server has no site for that host name.")
        site = File(root)
        site.directoryListing = lambda: notFound("Not found", "No directory listings.")
        return site.getChildWithDefault(name, request)


class _QuietSite(web_server.Site):
    def log(self, request):
        pass


def web_site(server: Server) -> web_server.Site:
    return _QuietSite(VirtualHosts(server))


def listen_web(reactor, port: int, server: Server, interface: str = "127.0.0.1"):
    """Serve every vhost of C{server} on C{interface:port}."""
    os.makedirs(server.path("var", "www", "html"), exist_ok=True)
    return reactor.listenTCP(port, web_site(server), interface=interface)
