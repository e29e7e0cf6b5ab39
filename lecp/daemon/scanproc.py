# -*- test-case-name: tests.integration.test_daemon -*-
"""
The renewal scan in a child process of the daemon (as root, like the daemon):

    python -m lecp.daemon.scanproc CONFIG NOW

It lists the accounts (C{whmapi1 listaccts}), reads root's state read-only, scans every store
(L{lecp.daemon.scan}) and prints the result as JSON. The daemon's reactor never blocks on a scan
and the memory a large scan needs goes back to the system when the child exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import attrs

from lecp.cpanel.envelope import CPanelError, whm_data
from lecp.cpanel.models import Account
from lecp.daemon.scan import LocalFacts, ScanResult, Work, scan_listed_account


def list_accounts(config) -> list[Account]:
    """Every account WHM lists (C{whmapi1 listaccts}), synchronously."""
    done = subprocess.run([config.whmapi1, "--output=json", "listaccts",
                           "want=user%2Cdomain%2Cemail%2Cowner%2Csuspended%2Cuid%2Ctheme%2Cplan"],
                          capture_output=True, timeout=600)
    if done.returncode != 0:
        raise CPanelError("WHM API 1", "listaccts", (done.stderr.decode("utf-8", "replace").strip()[:300],))
    data = whm_data(json.loads(done.stdout), "listaccts")
    return [Account.from_api(a) for a in data.get("acct") or () if isinstance(a, dict)]


def run(config, now: float) -> dict:
    """The whole scan, synchronously; a JSON-ready result."""
    accounts = list_accounts(config)
    local = LocalFacts.read(config)
    result = ScanResult()
    for account in accounts:
        scan_listed_account(account, local.passwd, now, config, local.states, local.installed, local.hosts, result)
    wanted = {w.user for w in result.work} | {a[0] for a in result.alerts}
    return {"work": [attrs.asdict(w) for w in result.work], "alerts": result.alerts, "accounts": result.accounts,
            "certificates": result.certificates, "states": result.states, "errors": result.errors,
            "next_due": result.next_due, "ari_checks": result.ari_checks,
            "emails": {a.user: list(a.emails) for a in accounts if a.user in wanted | {c[0] for c in result.ari_checks}}}


def from_json(data: dict) -> tuple[ScanResult, dict]:
    result = ScanResult(
        work=[Work(**{**w, "added_names": tuple(w["added_names"])}) for w in data["work"]],
        alerts=[tuple(a) for a in data["alerts"]], accounts=data["accounts"], certificates=data["certificates"],
        states=data["states"], errors=[tuple(e) for e in data["errors"]], next_due=data["next_due"],
        ari_checks=[tuple(c) for c in data.get("ari_checks", ())],
    )
    return result, {u: tuple(e) for u, e in data["emails"].items()}


def _collector(done):
    """A process protocol gathering output (Twisted is imported here: the child never needs it)."""
    from twisted.internet.protocol import ProcessProtocol

    class Collect(ProcessProtocol):
        def __init__(self):
            self.out, self.err = [], []

        def outReceived(self, data):
            self.out.append(data)

        def errReceived(self, data):
            self.err.append(data)

        def processEnded(self, reason):
            done.callback((b"".join(self.out), b"".join(self.err), getattr(reason.value, "exitCode", None)))

    return Collect()


@attrs.define
class SubprocessScanner:
    """Runs the scan in a child process; C{process} is the running child (killed on shutdown)."""

    reactor: object
    config_path: str
    python: str = sys.executable
    process: object = None

    async def __call__(self, config, now: float) -> tuple[ScanResult, dict]:
        from twisted.internet.defer import Deferred

        done = Deferred()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        self.process = self.reactor.spawnProcess(_collector(done), self.python,
                                                 [self.python, "-m", "lecp.daemon.scanproc", self.config_path, repr(now)],
                                                 env=env, path="/")
        try:
            out, err, code = await done
        finally:
            self.process = None
        if code != 0:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(f"the scan process failed ({code}): {lines[-1] if lines else 'no output'}")
        return from_json(json.loads(out))

    def stop(self) -> None:
        if self.process is not None:
            try:
                self.process.signalProcess("TERM")
            except Exception:
                pass


def main(argv) -> int:
    from lecp.config import load

    config = load(argv[0] or None)
    json.dump(run(config, float(argv[1])), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
