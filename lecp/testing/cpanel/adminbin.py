"""
The emulated cPanel's privileged side, as cPanel's admin binaries are: C{uapi} run by an
ordinary user sends its call here over a unix socket, and the service runs it for the account
whose Unix user is the socket's peer (C{SO_PEERCRED}), never for an account named in the message.
The calling side is L{lecp.testing.cpanel.cli.call_as_user}.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import struct
import tempfile

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from lecp.testing.cpanel import uapi
from lecp.testing.cpanel.server import NoSuchAccount, RemovingFolderOnStop, Server

MAX_REQUEST = 64 * 1024 * 1024
log = Logger()


def peer_uid(transport) -> int:
    """The uid of the process at the other end of a unix socket."""
    raw = transport.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)[1]


class AdminbinProtocol(Protocol):
    """One request line in, one envelope line out."""

    def __init__(self, server: Server):
        self.server = server
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        if len(self.buffer) > MAX_REQUEST:
            self.transport.loseConnection()
            return
        if b"\n" not in self.buffer:
            return
        line = self.buffer.split(b"\n", 1)[0]
        self.transport.write(json.dumps(self._answer(line)).encode() + b"\n")
        self.transport.loseConnection()

    def _answer(self, line: bytes) -> dict:
        uid = peer_uid(self.transport)
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = self.server.user_for_uid(uid)
            if user is None:
                return {"cli_error": "uapi: your Unix user is unknown to this server"}
        try:
            self.server.account(user)
        except NoSuchAccount:
            return {"cli_error": f"uapi: “{user}” is not a cPanel user on this server"}
        try:
            request = json.loads(line)
            module, function, args = str(request["module"]), str(request["function"]), dict(request["args"])
        except (ValueError, KeyError, TypeError):
            return {"cli_error": "uapi: malformed request"}
        return uapi.call(self.server, user, module, function, args)


def listen_adminbin(reactor, server: Server):
    """Serve the emulated admin side; its socket path is recorded in C{server.json} for C{uapi}."""
    folder = tempfile.mkdtemp(prefix="lecp-adminbin-")  # unix socket paths must stay short
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "adminbin.sock")
    port = reactor.listenUNIX(path, Factory.forProtocol(lambda: AdminbinProtocol(server)), mode=0o666)
    server.update_settings(adminbin_socket=path)
    return RemovingFolderOnStop(port, folder)
