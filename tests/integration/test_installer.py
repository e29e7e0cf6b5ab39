"""
init/install.sh and init/uninstall.sh against a fake root (root needed, as in CI), with
recording stand-ins for cPanel's install_plugin, uninstall_plugin and restartsrv_chkservd.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

from twisted.trial.unittest import TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
"""


def parse_chkservd_driver(line: str) -> dict:
    """A driver line read as chkservd reads it (reference/cpanel-api.md §5)."""
    name, _, value = line.strip().partition("=")
    fields = value.split(",")
    keys = ["port", "send", "expect", "restart", "proc", "owner"]
    return {"service": re.fullmatch(r"service\[(.+)\]", name).group(1), **dict(zip(keys, fields))}


class InstallerTests(TestCase):
    """A whole install, a second install, and an uninstall, in a fake root."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("the installer runs as root (CI runs as root)")
        self.root = tempfile.mkdtemp(prefix="lecp-root-")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.log = os.path.join(self.root, "cpanel-calls.log")
        scripts = os.path.join(self.root, "usr", "local", "cpanel", "scripts")
        os.makedirs(scripts)
        for name in ("install_plugin", "uninstall_plugin", "restartsrv_chkservd"):
            path = os.path.join(scripts, name)
            with open(path, "w") as f:
                f.write(RECORDER.format(log=self.log))
            os.chmod(path, 0o755)

    def run_script(self, name: str, *args: str) -> str:
        done = subprocess.run(["bash", os.path.join(ROOT, "init", name), "--root", self.root, *args],
                              capture_output=True, text=True, timeout=900)
        self.assertEqual(done.returncode, 0, done.stdout[-3000:] + done.stderr[-3000:])
        return done.stdout

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def calls(self) -> list[str]:
        with open(self.log) as f:
            return f.read().splitlines()

    def test_install_twice_then_uninstall(self):
        """Everything lands where it should, a second run changes nothing twice, and uninstall removes it all but data."""
        self.run_script("install.sh", "--python", "/usr/bin/python3")
        python = self.path("opt", "lecp", "bin", "python")
        check = subprocess.run([python, "-c", "import lecp.tap, lecp.frontend.app; print('ok')"], capture_output=True, text=True)
        self.assertEqual(check.stdout.strip(), "ok", check.stderr)
        twistd = subprocess.run([self.path("opt", "lecp", "bin", "twistd"), "--help"], capture_output=True, text=True)
        self.assertIn("lecp", twistd.stdout)
        self.assertEqual(os.readlink(self.path("usr", "local", "sbin", "lecp")), "/opt/lecp/bin/lecp")
        admin = subprocess.run([self.path("opt", "lecp", "bin", "lecp"), "--help"], capture_output=True, text=True)
        self.assertIn("self-test", admin.stdout, admin.stderr)
        cgi = self.path("usr", "local", "cpanel", "base", "frontend", "jupiter", "lecp", "lecp.live.cgi")
        with open(cgi) as f:
            self.assertEqual(f.readline().strip(), "#!/opt/lecp/bin/python")
        self.assertEqual(stat.S_IMODE(os.stat(cgi).st_mode), 0o755)
        self.assertIn(f"install_plugin {self.path('opt', 'lecp', 'share', 'cpanel-plugin')} --theme=jupiter", self.calls())
        self.assertTrue(os.path.exists(self.path("opt", "lecp", "share", "cpanel-plugin", "install.json")))
        self.assertEqual(stat.S_IMODE(os.stat(self.path("var", "lib", "lecp")).st_mode), 0o700)
        with open(self.path("etc", "lecp", "lecp.toml")) as f:
            self.assertIn("[acme]", f.read())
        unit = self.path("etc", "systemd", "system", "lecp.service")
        with open(unit) as f:
            self.assertIn("ExecStart=/opt/lecp/bin/twistd --nodaemon --pidfile= --logfile=/var/log/lecp/lecp.log lecp", f.read())
        if shutil.which("systemd-analyze"):
            # Verified on this host, with the program paths pointing into the fake root.
            folder = tempfile.mkdtemp(prefix="lecp-unit-")
            self.addCleanup(shutil.rmtree, folder, True)
            with open(unit) as f, open(os.path.join(folder, "lecp.service"), "w") as copy:
                copy.write(f.read().replace("/opt/lecp/", f"{self.root}/opt/lecp/"))
            verified = subprocess.run(["systemd-analyze", "verify", os.path.join(folder, "lecp.service")],
                                      capture_output=True, text=True)
            self.assertEqual(verified.returncode, 0, verified.stdout + verified.stderr)
        self.assertTrue(os.path.exists(self.path("etc", "logrotate.d", "lecp")))

        with open(self.path("etc", "chkserv.d", "lecp")) as f:
            driver = parse_chkservd_driver(f.read())
        self.assertEqual(driver, {"service": "lecp", "port": "8765", "send": "GET /alive HTTP/1.0", "expect": "HTTP/1.. 200",
                                  "restart": "/usr/bin/systemctl restart lecp.service", "proc": "x", "owner": "root"})
        self.assertTrue(self.probe_like_chkservd(driver))
        with open(self.path("var", "cpanel", "chkservd", "drivers", "lecp")) as f:
            self.assertEqual(parse_chkservd_driver(f.read()), driver)

        with open(self.path("etc", "lecp", "lecp.toml"), "a") as f:
            f.write("\n# kept by a second install\n")
        self.run_script("install.sh", "--python", "/usr/bin/python3")
        with open(self.path("etc", "chkserv.d", "chkservd.conf")) as f:
            self.assertEqual(f.read().splitlines().count("lecp:1"), 1)
        with open(self.path("etc", "lecp", "lecp.toml")) as f:
            self.assertIn("kept by a second install", f.read())

        self.run_script("uninstall.sh")
        for gone in (("opt", "lecp"), ("usr", "local", "sbin", "lecp"), ("etc", "systemd", "system", "lecp.service"), ("etc", "chkserv.d", "lecp"),
                     ("var", "cpanel", "chkservd", "drivers", "lecp"), ("etc", "logrotate.d", "lecp"),
                     ("usr", "local", "cpanel", "base", "frontend", "jupiter", "lecp")):
            self.assertFalse(os.path.lexists(self.path(*gone)), gone)
        with open(self.path("etc", "chkserv.d", "chkservd.conf")) as f:
            self.assertNotIn("lecp:1", f.read())
        self.assertTrue(os.path.exists(self.path("etc", "lecp", "lecp.toml")))
        self.assertTrue(os.path.isdir(self.path("var", "lib", "lecp")))
        self.assertIn("uninstall_plugin", " ".join(self.calls()))
        self.run_script("uninstall.sh", "--purge")
        self.assertFalse(os.path.exists(self.path("etc", "lecp")))

    test_install_twice_then_uninstall.timeout = 900

    def probe_like_chkservd(self, driver: dict) -> bool:
        """chkservd's probe (send, then read len(expect) bytes and match ^expect) against a real health endpoint."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            port = listener.getsockname()[1]
        script = (f"import sys; from twisted.internet import reactor; from twisted.web.server import Site; "
                  f"from twisted.internet.task import Clock; from lecp.daemon.health import HealthResource; "
                  f"reactor.listenTCP({port}, Site(HealthResource({{}}, Clock(), 0.0)), interface='127.0.0.1'); "
                  f"print('ready', flush=True); reactor.run()")
        server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            server.stdout.readline()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as probe:
                probe.sendall((driver["send"] + "\r\n\r\n\r\n").encode())
                reply = b""
                while len(reply) < len(driver["expect"]):
                    chunk = probe.recv(len(driver["expect"]) - len(reply))
                    if not chunk:
                        break
                    reply += chunk
            return re.match(driver["expect"], reply.decode("latin-1")) is not None
        finally:
            server.terminate()
            server.wait(10)
