"""
The emulated cpsrvd's LiveAPI socket for one user: C{<length>\\n<payload>} frames in,
C{<cpanelresult>JSON</cpanelresult>} replies out, UAPI calls run as that user only.
"""

from __future__ import annotations

import json
import os

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from lecp.testing.cpanel import uapi
from lecp.testing.cpanel.server import Server

MAX_FRAME = 64 * 1024 * 1024
log = Logger()


class LiveAPIServerProtocol(Protocol):
    """One LiveAPI connection, bound to the factory's user."""

    def __init__(self, server: Server, user: str):
        self.server, self.user = server, user
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        while True:
            newline = self.buffer.find(b"\n")
            if newline < 0:
                if len(self.buffer) > 32:
                    self._fail("the frame does not start with a length")
                return
            try:
                length = int(self.buffer[:newline])
            except ValueError:
                return self._fail("the frame does not start with a length")
            if length < 0 or length > MAX_FRAME:
                return self._fail("the frame is too large")
            if len(self.buffer) < newline + 1 + length:
                return
            payload = self.buffer[newline + 1:newline + 1 + length].decode("utf-8", "replace")
            self.buffer = self.buffer[newline + 1 + length:]
            self._handle(payload.strip())

    def _fail(self, why: str):
        log.warn("LiveAPI protocol error for {user}: {why}", user=self.user, why=why)
        self.transport.loseConnection()

    def _reply(self, value: dict):
        self.transport.write(b"<cpanelresult>" + json.dumps(value).encode() + b"</cpanelresult>")

    def _handle(self, payload: str):
        if payload.startswith("<cpaneljson"):
            return self._reply({"data": {"result": "json"}})
        if payload.startswith("<cpanelxml") and "shutdown" in payload:
            return self.transport.loseConnection()
        if payload.startswith("<cpanelaction>") and payload.endswith("</cpanelaction>"):
            try:
                request = json.loads(payload[len("<cpanelaction>"):-len("</cpanelaction>")])
            except ValueError:
                return self._reply({"error": "The request is not valid JSON."})
            if str(request.get("apiversion")) not in ("uapi", "3"):
                return self._reply({"error": "Only UAPI is available in this emulator."})
            args = request.get("args") or {}
            if not isinstance(args, dict):
                return self._reply({"error": "args must be an object."})
            answer = uapi.call(self.server, self.user, str(request.get("module")), str(request.get("func")), args)
            return self._reply(answer)
        self._reply({"error": "Unknown LiveAPI command."})


def listen_liveapi(reactor, path: str, server: Server, user: str, uid=None, gid=None):
    """Listen on the unix socket C{path} for C{user} (mode 0600, owned by the user when given)."""
    factory = Factory.forProtocol(lambda: LiveAPIServerProtocol(server, user))
    port = reactor.listenUNIX(path, factory, mode=0o600)
    if uid is not None and os.geteuid() == 0:
        os.chown(path, uid, gid if gid is not None else uid)
    return port
