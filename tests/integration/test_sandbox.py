"""make sandbox's system: it starts, a user secures a website through its page, and it stops cleanly."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

from twisted.trial.unittest import SynchronousTestCase

from lecp.testing.pebble import free_ports


class SandboxTests(SynchronousTestCase):
    """python -m lecp.sandbox start --detach / stop, as a script would use them (root, as in CI)."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("the sandbox runs as root (CI runs as root)")
        self.state = tempfile.mkdtemp(prefix="lecp-sandbox-")
        os.chmod(self.state, 0o755)
        self.addCleanup(subprocess.run, [sys.executable, "-m", "lecp.sandbox", "purge", "--state-dir", self.state],
                        capture_output=True)

    def sandbox(self, *args):
        return subprocess.run([sys.executable, "-m", "lecp.sandbox", *args, "--state-dir", self.state],
                              capture_output=True, text=True, timeout=300)

    def test_start_issue_stop(self):
        """Start detached, log in with the one-time URL, secure a website through the page, stop: nothing left running."""
        front, health = free_ports(2)
        started = self.sandbox("start", "--detach", "--cpsrvd-port", str(front), "--health-port", str(health))
        self.assertEqual(started.returncode, 0, started.stderr + open(os.path.join(self.state, "logs", "sandbox.log")).read()[-3000:])
        facts = json.loads(started.stdout)
        self.assertEqual([a["user"] for a in facts["accounts"]], ["lecpalice", "lecpbob", "lecpcarol"])
        for key in ("page_url", "acme_directory", "acme_ca_bundle", "health_url", "uapi", "whmapi1", "logs"):
            self.assertIn(key, facts)
        bob = json.loads(open(os.path.join(self.state, "cpanel", "home", "lecpbob", ".cpanel", "nvdata", "letsencrypt-cpanel")).read())
        self.assertIn("bob.test", bob["certs"])
        self.assertNotIn("lecp_schema", bob)  # written in the original plugin's format

        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        home = opener.open(facts["accounts"][0]["login_url"], timeout=30)
        token = re.search(r"(/cpsess\d+)/", home.geturl()).group(1)
        page = f"{facts['page_url'].rstrip('/')}{token}/frontend/jupiter/lecp/lecp.live.cgi"
        form = opener.open(f"{page}?action=issue&vhost=alice.test", timeout=30).read().decode()
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form).group(1)
        data = urllib.parse.urlencode({"action": "issue", "vhost": "alice.test", "names": "www.alice.test",
                                       "csrf_token": csrf}).encode()
        outcome = opener.open(page, data=data, timeout=120).read().decode()
        self.assertIn("is now installed onto the domain", outcome)
        listing = opener.open(page, timeout=30).read().decode()
        self.assertIn("Secured until", listing)
        with urllib.request.urlopen(facts["health_url"], timeout=10) as response:
            self.assertEqual(json.loads(response.read())["status"], "ok")
        # The admin command works on the sandbox as printed (its workers find lecp through worker_python).
        admin = subprocess.run([os.path.join(os.path.dirname(sys.executable), "lecp"), "--config", facts["config"],
                                "list", "--json"], capture_output=True, text=True, timeout=60)
        self.assertEqual(admin.returncode, 0, admin.stderr)
        listed = {(c["user"], c["vhost"]): c["state"] for c in json.loads(admin.stdout)["certificates"]}
        self.assertEqual(set(listed), {("lecpalice", "alice.test"), ("lecpbob", "bob.test")})
        check = subprocess.run([os.path.join(os.path.dirname(sys.executable), "lecp"), "--config", facts["config"],
                                "self-test", "--domain", "alice.test"], capture_output=True, text=True, timeout=120)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

        stopped = self.sandbox("stop")
        self.assertEqual(stopped.returncode, 0, stopped.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.state, "sandbox.json")))
        # stop returns once the sandbox process has exited, and the sandbox waits for its daemon first.
        for pid in (facts["pid"], facts["daemon_pid"]):
            with self.assertRaises(ProcessLookupError, msg=f"process {pid} is still running after stop"):
                os.kill(pid, 0)
        shutil.rmtree(os.path.join(self.state, "python"), ignore_errors=True)
