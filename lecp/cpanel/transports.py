# -*- test-case-name: tests.integration.test_cpanel_emulator -*-
"""
The three ways lecp reaches cPanel: the LiveAPI unix socket (the page, as the user), the C{uapi}
command (the daemon's worker as the user, or root with C{--user}), and C{whmapi1} (root).
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import attrs
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from lecp.cpanel.envelope import RESULT_END, CPanelError, liveapi_frame, liveapi_json, parse_json
from lecp.interfaces import IUAPITransport, IWHMTransport

UAPI_PATH = "/usr/local/cpanel/bin/uapi"
WHMAPI1_PATH = "/usr/local/cpanel/bin/whmapi1"
MAX_REPLY_BYTES = 20 * 1024 * 1024
COMMAND_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

log = Logger()


def command_arguments(arguments: dict) -> list[str]:
    """C{key=value} words, both sides percent-encoded as cPanel's own client does; lists repeat the key."""
    words = []
    for key, value in arguments.items():
        for one in value if isinstance(value, (list, tuple)) else [value]:
            words.append(f"{quote(str(key), safe='')}={quote(str(one), safe='')}")
    return words


async def _run_command(reactor, executable: str, args: list[str], api: str, function: str, module=None, timeout=120.0):
    from twisted.internet.utils import getProcessOutputAndValue

    env = dict(COMMAND_ENV)
    if os.environ.get("HOME"):
        env["HOME"] = os.environ["HOME"]
    d = getProcessOutputAndValue(executable, args, env=env, reactor=reactor)
    d.addTimeout(timeout, reactor)
    try:
        out, err, code = await d
    except OSError as e:
        raise CPanelError(api, function, (f"cannot run {executable}: {e}",), module) from None
    if code != 0:
        text = (err or out).decode("utf-8", "replace").strip().splitlines()
        raise CPanelError(api, function, (f"{os.path.basename(executable)} exited with status {code}: {text[0] if text else 'no output'}",), module)
    return parse_json(out, api, function, module)


@implementer(IUAPITransport)
@attrs.define
class UAPICommand:
    """
    UAPI through the C{uapi --output=json} command.

    @ivar user: passed as C{--user}; required when running as root.
    """

    reactor: object
    user: str | None = None
    executable: str = UAPI_PATH
    timeout: float = 120.0

    def call(self, module, function, arguments):
        args = ["--output=json"]
        if self.user:
            args.append(f"--user={self.user}")
        args += [module, function] + command_arguments(arguments)
        return Deferred.fromCoroutine(
            _run_command(self.reactor, self.executable, args, "UAPI", function, module, self.timeout)
        )


@implementer(IWHMTransport)
@attrs.define
class WHMAPICommand:
    """WHM API 1 through the C{whmapi1 --output=json} command (root only)."""

    reactor: object
    executable: str = WHMAPI1_PATH
    timeout: float = 120.0

    def call(self, function, arguments):
        args = ["--output=json", function] + command_arguments(arguments)
        return Deferred.fromCoroutine(
            _run_command(self.reactor, self.executable, args, "WHM API 1", function, None, self.timeout)
        )


class _LiveAPIProtocol(Protocol):
    """Collects one C{</cpanelresult>}-terminated reply at a time."""

    def __init__(self):
        self.buffer = b""
        self.waiting: Deferred | None = None
        self.lost = None

    def dataReceived(self, data):
        self.buffer += data
        if self.waiting is not None and RESULT_END in self.buffer:
            end = self.buffer.index(RESULT_END) + len(RESULT_END)
            reply, self.buffer = self.buffer[:end], self.buffer[end:]
            waiting, self.waiting = self.waiting, None
            waiting.callback(reply)
        elif len(self.buffer) > MAX_REPLY_BYTES:
            self.transport.abortConnection()

    def connectionLost(self, reason):
        self.lost = reason
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            waiting.errback(CPanelError("LiveAPI", "reply", ("cPanel closed the LiveAPI socket before answering",)))

    def exchange(self, payload: str) -> Deferred:
        if self.lost is not None:
            raise CPanelError("LiveAPI", "call", ("the LiveAPI socket is closed",))
        self.waiting = Deferred()
        self.transport.write(liveapi_frame(payload))
        return self.waiting


@implementer(IUAPITransport)
@attrs.define
class LiveAPI:
    """
    UAPI over cPanel's LiveAPI socket (C{$CPANEL_CONNECT_SOCKET}, given to C{.live.cgi} pages).

    One connection, opened on first use; calls go one at a time; L{close} says goodbye.
    """

    reactor: object
    socket_path: str
    timeout: float = 60.0
    _protocol: _LiveAPIProtocol | None = None
    _lock: DeferredLock = attrs.field(factory=DeferredLock)

    @classmethod
    def from_environment(cls, reactor, environ=os.environ) -> "LiveAPI":
        """The socket cpsrvd gave this CGI process."""
        path = environ.get("CPANEL_CONNECT_SOCKET")
        if not path:
            raise CPanelError("LiveAPI", "connect", ("CPANEL_CONNECT_SOCKET is not set: the page must be a .live.cgi run by cPanel",))
        return cls(reactor, path)

    async def _connect(self) -> _LiveAPIProtocol:
        from twisted.internet.endpoints import UNIXClientEndpoint

        if self._protocol is None:
            endpoint = UNIXClientEndpoint(self.reactor, self.socket_path, timeout=self.timeout)
            try:
                protocol = await endpoint.connect(Factory.forProtocol(_LiveAPIProtocol))
            except Exception as e:
                raise CPanelError("LiveAPI", "connect", (f"cannot connect to {self.socket_path}: {e}",)) from None
            self._protocol = protocol
            await self._exchange('<cpaneljson enable="1">')
        return self._protocol

    async def _exchange(self, payload: str) -> bytes:
        d = self._protocol.exchange(payload)
        d.addTimeout(self.timeout, self.reactor)
        return await d

    async def _call(self, module, function, arguments) -> dict:
        await self._lock.acquire()
        try:
            await self._connect()
            request = {"module": module, "reqtype": "exec", "func": function, "apiversion": "uapi",
                       "args": {k: (list(v) if isinstance(v, (list, tuple)) else str(v)) for k, v in arguments.items()}}
            reply = await self._exchange(f"<cpanelaction>\n{json.dumps(request)}\n</cpanelaction>")
        finally:
            self._lock.release()
        try:
            return liveapi_json(reply)
        except CPanelError as e:
            raise CPanelError("LiveAPI", function, e.messages, module) from None

    def call(self, module, function, arguments):
        return Deferred.fromCoroutine(self._call(module, function, arguments))

    def close(self) -> None:
        """Send the shutdown message and close the socket (harmless when never connected)."""
        if self._protocol is not None and self._protocol.lost is None:
            self._protocol.transport.write(liveapi_frame('<cpanelxml shutdown="1" />'))
            self._protocol.transport.loseConnection()
        self._protocol = None
