"""
Telling the daemon that an account has a deferred order to finish: one line of JSON over its
unix socket. The daemon takes the account from the socket's peer credentials, never from the
message; it also polls on a timer, so a daemon that is down loses nothing.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

log = Logger()


class _OneLine(Protocol):
    def __init__(self, line: bytes, done: Deferred):
        self.line, self.done = line, done

    def connectionMade(self):
        self.transport.write(self.line)
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(True)


async def notify_pending(reactor, socket_path: str, vhost: str, timeout: float = 5.0) -> bool:
    """Send C{{"pending": vhost}}; C{True} if the daemon took it, C{False} (logged) if it could not be reached."""
    from twisted.internet.endpoints import UNIXClientEndpoint

    done = Deferred()
    line = json.dumps({"pending": vhost}).encode() + b"\n"
    try:
        await UNIXClientEndpoint(reactor, socket_path, timeout=timeout).connect(
            Factory.forProtocol(lambda: _OneLine(line, done)))
        done.addTimeout(timeout, reactor)
        return await done
    except Exception as e:  # the daemon being down must never fail the job: it polls anyway
        log.info("The lecp daemon could not be told about {vhost} ({error}); it will find it on its next pass",
                 vhost=vhost, error=str(e) or type(e).__name__)
        return False
