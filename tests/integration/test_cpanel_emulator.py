"""
The cPanel adapter against the emulator through the real transports: the uapi and whmapi1
commands as processes, the LiveAPI unix socket, the vhost web server and the cpsrvd front.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from http.cookies import SimpleCookie

from treq.client import HTTPClient
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from lecp.cpanel import CPanel, CPanelError, LiveAPI, UAPICommand, WHM, WHMAPICommand
from lecp.cpanel.blocking import BlockingLiveAPI, run_now
from lecp.keys import certificate_to_pem, generate_private_key, make_self_signed_certificate, private_key_to_pem
from lecp.testing.cpanel.adminbin import listen_adminbin
from lecp.testing.cpanel.build import DEFAULT_PASSWORD, create_server
from lecp.testing.cpanel.cpsrvd import listen_front, theme_root
from lecp.testing.cpanel.liveapi import listen_liveapi
from lecp.testing.cpanel.web import listen_web

SPEC = {
    "hostname": "server.lecp.test",
    "self_signed_key_type": "ecdsa:p-256",
    "accounts": [
        {"user": "alice", "domain": "alice.test", "addon": ["shop.test"], "sub": ["blog.alice.test"], "parked": ["alias.test"]},
        {"user": "bob", "domain": "bob.test", "self_signed": ["bob.test"]},
    ],
}

PROBE_CGI = """#!{python}
import json, os, sys
from twisted.internet import defer, task
from lecp.cpanel import CPanel, LiveAPI

async def main(reactor):
    live = LiveAPI.from_environment(reactor)
    hosts = await CPanel(live).virtual_hosts()
    live.close()
    names = ("REMOTE_USER", "HOME", "cp_security_token", "REQUEST_METHOD", "QUERY_STRING", "CONTENT_TYPE",
             "CPANEL", "SCRIPT_NAME", "HTTP_X_PROBE")
    sys.stdout.write("Status: 200 OK\\r\\nContent-Type: application/json\\r\\n\\r\\n")
    sys.stdout.write(json.dumps({{"env": {{n: os.environ.get(n) for n in names}}, "hosts": [h.name for h in hosts],
                                 "body": sys.stdin.read()}}))

task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
"""


def self_signed(names):
    key = generate_private_key("ecdsa:p-256")
    return certificate_to_pem(make_self_signed_certificate(key, names)), private_key_to_pem(key).decode()


class EmulatorTests(TestCase):
    """An emulated server with alice and bob, served for the test."""

    def setUp(self):
        from twisted.internet import reactor

        self.reactor = reactor
        self.server = create_server(os.path.abspath(self.mktemp()), SPEC)
        self.sockets = tempfile.mkdtemp(prefix="lecp-test-")  # unix socket paths must stay short
        self.socket_path = os.path.join(self.sockets, "alice.sock")
        self.listening = [
            listen_web(reactor, 0, self.server),
            listen_liveapi(reactor, self.socket_path, self.server, "alice"),
            listen_front(reactor, 0, self.server),
            listen_adminbin(reactor, self.server),
        ]
        self.web_port = self.listening[0].getHost().port
        self.front_port = self.listening[2].getHost().port
        self.live = LiveAPI(reactor, self.socket_path)
        self.uapi = UAPICommand(reactor, user="alice", executable=self.server.path("bin", "uapi"))
        self.whm = WHM(WHMAPICommand(reactor, executable=self.server.path("bin", "whmapi1")))
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)
        self.http = HTTPClient(self.agent)

    def tearDown(self):
        self.live.close()
        stopped = gatherResults([p.stopListening() for p in self.listening] + [self.pool.closeCachedConnections()])
        return stopped.addBoth(lambda result: (shutil.rmtree(self.sockets, True), result)[1])

    async def test_the_loop(self):
        """
        alice's domains through each transport; a self-signed certificate installed through uapi
        is seen installed through LiveAPI; a challenge file in her vhost's root is served by Host.
        """
        through_live = await CPanel(self.live).virtual_hosts()
        through_uapi = await CPanel(self.uapi).virtual_hosts()
        self.assertEqual(through_live, through_uapi)
        blocking = BlockingLiveAPI(self.socket_path)
        self.addCleanup(blocking.close)
        through_blocking = await self.reactor_thread(lambda: run_now(CPanel(blocking).virtual_hosts()))
        self.assertEqual(through_blocking, through_live)
        self.assertEqual([h.name for h in through_live], ["alice.test", "shop.test", "blog.alice.test"])
        accounts = await self.whm.accounts()
        self.assertEqual([a.user for a in accounts], ["alice", "bob"])

        cert, key = self_signed(["alice.test", "www.alice.test"])
        installed = await CPanel(self.uapi).install_ssl("alice.test", cert, key)
        self.assertIn("alice.test", installed.working_domains)
        hosts = await CPanel(self.live).installed_hosts()
        self.assertEqual([(h.servername, h.certificate.id) for h in hosts], [("alice.test", installed.cert_id)])

        folder = os.path.join(through_live[0].document_root, ".well-known", "acme-challenge")
        os.makedirs(folder)
        with open(os.path.join(folder, "x"), "w") as f:
            f.write("token.thumbprint")
        url = f"http://127.0.0.1:{self.web_port}/.well-known/acme-challenge/x"
        response = await self.http.get(url, headers={"Host": f"www.alice.test:{self.web_port}"})
        self.assertEqual((response.code, await response.text()), (200, "token.thumbprint"))
        for other in ("shop.test", "unknown.test"):
            response = await self.http.get(url, headers={"Host": other})
            self.assertEqual(response.code, 404)
            await response.content()

    def reactor_thread(self, function):
        """Run blocking code off the reactor thread (the socket server answers on the reactor)."""
        from twisted.internet.threads import deferToThread

        return deferToThread(function)

    async def test_user_cannot_reach_another_account(self):
        """Through alice's LiveAPI socket and uapi, bob's domains cannot be read, installed on or removed."""
        for transport in (self.live, self.uapi):
            alice = CPanel(transport)
            cert, key = self_signed(["bob.test"])
            with self.assertRaises(CPanelError) as caught:
                await alice.install_ssl("bob.test", cert, key)
            self.assertIn("You do not control the domain “bob.test”.", str(caught.exception))
            with self.assertRaises(CPanelError):
                await alice.delete_ssl("bob.test")
            answer = await transport.call("DomainInfo", "single_domain_data", {"domain": "bob.test"})
            self.assertEqual(answer["result"]["errors"], ["Unable to locate the domain: bob.test"])
            self.assertEqual(await alice.installed_hosts(), [])
        self.assertEqual(self.server.installed("bob.test")["user"], "bob")

    async def test_command_line_identity(self):
        """uapi as root needs --user; a non-cPanel Unix user is refused, and only root may use --user."""
        from twisted.internet.utils import getProcessOutputAndValue

        uapi = self.server.path("bin", "uapi")
        folder = self.server.root
        while folder != os.getcwd() and folder != "/":  # trial's mktemp folders are 0700: let nobody reach bin/
            os.chmod(folder, 0o755)
            folder = os.path.dirname(folder)
        out, err, code = await getProcessOutputAndValue(uapi, ["--output=json", "DomainInfo", "list_domains"], env={})
        self.assertEqual((code, err.strip()), (1, b"uapi: --user is required when running as root"))
        setpriv = ["--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, uapi, "--output=json"]
        out, err, code = await getProcessOutputAndValue("/usr/bin/setpriv", setpriv + ["DomainInfo", "list_domains"], env={})
        self.assertEqual(code, 1, err)
        self.assertIn("“nobody” is not a cPanel user on this server".encode(), err)
        out, err, code = await getProcessOutputAndValue("/usr/bin/setpriv", setpriv + ["--user=alice", "DomainInfo", "list_domains"], env={})
        self.assertEqual((code, err.strip()), (1, b"uapi: only root may act as another user with --user"))
        out, err, code = await getProcessOutputAndValue("/usr/bin/setpriv", setpriv[:4] + [self.server.path("bin", "whmapi1"), "listaccts"], env={})
        self.assertEqual((code, err.strip()), (1, b"whmapi1: this program must be run as root"))

    async def test_uapi_cli_encoding(self):
        """Values with +, & and newlines survive the CLI's percent-encoding both ways."""
        cert, key = self_signed(["shop.test", "www.shop.test"])
        result = await CPanel(self.uapi).install_ssl("shop.test", cert, key)
        [host] = [h for h in await CPanel(self.uapi).installed_hosts() if h.servername == "shop.alice.test"]
        self.assertEqual(host.certificate_pem.strip(), cert.strip())
        self.assertEqual(host.certificate.id, result.cert_id)

    async def _login(self):
        response = await self.http.post(
            f"http://127.0.0.1:{self.front_port}/login/", data={"user": "alice", "pass": DEFAULT_PASSWORD}, allow_redirects=False)
        await response.content()
        self.assertEqual(response.code, 302)
        cookie = SimpleCookie(response.headers.getRawHeaders("set-cookie")[0])
        location = response.headers.getRawHeaders("location")[0]
        return f"cpsession={cookie['cpsession'].value}", location.split("/frontend/")[0]

    def _install_probe(self):
        folder = os.path.join(theme_root(self.server), "probe")
        os.makedirs(folder)
        path = os.path.join(folder, "index.live.cgi")
        with open(path, "w") as f:
            f.write(PROBE_CGI.format(python=sys.executable))
        os.chmod(path, 0o755)

    async def test_cpsrvd_runs_live_cgi_as_the_user(self):
        """After logging in, a .live.cgi runs with cPanel's environment, its POST body and a LiveAPI socket for alice."""
        self._install_probe()
        cookie, token = await self._login()
        url = f"http://127.0.0.1:{self.front_port}{token}/frontend/jupiter/probe/index.live.cgi?action=list"
        response = await self.http.post(url, data=b"a=1&b=2", headers={
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded", "X-Probe": "yes"})
        self.assertEqual(response.code, 200)
        result = json.loads(await response.text())
        self.assertEqual(result["hosts"], ["alice.test", "shop.test", "blog.alice.test"])
        self.assertEqual(result["body"], "a=1&b=2")
        env = result["env"]
        self.assertEqual((env["REMOTE_USER"], env["cp_security_token"], env["REQUEST_METHOD"], env["QUERY_STRING"]),
                         ("alice", token, "POST", "action=list"))
        self.assertEqual((env["CPANEL"], env["HTTP_X_PROBE"], env["HOME"]), ("active", "yes", self.server.account("alice")["home"]))

    async def test_cpsrvd_refuses_without_session(self):
        """No cookie, or a cookie with another session's token, gets the login page with 401."""
        self._install_probe()
        cookie, token = await self._login()
        base = f"http://127.0.0.1:{self.front_port}"
        for headers, path in (({}, token), ({"Cookie": cookie}, "/cpsess0000000000")):
            # A client of its own, so that no cookie is kept from the login.
            response = await HTTPClient(self.agent).get(f"{base}{path}/frontend/jupiter/probe/index.live.cgi", headers=headers)
            self.assertEqual(response.code, 401)
            self.assertIn(b"Log in again", await response.content())
        bad = await self.http.post(f"{base}/login/", data={"user": "alice", "pass": "wrong"}, allow_redirects=False)
        self.assertEqual(bad.code, 401)
        await bad.content()

    async def test_one_time_login_url(self):
        """A create_user_session URL logs in once; the same URL a second time is refused."""
        session = await self.whm.create_user_session("alice")
        first = await self.http.get(session.url, allow_redirects=False)
        await first.content()
        self.assertEqual(first.code, 302)
        self.assertTrue(first.headers.getRawHeaders("location")[0].startswith(f"{session.security_token}/frontend/jupiter/"))
        second = await self.http.get(session.url, allow_redirects=False)
        await second.content()
        self.assertEqual(second.code, 401)
