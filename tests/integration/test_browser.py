"""
A person's path through the page in a real browser: Debian's Chromium, headless, driven through
chromedriver's W3C WebDriver protocol. alice logs in through a one-time login URL, secures a
website from the home page, and sees it secured. Screenshots of the issue and home pages are kept
in tests/artifacts/.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time

from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater

from lecp.cpanel import WHM, WHMAPICommand
from lecp.testing.pebble import free_ports
from tests.integration.test_page import PageFixture

ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "artifacts")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"


class _Quiet(ProcessProtocol):
    def __init__(self):
        self.output = []

    def outReceived(self, data):
        self.output.append(data)

    errReceived = outReceived


class BrowserTests(PageFixture):
    """Headless Chromium against the emulated cPanel and lecp's page."""

    async def webdriver(self, method: str, path: str, body=None):
        from treq.client import HTTPClient

        url = f"http://127.0.0.1:{self.driver_port}{path}"
        response = await HTTPClient(self.agent).request(method, url, data=json.dumps(body).encode() if body is not None else None,
                                                        headers={"Content-Type": "application/json"})
        answer = json.loads(await response.content())
        if response.code >= 400:
            raise AssertionError(f"WebDriver {method} {path}: {answer.get('value')}")
        return answer.get("value")

    async def start_browser(self):
        for binary in (CHROMEDRIVER, CHROMIUM):
            if not os.access(binary, os.X_OK):
                self.fail(f"{binary} is missing: make test installs Debian's chromium and chromium-driver")
        [self.driver_port] = free_ports(1)
        self.driver_output = _Quiet()
        self.driver = self.reactor.spawnProcess(self.driver_output, CHROMEDRIVER, [CHROMEDRIVER, f"--port={self.driver_port}"],
                                                env={"PATH": "/usr/bin:/bin"})
        self.addCleanup(self.stop_driver)
        until = time.monotonic() + 20
        while True:
            try:
                await self.webdriver("GET", "/status")
                break
            except Exception:
                if time.monotonic() > until:
                    self.fail("chromedriver did not start: " + b"".join(self.driver_output.output).decode()[-2000:])
                await deferLater(self.reactor, 0.2, lambda: None)
        profile = tempfile.mkdtemp(prefix="lecp-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        session = await self.webdriver("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1200,900"]}}}})
        self.session = f"/session/{session['sessionId']}"

    async def stop_driver(self):
        if getattr(self, "session", None):
            try:
                await self.webdriver("DELETE", self.session)
            except Exception:
                pass
        try:
            self.driver.signalProcess("TERM")
        except Exception:
            pass
        await deferLater(self.reactor, 0.5, lambda: None)

    async def find(self, selector: str, timeout: float = 30.0):
        until = time.monotonic() + timeout
        while True:
            try:
                return (await self.webdriver("POST", f"{self.session}/element",
                                             {"using": "css selector", "value": selector}))[ELEMENT]
            except AssertionError:
                if time.monotonic() > until:
                    raise
                await deferLater(self.reactor, 0.25, lambda: None)

    async def text(self, selector: str) -> str:
        return await self.webdriver("GET", f"{self.session}/element/{await self.find(selector)}/text")

    async def click_through(self, selector: str, timeout: float = 60.0):
        """
        Click what leads to another page and wait until that page has replaced this one: an
        element found before the new document is in place belongs to the old one and goes stale.
        """
        old_root = await self.find("html")
        await self.webdriver("POST", f"{self.session}/element/{await self.find(selector)}/click", {})
        until = time.monotonic() + timeout
        while True:
            try:
                await self.webdriver("GET", f"{self.session}/element/{old_root}/name")
            except AssertionError as error:
                if not any(gone in str(error) for gone in ("stale element", "does not belong", "no such element")):
                    raise
                if await self.webdriver("POST", f"{self.session}/execute/sync",
                                        {"script": "return document.readyState", "args": []}) == "complete":
                    return
            if time.monotonic() > until:
                self.fail(f"clicking {selector} did not lead to another page within {timeout:.0f} s")
            await deferLater(self.reactor, 0.1, lambda: None)

    async def screenshot(self, name: str) -> str:
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(await self.webdriver("GET", f"{self.session}/screenshot")))
        return path

    async def test_secure_a_website_in_the_browser(self):
        """Log in, click Secure this site, submit, and see the website secured; screenshots kept."""
        await self.start_browser()
        login = await WHM(WHMAPICommand(self.reactor, executable=self.server.path("bin", "whmapi1"))).create_user_session("alice")
        await self.webdriver("POST", f"{self.session}/url", {"url": login.url})
        await self.click_through("#plugin-lecp")
        self.assertIn("Not secured", await self.text("#site-blog\\.alice\\.test"))
        await self.click_through("#site-blog\\.alice\\.test a.button")
        issue_shot = await self.screenshot("issue-page.png")
        await self.click_through("#issue-submit")
        notice = await self.text("div.notice")
        self.assertIn("installed", notice.lower())
        await self.click_through("a.button")
        status = await self.text("#site-blog\\.alice\\.test")
        self.assertIn("Secured until", status)
        home_shot = await self.screenshot("home-page.png")
        for shot in (issue_shot, home_shot):
            with open(shot, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    test_secure_a_website_in_the_browser.timeout = 180
