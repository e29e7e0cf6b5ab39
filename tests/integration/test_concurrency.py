"""Several processes working on one account's store at once never lose an update."""

from __future__ import annotations

import json
import os
import sys

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.utils import getProcessOutputAndValue

from lecp.store import Store
from tests.integration.test_issuance import IssuanceTestCase

RUN_JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_job.py")


class ConcurrencyTests(IssuanceTestCase):
    """Processes racing on alice's store."""

    def write_config(self) -> str:
        path = os.path.join(self.sockets, "lecp.toml")
        with open(path, "w") as f:
            f.write(f'[acme]\ndirectory = "{self.pebble.directory_url}"\nca_bundle = "{self.pebble.ca_bundle}"\n'
                    f'[certificates]\nkey_type = "ecdsa:p-256"\n'
                    f'[preflight]\nport = {self.pebble.http_port}\nresolve = "dns:127.0.0.1:{self.pebble.dns_port}"\n'
                    f'[paths]\nuapi = "{self.server.path("bin", "uapi")}"\n'
                    f'daemon_socket = "{os.path.join(self.sockets, "none.sock")}"\n')
        return path

    async def run_job(self, config, job, vhost) -> dict:
        out, err, code = await getProcessOutputAndValue(
            sys.executable, [RUN_JOB, config, self.home, "alice", job, vhost], env=os.environ)
        self.assertEqual(code, 0, err.decode()[-2000:])
        return json.loads(out.decode().strip().splitlines()[-1])

    async def test_issue_and_remove_side_by_side(self):
        """Two processes issue (then remove) certificates of two vhosts of one account at once, 5 rounds: nothing lost."""
        config = self.write_config()
        for round_number in range(5):
            issued = await gatherResults([Deferred.fromCoroutine(self.run_job(config, "issue", v))
                                          for v in ("alice.test", "shop.test")])
            self.assertEqual([o["outcome"] for o in issued], ["issued", "issued"], (round_number, issued))
            document = Store(self.home).read()
            self.assertEqual(sorted(document.certificates()), ["alice.test", "shop.test"])
            self.assertEqual(document.pending(), {})
            account_key = document.account_key_pem
            removed = await gatherResults([Deferred.fromCoroutine(self.run_job(config, "remove", v))
                                           for v in ("alice.test", "shop.test")])
            self.assertEqual([o["outcome"] for o in removed], ["removed", "removed"], removed)
            document = Store(self.home).read()
            self.assertEqual(document.certificates(), {})
            self.assertEqual(document.account_key_pem, account_key)
            self.assertEqual(document.raw.get("lecp_jobs"), {})
        installed = [h.servername for h in await self.cpanel.installed_hosts()]
        self.assertEqual(installed, [])

    test_issue_and_remove_side_by_side.timeout = 300

    async def test_store_updates_never_lost(self):
        """Four processes each make 50 locked read-modify-writes of one counter: it ends at 200."""
        runs = [getProcessOutputAndValue(sys.executable, [RUN_JOB, "--count", self.home, "50"], env=os.environ)
                for _ in range(4)]
        for out, err, code in await gatherResults(runs):
            self.assertEqual(code, 0, err)
        self.assertEqual(Store(self.home).read().raw["test_counter"], 200)
