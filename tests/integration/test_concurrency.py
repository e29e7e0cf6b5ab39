"""Several processes working on one account's store at once never lose an update."""

from __future__ import annotations

import json
import os
import sys

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.utils import getProcessOutputAndValue

from lecp.store import Store
from lecp.testing.pebble import PebbleSettings
from tests.integration.support import SystemTestCase
from tests.integration.test_issuance import IssuanceTestCase

LECP = os.path.join(os.path.dirname(sys.executable), "lecp")

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


class PageAdminDaemonTests(SystemTestCase):
    """The page, the admin command and the daemon on one account at the same moment, round after round."""

    settings = PebbleSettings(nosleep=True, certificate_validity=20)

    async def test_page_admin_and_daemon_together(self):
        """No deadlock, no lost update, never two orders for one website at once, every answer clear."""
        from lecp.testing.acmeproxy import start_proxy
        from lecp.testing.pebble import free_ports
        from lecp.testing.python import write_launcher
        from tests.integration.support import open_page

        proxy = start_proxy(self.reactor, self.pebble)
        self.addCleanup(proxy.stop)
        launcher = write_launcher(os.path.join(self.base, "launcher"), self.python, self.python_path)
        [health_port] = free_ports(1)
        self.write_config(proxy.directory_url,
                          "[renewal]\ninterval = 1\nfirst_pass_delay = 0\norders_interval = 1\n"
                          f"[mail]\nenabled = false\n[health]\nport = {health_port}\n[hostcert]\nenabled = false\n"
                          + self.paths_section(worker_python=launcher))
        vhost = f"{self.users[0]}.test"
        page = await open_page(self, launcher)
        code, answer = await page.api("issue-certificate", {"virtual_host": vhost, "dns_identifiers": [vhost]})
        self.assertEqual(code, 200, answer)

        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": ":".join(self.python_path)}
        daemon = _Ended()
        process = self.reactor.spawnProcess(daemon, sys.executable,
                                            [sys.executable, "-m", "twisted", "lecp", "--config", self.config_path],
                                            env=env, path="/")
        self.addCleanup(lambda: daemon.ended if daemon.ended.called else (process.signalProcess("KILL"), daemon.ended)[1])

        async def admin(*args):
            out, err, code = await getProcessOutputAndValue(
                LECP, ["--config", self.config_path, *args, "--json"], env={"PATH": "/usr/bin:/bin"}, path=self.base,
                reactor=self.reactor)
            return code, out.decode(), err.decode()

        import random

        from twisted.internet.task import deferLater

        rng = random.Random()

        async def later(make):
            # The admin command spends its first second starting Python: start the page's jobs at
            # random moments of it so that they meet the admin's job mid-way.
            await deferLater(self.reactor, rng.uniform(0.3, 2.0), lambda: None)
            return await make()

        rounds = int(os.environ.get("LECP_CONCURRENCY_ROUNDS", "4"))
        answers = []
        for round_ in range(rounds):
            mail_off = round_ % 2 == 0
            started = self.reactor.seconds()
            results = await gatherResults([
                Deferred.fromCoroutine(admin("renew", "--user", self.users[0], "--vhost", vhost, "--force")),
                Deferred.fromCoroutine(later(lambda: page.api("issue-certificate",
                                                              {"virtual_host": vhost, "dns_identifiers": [vhost]}))),
                Deferred.fromCoroutine(later(lambda: page.api("reinstall-certificate", {"virtual_host": vhost}))),
                Deferred.fromCoroutine(page.form({"action": "settings", **({} if mail_off else {"mail": "1"})})),
                Deferred.fromCoroutine(admin("list")),
            ])
            self.assertLess(self.reactor.seconds() - started, 120, f"round {round_} took too long (deadlock?)")
            (renew_code, renew_out, renew_err), (issue_code, issued), (re_code, reinstalled), (form_code, _), \
                (list_code, listed, _) = results
            # Each either did its work or was told, clearly, that another job held the website.
            self.assertIn(renew_code, (0, 1), renew_err)
            for result in json.loads(renew_out)["results"]:
                self.assertTrue(result["outcome"] == "issued" or "already running" in result["message"], result)
            self.assertTrue(issue_code == 200 or (issue_code == 409 and "already running" in issued["errors"][0]), issued)
            self.assertTrue(re_code == 200 or (re_code == 409 and "already running" in reinstalled["errors"][0]), reinstalled)
            self.assertEqual((form_code, list_code), (200, 0))
            document = Store(self.home, uid=self.user.pw_uid).read()
            self.assertEqual(document.disable_mail, mail_off, f"round {round_}: the settings change was lost")
            self.assertIsNotNone(document.certificate(vhost))
            answers.append((renew_out.count('"issued"'), issue_code, re_code))
        process.signalProcess("TERM")
        await daemon.ended

        # Never two orders in flight for the website: each new order is followed by its certificate's
        # download before the next new order (orders here are all for this one website).
        # (Orders the CA refused, a badNonce say, were never made: only created ones count.)
        events = [("order" if "/order-plz" in path else "download") for method, path, status, _ in proxy.controls.answers
                  if method == "POST" and (("/order-plz" in path and status == 201) or ("/certZ/" in path and status == 200))]
        for first, second in zip(events, events[1:]):
            self.assertFalse(first == second == "order", f"two orders at once: {events}")
        print(f"{rounds} rounds; per round (admin renewals, page issue status, page reinstall status): {answers}; "
              f"{events.count('order')} orders in all")


class _Ended(ProcessProtocol):
    def __init__(self):
        self.ended = Deferred()

    def processEnded(self, reason):
        self.ended.callback(None)
