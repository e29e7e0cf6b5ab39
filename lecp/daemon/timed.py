# -*- test-case-name: tests.test_daemon_services -*-
"""
A service that runs a pass after a first delay and then every interval, on an injected
C{IReactorTime}. A pass that fails is logged and reported on /health; the timer never dies.
Stopping cancels the next pass and waits (a bounded time) for the one running.
"""

from __future__ import annotations

import attrs
from twisted.application import service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

log = Logger()


@attrs.define
class Status:
    """What /health says about one service."""

    state: str = "starting"  # starting, idle, running, failing, stopped, disabled
    last_run: float | None = None
    last_duration: float | None = None
    next_run: float | None = None
    last_error: str = ""
    runs: int = 0
    failures: int = 0
    counts: dict = attrs.field(factory=dict)

    def to_json(self) -> dict:
        return attrs.asdict(self)


@attrs.define(eq=False, slots=False)
class TimedService(service.Service):
    """Base of the renewal, orders and hostcert services."""

    clock: object
    settings: object
    status: Status = attrs.field(factory=Status)
    stop_timeout: float = 4.0
    _call: object = None
    _running: Deferred | None = None
    _stopping: bool = False

    @property
    def config(self):
        return self.settings.config

    def first_delay(self) -> float:
        return 0.0

    def interval(self) -> float:
        raise NotImplementedError

    async def run_once(self) -> None:
        raise NotImplementedError

    def on_stop(self) -> None:
        """Called when stopping while a pass runs (kill workers, say)."""

    def startService(self):
        super().startService()
        self._stopping = False
        self.status.state = "idle"
        self._schedule(self.first_delay())

    def _schedule(self, delay: float) -> None:
        if self._stopping:
            return
        self._call = self.clock.callLater(max(delay, 0.0), self._tick)
        self.status.next_run = self.clock.seconds() + max(delay, 0.0)

    def _tick(self) -> None:
        self._call = None
        self.status.next_run = None
        self._running = Deferred.fromCoroutine(self._guarded())

        def finished(_):
            self._running = None
            self._schedule(self.interval())

        self._running.addBoth(finished)

    async def _guarded(self) -> None:
        started = self.clock.seconds()
        self.status.state = "running"
        try:
            await self.run_once()
        except Exception as e:
            self.status.failures += 1
            self.status.last_error = f"{type(e).__name__}: {e}"
            self.status.state = "failing"
            log.failure("The {name} pass failed; it runs again in {interval:.0f} s", name=self.name, interval=self.interval())
        else:
            self.status.last_error = ""
            self.status.state = "idle"
        finally:
            self.status.runs += 1
            self.status.last_run = started
            self.status.last_duration = self.clock.seconds() - started

    def run_now(self) -> Deferred:
        """Start a pass now unless one is running; fires when the pass (or the running one) ends."""
        if self._running is None and self.running and not self._stopping:
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._tick()
        return self._running if self._running is not None else succeed(None)

    def stopService(self):
        super().stopService()
        self._stopping = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self.status.next_run = None
        if self._running is None:
            self.status.state = "stopped"
            return succeed(None)
        self.on_stop()
        waiting = Deferred()
        self._running.addBoth(lambda result: waiting.called or waiting.callback(None))
        timeout = self.clock.callLater(self.stop_timeout, lambda: waiting.called or waiting.callback(None))
        waiting.addCallback(lambda _: timeout.active() and timeout.cancel())
        waiting.addCallback(lambda _: setattr(self.status, "state", "stopped"))
        return waiting
