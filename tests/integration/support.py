"""Shared set-up for integration tests: a real Pebble per test class and a webroot server per test."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid

from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from lecp.acme.client import ACMEClient
from lecp.acme.http import make_http_client, make_http_pool
from lecp.acme.webroot import WebrootResponder
from lecp.keys import generate_private_key
from lecp.testing.pebble import Pebble, PebbleSettings
from lecp.testing.webserver import listen_webroot


def fresh_names(count: int = 2) -> list[str]:
    """New names for each issuance, so no authorization or rate limit carries over."""
    base = f"t{uuid.uuid4().hex[:12]}.example.com"
    return [base] + [f"{label}.{base}" for label in ("www", "mail", "shop")[: count - 1]]


class PebbleTestCase(TestCase):
    """
    Starts Pebble with C{settings} once for the class (failing loudly if Pebble is missing) and,
    for each test, serves a fresh webroot on Pebble's HTTP-01 port.
    """

    settings = PebbleSettings()
    serve_webroot = True  # False when the test serves Pebble's HTTP-01 port itself

    @classmethod
    def setUpClass(cls):
        cls._workdir = tempfile.TemporaryDirectory(prefix="lecp-pebble-")
        cls.pebble = Pebble(os.path.join(cls._workdir.name, "pebble"), cls.settings).start()

    @classmethod
    def tearDownClass(cls):
        cls.pebble.stop()
        cls._workdir.cleanup()

    def setUp(self):
        from twisted.internet import reactor

        self.reactor = reactor
        self.webroot = os.path.abspath(self.mktemp())
        os.makedirs(self.webroot)
        self.listening = listen_webroot(reactor, self.pebble.http_port, self.webroot) if self.serve_webroot else None
        self.pool = make_http_pool(reactor)
        self.http = make_http_client(reactor, self.pebble.ca_bundle, pool=self.pool)
        self.responder = WebrootResponder(lambda name: self.webroot)

    def tearDown(self):
        stopping = [self.pool.closeCachedConnections()]
        if self.listening is not None:
            stopping.append(self.listening.stopListening())
        return gatherResults(stopping)

    def make_client(self, account_key=None, account_url=None) -> ACMEClient:
        return ACMEClient.create(
            self.http, self.reactor, self.pebble.directory_url,
            account_key or generate_private_key("ecdsa:p-256"), account_url=account_url,
        )


_portable = []


def portable_python() -> tuple[str, list[str]]:
    """A Python every test account can run, with lecp (made once per test run; see L{lecp.testing.python})."""
    if not _portable:
        from lecp.testing.python import world_readable_python

        base = tempfile.mkdtemp(prefix="lecp-pyenv-")
        atexit.register(shutil.rmtree, base, True)
        _portable.extend(world_readable_python(base))
    return _portable[0], _portable[1]


class SystemTestCase(PebbleTestCase):
    """
    Throwaway Unix accounts (root needed, as in CI) known to an emulated cPanel, whose web server
    answers Pebble's HTTP-01 checks, with a world-readable configuration for lecp's workers.
    """

    serve_webroot = False
    account_count = 1

    def setUp(self):
        import pwd
        import secrets
        import subprocess

        from lecp.testing.cpanel.adminbin import listen_adminbin
        from lecp.testing.cpanel.build import create_server
        from lecp.testing.cpanel.cli import write_scripts
        from lecp.testing.cpanel.web import listen_web

        if os.geteuid() != 0:
            self.skipTest("needs root to create throwaway Unix accounts (CI runs as root)")
        super().setUp()
        self.base = tempfile.mkdtemp(prefix="lecp-sys-")
        self.addCleanup(shutil.rmtree, self.base, True)  # cleanups run even when setUp fails part-way
        os.chmod(self.base, 0o755)
        self.users = []
        for _ in range(self.account_count):
            name = "lt" + secrets.token_hex(4)
            subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", "-d",
                            os.path.join(self.base, "cpanel", "home", name), name], check=True)
            self.addCleanup(subprocess.run, ["userdel", name], check=False, capture_output=True)
            self.users.append(name)
        self.server = create_server(os.path.join(self.base, "cpanel"), {
            "hostname": "server.lecp.test", "self_signed_key_type": "ecdsa:p-256",
            "accounts": [{"user": u, "domain": f"{u}.test", "sub": [f"blog.{u}.test"]} for u in self.users]})
        self.python, self.python_path = portable_python()
        write_scripts(self.server.root, self.python, self.python_path)
        for folder in (self.server.root, self.server.path("bin")):
            os.chmod(folder, 0o755)
        self.user = pwd.getpwnam(self.users[0])
        self.home = self.server.account(self.users[0])["home"]
        self.ports = [listen_web(self.reactor, self.pebble.http_port, self.server), listen_adminbin(self.reactor, self.server)]
        self.ca_bundle = os.path.join(self.base, "pebble-ca.pem")
        shutil.copy(self.pebble.ca_bundle, self.ca_bundle)
        os.chmod(self.ca_bundle, 0o644)

    def write_config(self, directory: str, extra: str = "") -> str:
        """A world-readable lecp.toml for this system."""
        path = os.path.join(self.base, "lecp.toml")
        with open(path, "w") as f:
            f.write(f'[acme]\ndirectory = "{directory}"\nca_bundle = "{self.ca_bundle}"\n'
                    f'[certificates]\nkey_type = "ecdsa:p-256"\npage_deadline = 3\n'
                    f'[preflight]\nport = {self.pebble.http_port}\nresolve = "dns:127.0.0.1:{self.pebble.dns_port}"\n'
                    f'{extra}')
        os.chmod(path, 0o644)
        self.config_path = path
        return path

    def paths_section(self, **more) -> str:
        values = {"uapi": self.server.path("bin", "uapi"), "whmapi1": self.server.path("bin", "whmapi1"),
                  "daemon_socket": os.path.join(self.base, "run", "lecp.sock"), "state_dir": os.path.join(self.base, "state"),
                  "apache_tls": self.server.path("var", "cpanel", "ssl", "apache_tls"),
                  "userdatadomains": self.server.path("etc", "userdatadomains.json"), "worker_python": self.python, **more}
        return "[paths]\n" + "".join(f'{k} = "{v}"\n' for k, v in values.items())

    def tearDown(self):
        stopping = gatherResults([p.stopListening() for p in getattr(self, "ports", [])])
        return stopping.addCallback(lambda _: super(SystemTestCase, self).tearDown())

    def run_worker(self, job: dict, user=None):
        """lecp.worker as the daemon starts it: the user's ids, a clean environment; fires (out, err, code)."""
        user = user or self.user
        env = {"HOME": user.pw_dir, "PATH": "/usr/bin:/bin", "LECP_CONFIG": self.config_path, "LANG": "C.UTF-8",
               "PYTHONPATH": ":".join(self.python_path)}
        return self.run_worker_with_env(job, user, env)

    def run_worker_with_env(self, job: dict, user, env: dict):
        """L{run_worker} with a given environment (a hostile one, say)."""
        import json

        from twisted.internet.defer import Deferred
        from twisted.internet.protocol import ProcessProtocol

        class Collect(ProcessProtocol):
            def __init__(self, done):
                self.done, self.out, self.err = done, [], []

            def connectionMade(self):
                self.transport.write(json.dumps(job).encode())
                self.transport.closeStdin()

            def outReceived(self, data):
                self.out.append(data)

            def errReceived(self, data):
                self.err.append(data)

            def processEnded(self, reason):
                self.done.callback((b"".join(self.out), b"".join(self.err), reason.value.exitCode))

        done = Deferred()
        self.reactor.spawnProcess(Collect(done), self.python, [self.python, "-m", "lecp.worker"], env=env, path="/",
                                  uid=user.pw_uid, gid=user.pw_gid)
        return done


class PageSession:
    """lecp's page on the emulated cPanel front, logged in as a real account (see L{open_page})."""

    def __init__(self, http, page: str, cookie: str, front):
        self.http, self.page, self.cookie, self.front = http, page, cookie, front

    async def api(self, function: str, document: dict | None = None) -> tuple[int, dict]:
        """A JSON API call: POST when C{document} is given, else GET."""
        import json

        url = f"{self.page}?api_version=1&api_function={function}"
        headers = {"Cookie": self.cookie, "Accept": "application/json", "Content-Type": "application/json"}
        if document is None:
            response = await self.http.get(url, headers=headers)
        else:
            response = await self.http.post(url, data=json.dumps(document).encode(), headers=headers)
        body = await response.content()
        try:
            return response.code, json.loads(body)
        except ValueError:
            return response.code, {"errors": [body.decode("utf-8", "replace")[-500:]]}

    async def form(self, fields: dict) -> tuple[int, str]:
        """A form POST, with the CSRF token the page hands out."""
        _, listing = await self.api("list-certificates")
        response = await self.http.post(self.page, data={**fields, "csrf_token": listing["data"]["csrf_token"]},
                                        headers={"Cookie": self.cookie})
        return response.code, (await response.content()).decode()


async def open_page(test: SystemTestCase, python: str) -> PageSession:
    """Install the page (run by C{python}), serve the cpsrvd front, and log in as the test's first account."""
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    from lecp.sandbox import _install_page
    from lecp.testing.cpanel.build import DEFAULT_PASSWORD
    from lecp.testing.cpanel.cpsrvd import listen_front

    _install_page(test.server, python)
    front_port = listen_front(test.reactor, 0, test.server, {"LECP_CONFIG": test.config_path})
    test.addCleanup(front_port.stopListening)
    base = f"http://127.0.0.1:{front_port.getHost().port}"
    pool = HTTPConnectionPool(test.reactor, persistent=False)
    test.addCleanup(pool.closeCachedConnections)
    http = HTTPClient(Agent(test.reactor, pool=pool))
    response = await http.post(f"{base}/login/", data={"user": test.users[0], "pass": DEFAULT_PASSWORD},
                               allow_redirects=False)
    await response.content()
    cookie = response.headers.getRawHeaders("set-cookie")[0].split(";")[0]
    session = response.headers.getRawHeaders("location")[0].split("/frontend/")[0]
    return PageSession(http, f"{base}{session}/frontend/jupiter/lecp/lecp.live.cgi", cookie,
                       front_port.port.factory.resource)
