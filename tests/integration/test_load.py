"""
The daemon under load, in the bounded form `make test` can afford: bench/soak_daemon.py with 2,000
accounts, three of whose short-lived certificates keep falling due and are renewed through a CA
that answers slowly (every request held 0.3 s), for 45 s. Every /alive probe must be answered and
every renewal must succeed; the latency and memory figures are printed (`make soak` runs the long
form and bench/README.md gives the figures; budgets are never asserted in tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

SOAK = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench", "soak_daemon.py")


class DaemonLoadTests(SynchronousTestCase):
    def test_slow_ca_and_many_accounts(self):
        if os.geteuid() != 0:
            self.skipTest("runs as root, as in CI (the accounts are Unix users)")
        output = os.path.abspath(self.mktemp())
        done = subprocess.run([sys.executable, SOAK, "--accounts", "2000", "--due", "3", "--seconds", "45",
                               "--ca-delay", "0.3", "--validity", "40", "--interval", "10", "--output", output],
                              capture_output=True, text=True, timeout=600)
        self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr[-3000:])
        with open(output) as f:
            result = json.load(f)
        print(done.stdout)
        self.assertGreater(result["alive"]["probes"], 100)
        self.assertEqual(result["alive"]["failed"], 0, "some /alive probes were not answered")
        failed = {k: v for k, v in result["jobs"].items() if not k.endswith(":issued")}
        self.assertEqual(failed, {}, result["log_tail"])
        self.assertGreaterEqual(result["jobs"].get("renew:issued", 0), 3, result["log_tail"])
        self.assertEqual(result["renewal"]["counts"]["accounts"], 2000)
