"""
Crash consistency: the worker, the page's CGI process and the daemon are killed with SIGKILL at
random moments of issuance and renewal, against Pebble and the emulated cPanel with a real Unix
account. After every kill: the store parses; every key whose certificate was issued or installed
is still in it; the installed certificate's key is one the store holds; and recovery as the daemon
does it (resume deferred orders, reinstall what cPanel lost) ends with the certificate valid and
installed, no deferred order left and no temporary file left behind.

`make test` runs a few trials; `make soak` runs them by the hundred (LECP_CRASH_TRIALS). The seed
is printed so that a failing trial can be replayed (LECP_CRASH_SEED).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue

from lecp.keys import key_matches_certificate, load_certificate, load_private_key, split_pem_chain
from lecp.store import Store
from lecp.testing.pebble import PebbleSettings, free_ports
from lecp.testing.python import write_launcher
from tests.integration.support import SystemTestCase, open_page

LECP = os.path.join(os.path.dirname(sys.executable), "lecp")
TRIALS = int(os.environ.get("LECP_CRASH_TRIALS", "0") or 0)


def _seed() -> int:
    seed = int(os.environ.get("LECP_CRASH_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"crash trials seed: {seed} (replay with LECP_CRASH_SEED={seed})")
    return seed


class _Collect(ProcessProtocol):
    def __init__(self, stdin: bytes = b""):
        self.stdin, self.out, self.ended = stdin, [], Deferred()

    def connectionMade(self):
        self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data):
        self.out.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value)


class CrashTestCase(SystemTestCase):
    """A real account, a launcher Python the workers run with, and the checks made after every kill."""

    settings = PebbleSettings(nosleep=True)

    def setUp(self):
        super().setUp()
        self.launcher = write_launcher(os.path.join(self.base, "launcher"), self.python, self.python_path)
        self.vhost = f"{self.users[0]}.test"
        self.rng = random.Random(_seed())
        self.kills = 0
        # How long the last run of each kind of process took when it was not killed: kills are drawn
        # within it, so that they land while the process works (the machine's speed varies).
        self.spans = {"worker": 3.0, "page": 1.5}

    def kill_delay(self, kind: str) -> float:
        """A random moment within the observed duration of a C{kind} process."""
        return self.rng.uniform(0.05, self.spans[kind])

    def attempts(self, kills_wanted: int):
        """Trial numbers until C{kills_wanted} processes were killed mid-work (a process that finished first is no trial)."""
        for attempt in range(3 * kills_wanted):
            if self.kills >= kills_wanted:
                return
            yield attempt
        self.fail(f"only {self.kills} of {3 * kills_wanted} runs were killed before they finished; "
                  f"the kill moments do not fit the processes' durations {self.spans}")

    def configure(self, extra: str = "") -> None:
        self.write_config(self.pebble.directory_url, "[mail]\nenabled = false\n" + extra
                          + self.paths_section(worker_python=self.launcher))

    def store(self) -> Store:
        return Store(self.home, uid=self.user.pw_uid)

    def installed_leaf(self) -> str | None:
        path = self.server.path("var", "cpanel", "ssl", "apache_tls", self.vhost, "certificates")
        try:
            with open(path) as f:
                return split_pem_chain(f.read())[0]
        except (FileNotFoundError, IndexError):
            return None

    def temporaries(self) -> list[str]:
        folder = self.store().folder
        return [n for n in os.listdir(folder) if n.endswith(".tmp")] if os.path.isdir(folder) else []

    def check_after_kill(self, known_key: str | None, label: str) -> str | None:
        """The checks that hold right after a kill; returns the certificate's key (once there is one)."""
        document = self.store().read()  # parses (a corrupt store would raise StoreCorrupted)
        record = document.certificate(self.vhost)
        if known_key is not None:
            self.assertIsNotNone(record, f"{label}: the certificate record was lost")
            self.assertEqual(record.key_pem, known_key, f"{label}: the certificate's key changed or was lost")
        held = {r.key_pem for r in document.certificates().values()} | {p.key_pem for p in document.pending().values()}
        leaf = self.installed_leaf()
        if leaf is not None and "Pebble" in load_certificate(leaf).issuer.rfc4514_string():
            certificate = load_certificate(leaf)
            self.assertTrue(any(key_matches_certificate(load_private_key(k), certificate) for k in held),
                            f"{label}: cPanel has a certificate whose key the store does not hold")
        return record.key_pem if record else known_key

    async def recover(self, label: str) -> None:
        """What the daemon does next (resume deferred orders, reinstall), through `lecp renew`; then all is well."""
        for _ in range(3):
            out, err, code = await getProcessOutputAndValue(
                LECP, ["--config", self.config_path, "renew", "--user", self.users[0], "--json"],
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, path=self.base, reactor=self.reactor)
            if not self.store().read().pending():
                break
        document = self.store().read()
        self.assertEqual(document.pending(), {}, f"{label}: a deferred order was not finished: {out.decode()} {err.decode()}")
        record = document.certificate(self.vhost)
        if record is not None:
            self.assertEqual(self.installed_leaf().strip(), record.cert_pem.strip(),
                             f"{label}: the stored certificate is not the installed one after recovery")
        self.assertEqual(self.temporaries(), [], f"{label}: temporary files left behind")

    async def run_killed(self, argv, env, stdin: bytes, delay: float, uid=None, gid=None) -> float | None:
        """
        Start a process, SIGKILL it after C{delay} seconds (if it is still running), wait for its end;
        the seconds it ran when it ended on its own, None when it was killed.
        """
        protocol = _Collect(stdin)
        started = time.monotonic()
        process = self.reactor.spawnProcess(protocol, argv[0], argv, env=env, path="/", uid=uid, gid=gid)
        timer = self.reactor.callLater(delay, self.kill, process)
        await protocol.ended
        if timer.active():
            timer.cancel()
            return time.monotonic() - started
        return None

    def kill(self, process) -> None:
        try:
            process.signalProcess("KILL")
            self.kills += 1
        except Exception:
            pass


class WorkerAndPageCrashTests(CrashTestCase):
    """SIGKILL of the worker and of the CGI process, mid-issuance and mid-renewal."""

    async def test_worker_killed_at_random_points(self):
        """Issue, then renew, again and again, each worker killed at a random moment; recover after each."""
        self.configure()
        trials = TRIALS or 6
        key = None
        env = {"HOME": self.home, "PATH": "/usr/bin:/bin", "LECP_CONFIG": self.config_path, "LANG": "C.UTF-8"}
        for attempt in self.attempts(trials):
            job = {"job": "renew" if key else "issue", "vhost": self.vhost}
            if not key:
                job["names"] = [f"www.{self.vhost}"]
            delay = self.kill_delay("worker")
            label = f"run {attempt} ({job['job']}, kill after {delay:.2f} s)"
            finished = await self.run_killed([self.launcher, "-m", "lecp.worker"], env, json.dumps(job).encode(),
                                             delay, self.user.pw_uid, self.user.pw_gid)
            if finished is not None:
                self.spans["worker"] = finished
            key = self.check_after_kill(key, label)
            await self.recover(label)
            key = self.check_after_kill(key, label + " after recovery")
        print(f"{self.kills} workers killed mid-job in {attempt + 1} runs")

    test_worker_killed_at_random_points.timeout = 3600

    async def test_page_killed_mid_issuance(self):
        """The page's CGI process killed while it issues through the JSON API; recovery finishes the job."""
        self.configure()
        page = await open_page(self, self.launcher)
        key = None
        for attempt in self.attempts(max(2, TRIALS // 10)):
            function = "reinstall-certificate" if key else "issue-certificate"
            body = {"virtual_host": self.vhost}
            if not key:
                body["dns_identifiers"] = [self.vhost, f"www.{self.vhost}"]
            delay = self.kill_delay("page")
            label = f"page run {attempt} ({function}, kill after {delay:.2f} s)"
            started = time.monotonic()
            request = Deferred.fromCoroutine(page.api(function, body))
            answered = []
            request.addBoth(lambda result: (answered.append(time.monotonic()), result)[1])
            await deferLater(self.reactor, delay, lambda: None)
            running = list(page.front.running.values())
            for process in running:
                self.kill(process)
            await request
            if not running:
                self.spans["page"] = answered[0] - started
            key = self.check_after_kill(key, label)
            await self.recover(label)
            key = self.check_after_kill(key, label + " after recovery")
        print(f"{self.kills} page processes killed mid-request in {attempt + 1} runs")


class DaemonCrashTests(CrashTestCase):
    """SIGKILL of the daemon while it renews short-lived certificates; a restart finishes the work."""

    settings = PebbleSettings(nosleep=True, certificate_validity=12)

    async def test_daemon_killed_while_renewing(self):
        [health_port] = free_ports(1)
        self.configure("[renewal]\ninterval = 1\nfirst_pass_delay = 0\norders_interval = 1\n"
                       f"[health]\nport = {health_port}\n[hostcert]\nenabled = false\n")
        out, err, code = await getProcessOutputAndValue(
            LECP, ["--config", self.config_path, "issue", "--user", self.users[0], self.vhost],
            env={"PATH": "/usr/bin:/bin"}, path=self.base, reactor=self.reactor)
        self.assertEqual(code, 0, out + err)
        key = self.check_after_kill(None, "first issuance")
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": ":".join(self.python_path)}
        argv = [sys.executable, "-m", "twisted", "lecp", "--config", self.config_path]
        for trial in range(max(2, TRIALS // 10)):
            delay = self.rng.uniform(4, 12)  # certificates are due 8 s after issuance: kills land mid-renewal
            await self.run_killed(argv, env, b"", delay)
            key = self.check_after_kill(key, f"daemon trial {trial} (killed after {delay:.1f} s)")
        # Restarted, the daemon finishes whatever was left and keeps renewing.
        before = self.store().read().certificate(self.vhost).cert_pem
        protocol = _Collect()
        process = self.reactor.spawnProcess(protocol, argv[0], argv, env=env, path="/")
        self.addCleanup(lambda: protocol.ended if protocol.ended.called else (self.kill(process), protocol.ended)[1])
        until = time.monotonic() + 60
        while time.monotonic() < until:
            document = self.store().read()
            record = document.certificate(self.vhost)
            if not document.pending() and record.cert_pem != before and self.installed_leaf().strip() == record.cert_pem.strip():
                break
            await deferLater(self.reactor, 0.5, lambda: None)
        else:
            self.fail("the restarted daemon did not renew: " + b"".join(protocol.out).decode()[-4000:])
        self.assertEqual(record.key_pem, key)
        process.signalProcess("TERM")
        await protocol.ended
        self.assertEqual(self.temporaries(), [])

    test_daemon_killed_while_renewing.timeout = 1800
