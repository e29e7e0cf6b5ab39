"""
The privilege model with real Unix accounts made for the test (root needed, as in CI): the
worker runs as the user and its files belong to the user; a user who plants symlinks cannot make
the worker or root read or write through them; the worker refuses root.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

from lecp.cpanel import CPanel, UAPICommand
from lecp.saferead import UnsafePath, read_beneath
from lecp.store import DOCUMENT
from lecp.testing.pebble import PebbleSettings
from tests.integration.support import SystemTestCase


class PrivilegeTests(SystemTestCase):
    """Throwaway accounts on a real system, an emulated cPanel that knows them, and Pebble."""

    settings = PebbleSettings(nosleep=True)
    account_count = 2

    def setUp(self):
        super().setUp()
        self.write_config(self.pebble.directory_url, self.paths_section())

    async def test_worker_issues_as_the_user(self):
        """The worker's store, its folders and the challenge folders belong to the user; root reads the store safely."""
        vhost = f"{self.users[0]}.test"
        out, err, code = await self.run_worker({"job": "issue", "vhost": vhost, "names": [f"www.{vhost}"]})
        self.assertEqual(code, 0, err.decode()[-3000:])
        outcome = json.loads(out)
        self.assertEqual(outcome["outcome"], "issued", outcome)
        store_path = os.path.join(self.home, ".cpanel", "nvdata", DOCUMENT)
        for path in (store_path, os.path.dirname(store_path), os.path.dirname(os.path.dirname(store_path))):
            self.assertEqual(os.stat(path).st_uid, self.user.pw_uid, path)
        self.assertEqual(stat.S_IMODE(os.stat(store_path).st_mode), 0o600)
        challenges = os.path.join(self.server.account(self.users[0])["main_domain"]["documentroot"], ".well-known")
        self.assertEqual(os.stat(challenges).st_uid, self.user.pw_uid)
        document = json.loads(read_beneath(self.home, f".cpanel/nvdata/{DOCUMENT}", self.user.pw_uid))
        self.assertIn(vhost, document["certs"])
        hosts = await CPanel(UAPICommand(self.reactor, user=self.users[0], executable=self.server.path("bin", "uapi"))).installed_hosts()
        self.assertEqual([h.servername for h in hosts], [vhost])

    async def test_symlinked_nvdata_refused(self):
        """A user who points ~/.cpanel/nvdata at a root-owned folder gets a clear refusal; nothing is written there."""
        target = tempfile.mkdtemp(prefix="lecp-root-")
        self.addCleanup(shutil.rmtree, target, True)
        os.chmod(target, 0o777)  # even a writable root-owned folder must not be used
        os.makedirs(os.path.join(self.home, ".cpanel"), exist_ok=True)
        os.chown(os.path.join(self.home, ".cpanel"), self.user.pw_uid, self.user.pw_gid)
        nvdata = os.path.join(self.home, ".cpanel", "nvdata")
        if os.path.isdir(nvdata) and not os.path.islink(nvdata):
            shutil.rmtree(nvdata)
        os.symlink(target, nvdata)
        os.lchown(nvdata, self.user.pw_uid, self.user.pw_gid)
        out, err, code = await self.run_worker({"job": "issue", "vhost": f"{self.users[0]}.test"})
        outcome = json.loads(out)
        self.assertEqual((code, outcome["outcome"]), (1, "error"), err)
        self.assertIn("is a symlink or not a folder", outcome["message"])
        self.assertEqual(os.listdir(target), [])
        with self.assertRaises(UnsafePath):
            read_beneath(self.home, f".cpanel/nvdata/{DOCUMENT}", self.user.pw_uid)

    async def test_symlinked_well_known_refused(self):
        """A .well-known pointing at a root-owned folder: the pre-flight reports it and nothing is written there."""
        target = tempfile.mkdtemp(prefix="lecp-root-")
        self.addCleanup(shutil.rmtree, target, True)
        os.chmod(target, 0o777)
        docroot = self.server.account(self.users[0])["main_domain"]["documentroot"]
        os.symlink(target, os.path.join(docroot, ".well-known"))
        os.lchown(os.path.join(docroot, ".well-known"), self.user.pw_uid, self.user.pw_gid)
        out, err, code = await self.run_worker({"job": "issue", "vhost": f"{self.users[0]}.test"})
        outcome = json.loads(out)
        self.assertEqual(outcome["outcome"], "preflight_failed", outcome)
        self.assertIn("could not be written", outcome["problems"][0]["reason"])
        self.assertEqual(os.listdir(target), [])

    async def test_symlinked_document_refused_by_root_reader(self):
        """Root's reader refuses a store document that the user replaced with a link to a root-only file."""
        folder = os.path.join(self.home, ".cpanel", "nvdata")
        os.makedirs(folder, exist_ok=True)
        for path in (os.path.dirname(folder), folder):
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        os.symlink("/etc/shadow", os.path.join(folder, DOCUMENT))
        os.lchown(os.path.join(folder, DOCUMENT), self.user.pw_uid, self.user.pw_gid)
        with self.assertRaises(UnsafePath):
            read_beneath(self.home, f".cpanel/nvdata/{DOCUMENT}", self.user.pw_uid)

    async def test_user_cannot_act_on_another_account(self):
        """The first user's worker cannot issue for the second user's domain."""
        out, err, code = await self.run_worker({"job": "issue", "vhost": f"{self.users[1]}.test"})
        outcome = json.loads(out)
        self.assertEqual((code, outcome["outcome"], outcome["status"]), (2, "refused", 400), err)

    async def test_worker_refuses_root(self):
        """Started as root, the worker refuses to run."""
        done = Deferred()

        class Collect(ProcessProtocol):
            def __init__(self):
                self.out = []

            def outReceived(self, data):
                self.out.append(data)

            def processEnded(self, reason):
                done.callback((b"".join(self.out), reason.value.exitCode))

        self.reactor.spawnProcess(Collect(), sys.executable, [sys.executable, "-m", "lecp.worker"],
                                  env={"PATH": "/usr/bin:/bin"}, path="/")
        out, code = await done
        self.assertEqual(code, 1)
        self.assertIn("refuses to run as root", json.loads(out)["message"])

    async def test_orders_socket_acts_only_for_the_connecting_account(self):
        """
        A user who writes another account's name and website to the daemon's socket gets the
        daemon to look at their own deferred orders only: the account comes from SO_PEERCRED.
        """
        import pwd

        from lecp.config import Config
        from lecp.daemon.orders import OrdersService
        from lecp.daemon.state import State
        from lecp.outcome import Outcome
        from lecp.store import Document, PendingOrder, Store
        from lecp.tap import Settings

        victim = pwd.getpwnam(self.users[1])
        victim_home = self.server.account(self.users[1])["home"]
        victim_store = Store(victim_home, uid=victim.pw_uid)
        order = PendingOrder(f"{self.users[1]}.test", "https://ca/order/1", "KEY", (f"{self.users[1]}.test",),
                             "ecdsa:p-256", "https://ca/dir", 0)
        document = Document()
        document.put_pending(order)
        os.makedirs(victim_store.folder, exist_ok=True)
        with open(victim_store.path, "wb") as f:
            f.write(document.serialise())
        for path in (os.path.join(victim_home, ".cpanel"), victim_store.folder, victim_store.path):
            os.chown(path, victim.pw_uid, victim.pw_gid)
        asked = []

        class Runner:
            async def run(self, user, job):
                asked.append((user, job))
                return Outcome("deferred", job["vhost"], "still pending")

            def stop(self):
                pass

        class Recorder:
            async def record(self, work, outcome):
                pass

        folder = tempfile.mkdtemp(prefix="lecp-sock-")
        self.addCleanup(shutil.rmtree, folder, True)
        os.chmod(folder, 0o755)
        config = Config(daemon_socket=os.path.join(folder, "lecp.sock"), state_dir=folder)
        accounts = {u: pwd.getpwnam(u) for u in self.users}
        service = OrdersService(self.reactor, Settings(config), state=State(os.path.join(folder, "state.db")),
                                runner=Runner(), recorder=Recorder(), reactor=self.reactor, passwd=lambda: accounts)
        service.startService()
        self.addCleanup(service.stopService)
        message = json.dumps({"pending": f"{self.users[1]}.test", "user": self.users[1], "uid": victim.pw_uid})
        script = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                  "s.sendall(sys.argv[2].encode() + b'\\n'); s.close()")
        done = Deferred()

        class Wait(ProcessProtocol):
            def processEnded(self, reason):
                done.callback(reason.value.exitCode)

        self.reactor.spawnProcess(Wait(), "/usr/bin/python3", ["/usr/bin/python3", "-c", script, config.daemon_socket, message],
                                  env={}, path="/", uid=self.user.pw_uid, gid=self.user.pw_gid)
        self.assertEqual(await done, 0)
        from twisted.internet.task import deferLater

        for _ in range(40):  # the signal is handled as the connection arrives
            if service.signals:
                break
            await deferLater(self.reactor, 0.05, lambda: None)
        self.assertEqual(service.signals, 1)
        self.assertEqual(asked, [])  # the attacker has no deferred order; the victim's was not touched
        self.assertEqual(list(victim_store.read().pending()), [f"{self.users[1]}.test"])

    async def test_another_accounts_keys_are_out_of_reach(self):
        """A worker started with another account's HOME still works on its own store; the other store stays unreadable."""
        victim_home = self.server.account(self.users[1])["home"]
        out, err, code = await self.run_worker({"job": "issue", "vhost": f"{self.users[1]}.test"},
                                               user=__import__("pwd").getpwnam(self.users[1]))
        self.assertEqual(json.loads(out)["outcome"], "issued", err.decode()[-2000:])
        victim_store = os.path.join(victim_home, ".cpanel", "nvdata", DOCUMENT)
        with open(victim_store, "rb") as f:
            before = f.read()
        import pwd

        attacker = pwd.getpwnam(self.users[0])
        done = Deferred()
        output = []

        class Collect(ProcessProtocol):
            def outReceived(self, data):
                output.append(data)

            errReceived = outReceived

            def processEnded(self, reason):
                done.callback(reason.value.exitCode)

        env = {"HOME": victim_home, "PATH": "/usr/bin:/bin", "LECP_CONFIG": self.config_path, "LANG": "C.UTF-8",
               "PYTHONPATH": ":".join(self.python_path)}
        probe = f"open({victim_store!r}, 'rb').read()"
        self.reactor.spawnProcess(Collect(), self.python, [self.python, "-c", probe], env=env, path="/",
                                  uid=attacker.pw_uid, gid=attacker.pw_gid)
        self.assertNotEqual(await done, 0)
        self.assertIn(b"PermissionError", b"".join(output))
        env_worker = dict(env)
        out, err, code = await self.run_worker_with_env({"job": "issue", "vhost": f"{self.users[0]}.test"}, attacker, env_worker)
        self.assertEqual(json.loads(out)["outcome"], "issued", err.decode()[-2000:])
        self.assertTrue(os.path.exists(os.path.join(self.home, ".cpanel", "nvdata", DOCUMENT)))  # the worker's own home
        with open(victim_store, "rb") as f:
            self.assertEqual(f.read(), before)

    async def test_hard_link_to_a_root_file_refused(self):
        """A store that is a hard link to a file the account does not own is refused by root's reader."""
        folder = os.path.join(self.home, ".cpanel", "nvdata")
        os.makedirs(folder, exist_ok=True)
        for path in (os.path.dirname(folder), folder):
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        secret = os.path.join(self.base, "root-secret")
        with open(secret, "w") as f:
            f.write('{"certs": {}}')
        os.link(secret, os.path.join(folder, DOCUMENT))
        with self.assertRaises(UnsafePath):
            read_beneath(self.home, f".cpanel/nvdata/{DOCUMENT}", self.user.pw_uid)

    async def test_batch_renews_several_websites_in_one_worker(self):
        """The daemon's runner renews two websites of an account in one worker, as the user, each outcome its own."""
        import pwd

        from lecp.daemon.workers import WorkerRunner
        from lecp.testing.python import write_launcher

        vhosts = [f"{self.users[0]}.test", f"blog.{self.users[0]}.test"]
        for vhost in vhosts:
            out, err, code = await self.run_worker({"job": "issue", "vhost": vhost})
            self.assertEqual(json.loads(out)["outcome"], "issued", err.decode()[-2000:])
        before = {v: r.cert_pem for v, r in self.store_of(self.users[0]).certificates().items()}
        launcher = write_launcher(os.path.join(self.base, "launcher"), self.python, self.python_path)
        runner = WorkerRunner(self.reactor, self.config_path, python=launcher,
                              passwd={self.users[0]: pwd.getpwnam(self.users[0])})
        outcomes = await runner.run_batch(self.users[0], [{"job": "renew", "vhost": v} for v in vhosts]
                                          + [{"job": "renew", "vhost": "nothing.test"}])
        self.assertEqual([o.kind for o in outcomes], ["issued", "issued", "failed"])
        self.assertEqual(outcomes[2].error_type, "refused")
        self.assertIn("no certificate for nothing.test", outcomes[2].message)
        self.assertEqual(runner.started, 1)
        after = self.store_of(self.users[0]).certificates()
        self.assertTrue(all(after[v].cert_pem != before[v] for v in vhosts))

    def store_of(self, user: str):
        import pwd

        from lecp.store import Store

        return Store(self.server.account(user)["home"], uid=pwd.getpwnam(user).pw_uid).read()
