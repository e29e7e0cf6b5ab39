"""
The cPanel page through the real CGI process, run by the emulator's cpsrvd front for a logged-in
user, with Pebble behind it: the home page, one-click issuance, the JSON API, and bad input.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from http.cookies import SimpleCookie
from urllib.parse import urlencode

from treq.client import HTTPClient
from twisted.internet.defer import gatherResults
from twisted.web.client import Agent, HTTPConnectionPool

from lecp.store import Store
from lecp.testing.cpanel.build import DEFAULT_PASSWORD, create_server
from lecp.testing.cpanel.cpsrvd import listen_front, theme_root
from lecp.testing.cpanel.web import listen_web
from lecp.testing.pebble import PebbleSettings
from tests.integration.support import PebbleTestCase

CGI = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "cgi")
SPEC = {"hostname": "server.lecp.test", "self_signed_key_type": "ecdsa:p-256", "accounts": [
    {"user": "alice", "domain": "alice.test", "sub": ["blog.alice.test"], "parked": ["alias.test"]},
    {"user": "bob", "domain": "bob.test"}]}


def install_plugin(server) -> None:
    """What the installer does on a real server: the page's files in the theme, run by lecp's Python."""
    folder = os.path.join(theme_root(server), "lecp")
    os.makedirs(folder)
    for name in ("install.json", "lecp.svg"):
        shutil.copy(os.path.join(CGI, name), folder)
    with open(os.path.join(CGI, "lecp.live.cgi")) as f:
        source = f.read().split("\n", 1)[1]
    with open(os.path.join(folder, "lecp.live.cgi"), "w") as f:
        f.write(f"#!{sys.executable}\n{source}")
    os.chmod(os.path.join(folder, "lecp.live.cgi"), 0o755)


class PageFixture(PebbleTestCase):
    """The emulated cPanel with lecp's page installed, its front and web server, and Pebble."""

    settings = PebbleSettings(nosleep=True)
    serve_webroot = False

    def setUp(self):
        super().setUp()
        self.server = create_server(os.path.abspath(self.mktemp()), SPEC)
        install_plugin(self.server)
        config = os.path.abspath(self.mktemp())
        with open(config, "w") as f:
            f.write(f'[acme]\ndirectory = "{self.pebble.directory_url}"\nstaging_directory = "{self.pebble.directory_url}"\n'
                    f'ca_bundle = "{self.pebble.ca_bundle}"\n[certificates]\nkey_type = "ecdsa:p-256"\n'
                    f'key_types = ["rsa:2048", "ecdsa:p-256"]\n'
                    f'[preflight]\nport = {self.pebble.http_port}\nresolve = "dns:127.0.0.1:{self.pebble.dns_port}"\n'
                    f'[paths]\ndaemon_socket = "{config}.sock"\n')
        self.ports = [listen_web(self.reactor, self.pebble.http_port, self.server),
                      listen_front(self.reactor, 0, self.server, {"LECP_CONFIG": config})]
        self.front = f"http://127.0.0.1:{self.ports[1].getHost().port}"
        self.web_pool = HTTPConnectionPool(self.reactor, persistent=False)
        self.agent = Agent(self.reactor, pool=self.web_pool)
        self.home = self.server.account("alice")["home"]

    def tearDown(self):
        stopped = gatherResults([p.stopListening() for p in self.ports] + [self.web_pool.closeCachedConnections()])
        return stopped.addCallback(lambda _: super(PageFixture, self).tearDown())

    async def login(self, user: str = "alice"):
        http = HTTPClient(self.agent)
        response = await http.post(f"{self.front}/login/", data={"user": user, "pass": DEFAULT_PASSWORD},
                                   allow_redirects=False)
        await response.content()
        cookie = SimpleCookie(response.headers.getRawHeaders("set-cookie")[0])["cpsession"].value
        token = response.headers.getRawHeaders("location")[0].split("/frontend/")[0]
        self.page_url = f"{self.front}{token}/frontend/jupiter/lecp/lecp.live.cgi"
        self.cookie = f"cpsession={cookie}"

    async def get(self, query="", accept="text/html"):
        response = await HTTPClient(self.agent).get(f"{self.page_url}{'?' + query if query else ''}",
                                                    headers={"Cookie": self.cookie, "Accept": accept})
        return response.code, (await response.content()).decode()

    async def post(self, fields: dict | None = None, query="", body=None, content_type="application/x-www-form-urlencoded",
                   accept="text/html"):
        data = body if body is not None else urlencode(fields or {}, doseq=True).encode()
        response = await HTTPClient(self.agent).post(f"{self.page_url}{'?' + query if query else ''}", data=data,
                                                     headers={"Cookie": self.cookie, "Content-Type": content_type,
                                                              "Accept": accept})
        return response.code, (await response.content()).decode()

    async def token(self, vhost: str = "alice.test"):
        code, body = await self.get(f"action=issue&vhost={vhost}")
        return re.search(r'name="csrf_token" value="([0-9a-f]+)"', body).group(1)



class PageTests(PageFixture):
    """alice logged in to the emulated cPanel, using lecp's page."""

    async def test_home_lists_every_website(self):
        """The home page shows each website with its status in words and a button to secure it."""
        await self.login()
        code, body = await self.get()
        self.assertEqual(code, 200)
        self.assertIn("Let's Encrypt SSL", body)
        self.assertIn('id="site-alice.test"', body)
        self.assertIn('id="site-blog.alice.test"', body)
        self.assertIn("Not secured", body)
        self.assertIn("Secure this site", body)
        self.assertNotIn("bob.test", body)
        self.assertIn("cp-emulated-header", body)

    async def test_one_click_issuance(self):
        """The issue form pre-checks www and mail; posting it secures the site, and the home page says so."""
        await self.login()
        code, form = await self.get("action=issue&vhost=alice.test")
        self.assertEqual(code, 200)
        self.assertRegex(form, r'value="www\.alice\.test" id="name-www\.alice\.test" checked')
        self.assertRegex(form, r'value="mail\.alice\.test" id="name-mail\.alice\.test" checked')
        self.assertNotRegex(form, r'value="alias\.test" id="name-alias\.test" checked')
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form).group(1)
        code, body = await self.post({"action": "issue", "vhost": "alice.test", "csrf_token": token,
                                      "names": ["alice.test", "www.alice.test", "mail.alice.test"], "key_type": "ecdsa:p-256"})
        self.assertEqual(code, 200, body)
        self.assertIn("Secured", body)
        record = Store(self.home).read().certificate("alice.test")
        self.assertEqual(record.names, ["alice.test", "www.alice.test", "mail.alice.test"])
        self.assertEqual(self.server.installed("alice.test")["cert_id"], record.cert_id)
        code, home = await self.get()
        self.assertIn("Secured until", home)
        self.assertIn("(issued by Pebble Intermediate CA", home)
        self.assertIn("Renews automatically around", home)

    async def test_csrf(self):
        """A POST without the token, or with a wrong one, is refused with 403 and changes nothing."""
        await self.login()
        await self.token()
        for token in (None, "0" * 64):
            fields = {"action": "issue", "vhost": "alice.test", "names": ["alice.test"]}
            if token:
                fields["csrf_token"] = token
            code, body = await self.post(fields)
            self.assertEqual(code, 403)
            self.assertIn("security token", body)
        self.assertEqual(Store(self.home).read().certificates(), {})

    async def test_bad_input(self):
        """Each bad input gets its status and a message that says what was wrong."""
        await self.login()
        token = await self.token()
        cases = [
            ({"action": "issue", "vhost": "bob.test", "names": ["bob.test"]}, 400, "bob.test is not a website of this account"),
            ({"action": "issue", "vhost": "alice.test", "names": ["bob.test"]}, 400, "it is not a domain of this account"),
            ({"action": "issue", "vhost": "alice.test", "key_type": "rsa:4096"}, 400, "rsa:4096 is not offered"),
            ({"action": "issue", "vhost": "alice.test", "names": ["*.alice.test"]}, 400, "wildcard"),
            ({"action": "frobnicate"}, 404, "no action called"),
        ]
        for fields, status, text in cases:
            code, body = await self.post({**fields, "csrf_token": token})
            self.assertEqual(code, status, (fields, body[-500:]))
            self.assertIn(text, body.replace("&#x27;", "'"))
        code, body = await self.get("action=nothing")
        self.assertEqual(code, 404)
        code, body = await self.post(body=b"x" * (1024 * 1024 + 1))
        self.assertEqual(code, 413)
        code, body = await self.post(body=b"{not json", content_type="application/json", query="api_version=1&api_function=issue-certificate",
                                     accept="application/json")
        self.assertEqual(code, 400)
        self.assertIn("does not parse", json.loads(body)["errors"][0])
        code, body = await self.post(body=b"\xff\xfe", query="action=issue")
        self.assertEqual(code, 400)
        self.assertIn("UTF-8", body)
        self.assertEqual(Store(self.home).read().certificates(), {})

    async def test_failure_shown_on_the_home_page(self):
        """A website whose issuance failed says so on the home page, with what to do; upper case and a trailing dot are fine."""
        await self.login()
        token = await self.token()
        self.pebble.set_ipv4("www.blog.alice.test", "127.0.0.2")
        code, body = await self.post({"action": "issue", "vhost": "Blog.Alice.Test.", "csrf_token": token,
                                      "names": ["WWW.blog.alice.test."]})
        self.assertEqual(code, 200)
        self.assertIn("Some names need attention", body)
        self.assertIn("www.blog.alice.test", body)
        self.assertIn("Issue for the names that passed", body)
        code, home = await self.get()
        self.assertIn("Failed: These names do not reach this server yet: www.blog.alice.test.", home)
        self.assertIn("Try again", home)

    async def test_second_issuance_while_one_runs(self):
        """While an issuance runs for a website, a second one is refused with 409."""
        await self.login()
        token = await self.token()
        with Store(self.home).update() as document:
            document.start_job("alice.test", "issuance", __import__("time").time())
        code, body = await self.post({"action": "issue", "vhost": "alice.test", "csrf_token": token})
        self.assertEqual(code, 409)
        self.assertIn("already running", body)

    async def test_get_changes_nothing(self):
        """GET of the remove page only asks for confirmation."""
        await self.login()
        token = await self.token()
        await self.post({"action": "issue", "vhost": "blog.alice.test", "csrf_token": token})
        code, body = await self.get("action=remove&vhost=blog.alice.test")
        self.assertEqual(code, 200)
        self.assertIn("Remove the certificate of blog.alice.test?", body)
        self.assertIsNotNone(Store(self.home).read().certificate("blog.alice.test"))
        code, body = await self.post({"action": "remove", "vhost": "blog.alice.test", "csrf_token": token})
        self.assertIn("was removed", body)
        self.assertIsNone(Store(self.home).read().certificate("blog.alice.test"))

    async def test_json_api(self):
        """The original plugin's API: issue-certificate with JSON, list-certificates, and its errors."""
        await self.login()
        api = "api_version=1&api_function="
        request = json.dumps({"virtual_host": "alice.test", "dns_identifiers": ["alice.test", "www.alice.test"]}).encode()
        code, body = await self.post(body=request, content_type="application/json", query=api + "issue-certificate",
                                     accept="application/json")
        answer = json.loads(body)
        self.assertEqual((code, answer["success"], answer["errors"]), (200, True, None), body)
        code, body = await self.get(api + "list-certificates", accept="application/json")
        listed = json.loads(body)["data"]["virtual_hosts"]["alice.test"]
        self.assertEqual(listed["dns_identifiers"], ["alice.test", "www.alice.test"])
        self.assertIn("PRIVATE KEY", listed["privkey_pem"])
        foreign = json.dumps({"virtual_host": "alice.test", "dns_identifiers": ["bob.test"]}).encode()
        code, body = await self.post(body=foreign, content_type="application/json", query=api + "issue-certificate",
                                     accept="application/json")
        self.assertEqual((code, json.loads(body)["success"]), (400, False))
        self.assertIn("bob.test", json.loads(body)["errors"][0])
        code, body = await self.get(api + "nope", accept="application/json")
        self.assertEqual((code, json.loads(body)["errors"]), (404, ["That API endpoint does not exist"]))
        code, body = await self.get(api + "remove-certificate", accept="application/json")
        self.assertEqual(code, 405)
        form_post = urlencode({"virtual_host": "alice.test"}).encode()
        code, body = await self.post(body=form_post, query=api + "remove-certificate", accept="application/json")
        self.assertEqual(code, 403)
        self.assertIsNotNone(Store(self.home).read().certificate("alice.test"))

    test_one_click_issuance.timeout = 180
    test_json_api.timeout = 180
