"""
The C{lecp} admin command, through its real command line (the installed console script, as
root), against Pebble and the emulated cPanel with real Unix accounts: every subcommand, its
JSON output, its exit status, and its one-line errors for bad requests (which change nothing).
"""

from __future__ import annotations

import json
import os
import sys

from twisted.internet.utils import getProcessOutputAndValue
from twisted.web.server import Site

from lecp.daemon.health import HealthResource
from lecp.keys import certificate_facts
from lecp.store import Store
from lecp.testing.pebble import PebbleSettings, free_ports
from lecp.testing.python import write_launcher
from tests.integration.support import SystemTestCase

LECP = os.path.join(os.path.dirname(sys.executable), "lecp")


class AdminCommandTests(SystemTestCase):
    """lecp status, list, renew, issue, remove, hostcert, self-test and import."""

    settings = PebbleSettings(nosleep=True)
    account_count = 2

    def setUp(self):
        super().setUp()
        [self.health_port] = free_ports(1)
        launcher = write_launcher(os.path.join(self.base, "launcher"), self.python, self.python_path)
        self.write_config(self.pebble.directory_url,
                          f"[mail]\nenabled = false\n[health]\nport = {self.health_port}\n"
                          f'[hostcert]\ndocroot = "{self.server.path("var", "www", "html")}"\n'
                          + self.paths_section(worker_python=launcher))
        self.vhost = f"{self.users[0]}.test"

    async def lecp(self, *args: str, expect: int | None = 0):
        """Run the command; its standard output, standard error and exit status."""
        out, err, code = await getProcessOutputAndValue(
            LECP, ["--config", self.config_path, *args], env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, path=self.base,
            reactor=self.reactor)
        out, err = out.decode(), err.decode()
        if expect is not None:
            self.assertEqual(code, expect, f"lecp {' '.join(args)} exited {code}\nout: {out}\nerr: {err}")
        return out, err, code

    async def lecp_json(self, *args: str, expect: int | None = 0):
        out, err, code = await self.lecp(*args, "--json", expect=expect)
        return json.loads(out)

    def store(self, index: int = 0):
        import pwd

        user = pwd.getpwnam(self.users[index])
        return Store(self.server.account(self.users[index])["home"], uid=user.pw_uid).read()

    def serve_health(self):
        site = Site(HealthResource({}, self.reactor, self.reactor.seconds()))
        port = self.reactor.listenTCP(self.health_port, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)

    async def test_issue_list_renew_remove(self):
        """The life of one certificate driven from the shell, with progress and JSON."""
        self.assertEqual((await self.lecp_json("list"))["certificates"], [])

        out, err, _ = await self.lecp("issue", "--user", self.users[0], self.vhost, f"www.{self.vhost}")
        self.assertIn(f"{self.vhost}: issued", out)
        self.assertIn("[1/1]", err)  # progress on standard error
        first = self.store().certificate(self.vhost)
        self.assertEqual(first.names, [self.vhost, f"www.{self.vhost}"])

        [entry] = (await self.lecp_json("list"))["certificates"]
        self.assertEqual((entry["user"], entry["vhost"], entry["state"], entry["installed"]),
                         (self.users[0], self.vhost, "valid", True))
        self.assertEqual((await self.lecp_json("list", "--user", self.users[1]))["certificates"], [])
        self.assertEqual((await self.lecp_json("list", "--expiring", "0"))["certificates"], [])
        self.assertEqual(len((await self.lecp_json("list", "--expiring", "3650"))["certificates"]), 1)
        out, _, _ = await self.lecp("list")
        self.assertIn(self.vhost, out)
        self.assertIn("www." + self.vhost, out)

        # Nothing is due: renew does nothing, --dry-run --force says what it would do.
        out, _, _ = await self.lecp("renew")
        self.assertIn("Nothing is due", out)
        plan = await self.lecp_json("renew", "--force", "--dry-run")
        self.assertEqual(plan["plan"], [{"user": self.users[0], "vhost": self.vhost, "action": "renew",
                                         "reason": "forced by the admin"}])
        self.assertEqual(self.store().certificate(self.vhost).cert_pem, first.cert_pem)

        result = await self.lecp_json("renew", "--user", self.users[0], "--vhost", self.vhost, "--force")
        self.assertEqual([r["outcome"] for r in result["results"]], ["issued"])
        renewed = self.store().certificate(self.vhost)
        self.assertNotEqual(renewed.cert_pem, first.cert_pem)
        self.assertEqual(renewed.key_pem, first.key_pem)  # renewal keeps the key
        self.assertGreaterEqual(certificate_facts(renewed.cert_pem).not_after, certificate_facts(first.cert_pem).not_after)

        status = await self.lecp_json("status", expect=1)  # no daemon running: exit 1, and says so
        self.assertIn("does not answer", status["daemon_error"])
        self.assertEqual((status["accounts"], status["by_state"]), (2, {"valid": 1}))
        out, _, _ = await self.lecp("status", expect=1)
        self.assertIn("daemon: NOT RUNNING", out)
        self.serve_health()
        status = await self.lecp_json("status")
        self.assertEqual(status["daemon"]["status"], "ok")

        out, _, _ = await self.lecp("remove", "--user", self.users[0], "--vhost", self.vhost)
        self.assertIn(f"The certificate of {self.vhost} was removed", out)
        self.assertIsNone(self.store().certificate(self.vhost))
        _, err, _ = await self.lecp("remove", "--user", self.users[0], "--vhost", self.vhost, expect=2)
        self.assertIn(f"lecp: error: lecp has no certificate for {self.vhost}", err)

    async def test_bad_requests(self):
        """Each wrong request is one clear line on standard error, exit 2, and nothing changes."""
        other = f"{self.users[1]}.test"
        cases = [
            (("issue", "--user", "nosuchaccount", "x.test"), "no cPanel account named nosuchaccount"),
            (("issue", "--user", self.users[0], other), f"{other} is not a domain of {self.users[0]}'s websites"),
            (("issue", "--user", self.users[0], "bad..name"), "bad..name"),
            (("renew", "--vhost", self.vhost), "--vhost needs --user"),
            (("renew", "--user", self.users[0], "--vhost", "nothing.test"), "has no certificate from lecp for nothing.test"),
            (("list", "--user", "nosuchaccount"), "no cPanel account named nosuchaccount"),
            (("list", "--expiring", "soon"), "'soon' is not a number of days"),
            (("hostcert", "explode"), "invalid choice: 'explode'"),
        ]
        for args, message in cases:
            out, err, _ = await self.lecp(*args, expect=2)
            self.assertIn(message, err, args)
            # the last line says it all (argparse's own errors print the usage above it)
            self.assertIn("error:", err.strip().splitlines()[-1])
            self.assertIn(message, err.strip().splitlines()[-1])
        self.assertEqual(self.store().certificates(), {})
        _, err, _ = await self.lecp("--config", "/nonexistent.toml", "status", expect=2)
        self.assertIn("/nonexistent.toml: no such configuration file", err)

    async def test_hostcert_status_and_run(self):
        """status shows the self-signed services; run replaces them, and status then says ok."""
        before = await self.lecp_json("hostcert", "status")
        self.assertEqual(before["hostname"], "server.lecp.test")
        self.assertEqual({s["service"]: s["needs_replacing"] for s in before["services"]},
                         {s: "its certificate is self-signed" for s in ("cpanel", "exim", "dovecot", "ftp")})
        out, _, _ = await self.lecp("hostcert", "run")
        self.assertIn("replaced on: cpanel, exim, dovecot, ftp", out)
        after = await self.lecp_json("hostcert", "status")
        self.assertEqual({s["needs_replacing"] for s in after["services"]}, {""})
        self.assertEqual(after["stored"]["names"], ["server.lecp.test"])
        out, _, _ = await self.lecp("hostcert", "run")
        self.assertIn("Nothing needed replacing.", out)
        # While the daemon (here: this test) holds the hostname certificate's lock, run says so and waits its turn.
        import fcntl

        folder = os.path.join(self.base, "state", "hostcert")
        with open(os.path.join(folder, "hostcert.lock"), "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            _, err, _ = await self.lecp("hostcert", "run", expect=2)
        self.assertIn("is updating the hostname certificate right now", err)

    async def test_self_test(self):
        """Each check passes or says what to do; the pre-flight runs as the domain's account."""
        result = await self.lecp_json("self-test", "--domain", self.vhost, expect=1)
        checks = {c["name"]: c for c in result["checks"]}
        self.assertEqual({n for n, c in checks.items() if not c["ok"]}, {"daemon"})  # no daemon yet
        self.assertIn("systemctl start lecp", checks["daemon"]["hint"])
        self.assertTrue(checks[f"pre-flight of {self.vhost}"]["ok"])
        self.serve_health()
        out, _, _ = await self.lecp("self-test")
        self.assertEqual(out.count("[PASS]"), 5, out)
        result = await self.lecp_json("self-test", "--domain", "elsewhere.example", expect=1)
        self.assertIn("is not a domain of any account", result["checks"][-1]["detail"])
        os.chmod(self.config_path, 0o600)
        out, _, _ = await self.lecp("self-test", expect=1)
        self.assertIn("[FAIL] configuration", out)
        self.assertIn("chmod 644", out)

    async def test_import_reports_the_original_plugins_data(self):
        """A store left by the original plugin is reported (nothing rewritten), with its settings translated."""
        from lecp.sandbox import as_original_plugin

        await self.lecp("issue", "--user", self.users[0], self.vhost)
        import pwd

        user = pwd.getpwnam(self.users[0])
        home = self.server.account(self.users[0])["home"]
        as_original_plugin(home, user.pw_uid, user.pw_gid)
        path = Store(home, uid=user.pw_uid).path
        with open(path, "rb") as f:
            before = f.read()
        original = os.path.join(self.base, "letsencrypt-cpanel.conf")
        with open(original, "w") as f:
            json.dump({"email_admin_destination": "ops@example.com,noc@example.com", "crypto_key_type": "ecdsa",
                       "crypto_ecdsa_curve": "p-384", "hostcert": True, "hostextranames": ["mail.example.com"],
                       "renewal_countdown_days": 20, "autossl": True,
                       "external_mail_server": {"host": "smtp.example.com", "port": 587, "username": "u", "password": "p"}}, f)
        fake_root = os.path.join(self.base, "root")
        os.makedirs(os.path.join(fake_root, "opt", "fleetssl-cpanel"))

        report = await self.lecp_json("import", "--original-config", original, "--root", fake_root)
        [cert] = report["certificates"]
        self.assertEqual((cert["user"], cert["vhost"], cert["format"], cert["installed"], cert["problem"]),
                         (self.users[0], self.vhost, "original", True, ""))
        self.assertEqual(report["original_format"], 1)
        self.assertEqual(report["settings"]["certificates"], {"key_type": "ecdsa:p-384"})
        self.assertEqual(report["settings"]["mail"]["admin"], "ops@example.com")
        self.assertEqual(report["settings"]["renewal"], {"renew_within_days": 20})
        self.assertTrue(any("autossl" in n for n in report["settings_notes"]))
        self.assertTrue(any("password" in n for n in report["settings_notes"]))
        self.assertEqual(report["original_files"], [os.path.join(fake_root, "opt/fleetssl-cpanel")])
        from lecp.config import parse

        parse(report["settings_toml"])  # the suggested configuration is valid as it stands
        out, _, _ = await self.lecp("import", "--original-config", original, "--root", fake_root)
        self.assertIn("nothing to convert", out)
        self.assertIn("the original plugin is still installed", out)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)  # import only reports
        # lecp can work on it as it stands: renewing it adds lecp's own fields and keeps the key.
        result = await self.lecp_json("renew", "--user", self.users[0], "--force")
        self.assertEqual([r["outcome"] for r in result["results"]], ["issued"])
        self.assertEqual(self.store().certificate(self.vhost).key_pem, json.loads(before)["certs"][self.vhost]["key"])
