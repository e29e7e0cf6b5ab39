# -*- test-case-name: tests.integration.test_cpanel_emulator -*-
"""
LiveAPI with a plain blocking socket, for the page's read-only views: a page view is a fresh CGI
process, and importing Twisted costs more than the whole view may. The framing and parsing are
L{lecp.cpanel.envelope}'s, and the operations are L{lecp.cpanel.adapter}'s: their coroutines run
here without an event loop (L{run_now}), because this transport's calls complete at once.
"""

from __future__ import annotations

import json
import os
import socket

from lecp.cpanel.envelope import RESULT_END, CPanelError, liveapi_frame, liveapi_json

MAX_REPLY_BYTES = 20 * 1024 * 1024


class _Done:
    """An awaitable that is already complete."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        return self.value
        yield  # never reached: the yield makes __await__ a generator


def run_now(coroutine):
    """Run a coroutine that never waits (every await is on a L{_Done}); return its result."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise RuntimeError("the coroutine waited on something that is not complete; use the Twisted transport")


class BlockingLiveAPI:
    """UAPI over C{$CPANEL_CONNECT_SOCKET} with a blocking socket; one connection, closed by L{close}."""

    def __init__(self, socket_path: str, timeout: float = 60.0):
        self.socket_path, self.timeout = socket_path, timeout
        self._socket = None

    @classmethod
    def from_environment(cls, environ=os.environ) -> "BlockingLiveAPI":
        path = environ.get("CPANEL_CONNECT_SOCKET")
        if not path:
            raise CPanelError("LiveAPI", "connect", ("CPANEL_CONNECT_SOCKET is not set: the page must be a .live.cgi run by cPanel",))
        return cls(path)

    def _exchange(self, payload: str) -> bytes:
        self._socket.sendall(liveapi_frame(payload))
        reply = b""
        while RESULT_END not in reply:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise CPanelError("LiveAPI", "reply", ("cPanel closed the LiveAPI socket before answering",))
            reply += chunk
            if len(reply) > MAX_REPLY_BYTES:
                raise CPanelError("LiveAPI", "reply", ("the reply is too large",))
        return reply

    def _connect(self) -> None:
        if self._socket is None:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.settimeout(self.timeout)
            try:
                connection.connect(self.socket_path)
            except OSError as e:
                connection.close()
                raise CPanelError("LiveAPI", "connect", (f"cannot connect to {self.socket_path}: {e}",)) from None
            self._socket = connection
            self._exchange('<cpaneljson enable="1">')

    def call(self, module, function, arguments):
        try:
            self._connect()
            request = {"module": module, "reqtype": "exec", "func": function, "apiversion": "uapi",
                       "args": {k: (list(v) if isinstance(v, (list, tuple)) else str(v)) for k, v in arguments.items()}}
            reply = self._exchange(f"<cpanelaction>\n{json.dumps(request)}\n</cpanelaction>")
        except OSError as e:
            raise CPanelError("LiveAPI", function, (f"the LiveAPI socket failed: {e}",), module) from None
        try:
            return _Done(liveapi_json(reply))
        except CPanelError as e:
            raise CPanelError("LiveAPI", function, e.messages, module) from None

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.sendall(liveapi_frame('<cpanelxml shutdown="1" />'))
            except OSError:
                pass
            self._socket.close()
            self._socket = None
