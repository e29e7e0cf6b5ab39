# -*- test-case-name: tests.test_tap -*-
"""
C{twistd lecp}: the root daemon. A MultiService with four named children: C{renewal} (renews
everything), C{orders} (finishes deferred orders), C{hostcert} (the server hostname's
certificate), C{health} (HTTP on 127.0.0.1 for chkservd, /health and /metrics).

    twistd -n lecp --config /etc/lecp/lecp.toml

A wrong configuration stops the start with a message naming the key. SIGHUP reloads it.
"""

from __future__ import annotations

import os
import signal

import attrs
from twisted.application import service, strports
from twisted.logger import Logger
from twisted.python import usage

from lecp.config import DEFAULT_PATH, Config, ConfigError, load

log = Logger()


class Options(usage.Options):
    """Command-line options of C{twistd lecp}."""

    optParameters = [
        ["config", "c", DEFAULT_PATH, "The configuration file (TOML)."],
    ]

    def postOptions(self):
        try:
            self["loaded"] = load(self["config"] if self["config"] != DEFAULT_PATH or os.path.exists(DEFAULT_PATH) else None)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


@attrs.define
class Settings:
    """The configuration in force; SIGHUP replaces it."""

    config: Config
    path: str | None = None

    def reload(self) -> None:
        try:
            self.config = load(self.path)
        except ConfigError as e:
            log.error("Configuration not reloaded, the old one stays in force: {error}", error=str(e))
            return
        log.info("Configuration reloaded from {path}", path=self.config.source)


class _ReloadOnHangup(service.Service):
    def __init__(self, settings: Settings, reactor):
        self.settings, self.reactor = settings, reactor

    def startService(self):
        super().startService()
        try:
            signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.settings.reload))
        except ValueError:  # not the main thread (tests)
            pass


def makeService(options, reactor=None):
    """The daemon's services, wired together."""
    if reactor is None:
        from twisted.internet import reactor
    from twisted.web.server import Site

    from lecp.acme.http import make_http_client
    from lecp.cpanel import WHM, WHMAPICommand
    from lecp.daemon.health import HealthResource
    from lecp.daemon.hostcert import HostCertService
    from lecp.daemon.mail import Mailer
    from lecp.daemon.orders import OrdersService
    from lecp.daemon.outcomes import Recorder
    from lecp.daemon.renewal import RenewalService
    from lecp.daemon.state import State
    from lecp.daemon.workers import WorkerRunner

    config = options["loaded"]
    path = None if config.source == "(defaults)" else config.source
    settings = Settings(config, path)
    state = State(os.path.join(config.state_dir, "lecp.sqlite3"))
    whm = WHM(WHMAPICommand(reactor, executable=config.whmapi1))
    mailer = Mailer(reactor, settings)
    recorder = Recorder(reactor, settings, state, mailer)
    runner = WorkerRunner(reactor, path or "", config.concurrency, config.worker_timeout, config.worker_python)

    parent = service.MultiService()
    _ReloadOnHangup(settings, reactor).setServiceParent(parent)
    from lecp.daemon.scanproc import SubprocessScanner

    http = make_http_client(reactor, config.ca_bundle or None)
    renewal = RenewalService(reactor, settings, state=state, whm=whm, runner=runner, recorder=recorder,
                             scanner=SubprocessScanner(reactor, path or ""), http=http)
    orders = OrdersService(reactor, settings, state=state, runner=runner, recorder=recorder, reactor=reactor)
    hostcert = HostCertService(reactor, settings, whm=whm, mailer=mailer, http=http)
    timed = {"renewal": renewal, "orders": orders, "hostcert": hostcert}
    for name, child in timed.items():
        child.setName(name)
        child.setServiceParent(parent)
    site = Site(HealthResource(timed, reactor, reactor.seconds(), recorder))
    site.log = lambda request: None
    health = strports.service(f"tcp:{config.health_port}:interface=127.0.0.1", site, reactor=reactor)
    health.setName("health")
    health.setServiceParent(parent)
    return parent
