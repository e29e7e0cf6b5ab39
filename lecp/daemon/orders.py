# -*- test-case-name: tests.integration.test_daemon -*-
"""
The deferred-order service: finishes orders the CA had not finished while the page waited. The
page signals it over a world-connectable unix socket; the account is taken from the socket's
peer credentials (C{SO_PEERCRED}), never from the message. It also polls on a timer, honouring
the retry time each order was given, and resumes each order in a worker as the user.
"""

from __future__ import annotations

import os
import socket
import struct

import attrs
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from lecp.daemon.accounts import read_passwd
from lecp.daemon.scan import STORE_PATH, Work
from lecp.daemon.timed import TimedService
from lecp.saferead import UnsafePath, read_beneath
from lecp.store import parse_document

log = Logger()


def peer_uid(transport) -> int:
    raw = transport.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)[1]


class _Signal(Protocol):
    """One connection from a page: whatever it says, it means 'look at my pending orders'."""

    def __init__(self, service: "OrdersService"):
        self.service = service
        self.received = 0

    def connectionMade(self):
        try:
            uid = peer_uid(self.transport)
        except OSError:
            self.transport.loseConnection()
            return
        self.service.signalled(uid)

    def dataReceived(self, data):
        self.received += len(data)
        if self.received > 4096 or b"\n" in data:
            self.transport.loseConnection()


@attrs.define(eq=False, slots=False)
class OrdersService(TimedService):
    """Resumes deferred orders when signalled and on a timer."""

    state: object = None
    runner: object = None
    recorder: object = None
    reactor: object = None
    _port: object = None
    _inflight: set = attrs.field(factory=set)
    signals: int = 0
    passwd: object = None  # () -> {name: account}; default: the configured passwd file

    def accounts(self) -> dict:
        """The Unix accounts by name, as the renewal service reads them."""
        return self.passwd() if self.passwd is not None else read_passwd(self.config.passwd)

    def first_delay(self) -> float:
        return min(30.0, self.config.orders_interval)

    def interval(self) -> float:
        return self.config.orders_interval

    def startService(self):
        path = self.config.daemon_socket
        if path and self.reactor is not None:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            if os.path.exists(path) and not os.path.islink(path):
                os.unlink(path)  # a stale socket from a daemon that died
            self._port = self.reactor.listenUNIX(path, Factory.forProtocol(lambda: _Signal(self)), mode=0o666)
        super().startService()

    def stopService(self):
        stopping = super().stopService()
        if self._port is not None:
            port, self._port = self._port, None
            return gatherResults([stopping, Deferred.fromCoroutine(_stop(port))])
        return stopping

    def on_stop(self) -> None:
        self.runner.stop()

    def signalled(self, uid: int) -> None:
        """A page of the account with Unix uid C{uid} left a deferred order."""
        self.signals += 1
        if uid == 0:
            return
        try:
            account = next((a for a in self.accounts().values() if a.pw_uid == uid), None)
        except OSError as e:
            log.warn("Cannot read {path}: {error}", path=self.config.passwd, error=str(e))
            return
        if account is None:
            log.warn("A process of uid {uid}, unknown to {path}, signalled the orders socket", uid=uid,
                     path=self.config.passwd)
            return
        Deferred.fromCoroutine(self.resume_account(account)).addErrback(
            lambda f: log.failure("Resuming orders of {user}", f, user=account.pw_name))

    async def resume_account(self, account, only: set | None = None) -> None:
        """Resume the deferred orders in one account's store (those in C{only}, when given), honouring its mail opt-out."""
        try:
            document = parse_document(read_beneath(account.pw_dir, STORE_PATH, account.pw_uid))
        except (FileNotFoundError, UnsafePath, OSError, ValueError) as e:
            log.warn("Cannot read the store of {user}: {error}", user=account.pw_name, error=str(e))
            return
        await gatherResults([Deferred.fromCoroutine(self.resume(account.pw_name, vhost, document.disable_mail))
                             for vhost in document.pending() if only is None or vhost in only])

    async def resume(self, user: str, vhost: str, disable_mail: bool = False) -> None:
        key = (user, vhost)
        if key in self._inflight or self._stopping:
            return
        self._inflight.add(key)
        try:
            outcome = await self.runner.run(user, {"job": "resume", "vhost": vhost})
            await self.recorder.record(Work(user, vhost, "resume", "deferred order", 0.0, (), disable_mail), outcome)
        finally:
            self._inflight.discard(key)

    async def run_once(self) -> None:
        now = self.clock.seconds()
        due: dict = {}
        for user, vhost, _, next_attempt in self.state.pending():
            if next_attempt <= now:
                due.setdefault(user, set()).add(vhost)
        resumes = []
        accounts = self.accounts() if due else {}
        for user, vhosts in due.items():
            account = accounts.get(user)
            if account is None or account.pw_uid == 0:
                continue
            resumes.append(Deferred.fromCoroutine(self.resume_account(account, vhosts)))
        await gatherResults(resumes)
        self.status.counts = {"pending": len(self.state.pending()), "signals": self.signals}


async def _stop(port) -> None:
    await maybeDeferred(port.stopListening)
