"""
Hostile input: a corpus of bad requests to the page and its JSON API through the real CGI (forged
CSRF tokens, other accounts' websites, path traversal in every field, header injection, oversized
and malformed bodies, invalid UTF-8, IDN confusables, 10,000 names), and bad data on disk and from
cPanel (corrupt stores, symlinks where folders belong, a document root pointing at /root, a
`.well-known` that is a file, cPanel answering errors or garbage). Each gets a clear 4xx error, and
nothing changes: the account's store and installed certificate stay byte for byte as they were.
"""

from __future__ import annotations

import json
import os
import time

from treq.client import HTTPClient

from lecp.store import Store
from tests.integration.support import SystemTestCase
from tests.integration.test_page import PageFixture

API = "api_version=1&api_function="
HUGE_NAME_LIST = [f"n{i}.alice.test" for i in range(10_000)]


def _message(body: str) -> str:
    """The error message of an answer (JSON errors, or the page's text without markup), for failure reports."""
    import re

    try:
        return "; ".join(json.loads(body).get("errors") or []) or body[:200]
    except ValueError:
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))[-300:]


class HostilePageTests(PageFixture):
    """alice, logged in with one certificate issued, sends everything a hostile client could."""

    def snapshot(self):
        with open(Store(self.home).path, "rb") as f:
            store = f.read()
        installed = self.server.path("var", "cpanel", "ssl", "apache_tls", "alice.test", "certificates")
        with open(installed, "rb") as f:
            return store, f.read()

    async def test_corpus(self):
        await self.login()
        token = await self.token()
        code, body = await self.post({"action": "issue", "vhost": "alice.test", "csrf_token": token})
        self.assertEqual(code, 200, body[-500:])
        before = self.snapshot()

        # bob's own token, valid for bob only
        alice = (self.cookie, self.page_url)
        await self.login("bob")
        bob_token = await self.token("bob.test")
        self.cookie, self.page_url = alice

        def form(**fields):
            return ("form", {"csrf_token": token, **fields})

        def api(function, document, raw=None):
            return ("api", function, raw if raw is not None else json.dumps(document).encode())

        traversal = ["../../etc/passwd", "alice.test/../../bob.test", "..", "/etc/shadow", "alice.test%2f..%2f..",
                     "~bob", "alice.test\x00.evil"]
        corpus = [
            # forged or missing CSRF tokens: 403, whatever the action
            *[(("raw-form", {"action": a, "vhost": "alice.test", **t}), 403, "security token")
              for a in ("issue", "remove", "reinstall", "reuse", "remove_reuse", "settings")
              for t in ({}, {"csrf_token": "0" * 64}, {"csrf_token": bob_token}, {"csrf_token": token[:-1]})],
            # another account's website, through every action and API function
            *[(form(action=a, vhost="bob.test"), 400, "bob.test") for a in ("issue", "reinstall")],
            (form(action="remove", vhost="bob.test"), 404, "bob.test"),
            (form(action="reuse", source="alice.test", target="bob.test"), 400, "bob.test"),
            (form(action="issue", vhost="alice.test", names=["bob.test"]), 400, "not a domain of this account"),
            (api("issue-certificate", {"virtual_host": "bob.test", "dns_identifiers": ["bob.test"]}), 400, "bob.test"),
            (api("remove-certificate", {"virtual_host": "bob.test"}), 404, "bob.test"),
            (api("reinstall-certificate", {"virtual_host": "bob.test"}), 404, "bob.test"),
            # path traversal in every field
            *[(form(action="issue", vhost=v), 400, "") for v in traversal],
            *[(form(action="issue", vhost="alice.test", names=[v]), 400, "") for v in traversal],
            *[(form(action="remove", vhost=v), 400, "") for v in traversal],
            *[(form(action="reuse", source=v, target="blog.alice.test"), 400, "") for v in traversal],
            *[(form(action="reinstall", vhost="alice.test", preferred_issuer=v), 400, "no chain") for v in traversal],
            (form(action="issue", vhost="alice.test", key_type="../../../etc/ssl"), 400, "not offered"),
            (form(action="../../bin/sh"), 404, "no action called"),
            *[(api("issue-certificate", {"virtual_host": v}), 400, "") for v in traversal],
            (("api-get", "../../../etc/passwd"), 404, "does not exist"),
            # header injection
            (form(action="issue", vhost="alice.test\r\nSet-Cookie: pwned=1"), 400, ""),
            (form(action="issue", vhost="alice.test", names=["www.alice.test\r\nLocation: http://evil/"]), 400, ""),
            (api("issue-certificate", {"virtual_host": "alice.test\nX-Injected: 1"}), 400, ""),
            # oversized and malformed bodies
            (("raw-body", b"x" * (1024 * 1024 + 1), "application/x-www-form-urlencoded"), 413, ""),
            (form(action="issue", vhost="a" * 100_000), 400, ""),
            (api("issue-certificate", None, raw=b"{not json"), 400, "does not parse"),
            (api("issue-certificate", None, raw=b"[]"), 400, ""),
            (api("issue-certificate", None, raw=b'"alice.test"'), 400, ""),
            (api("issue-certificate", {"virtual_host": 5}), 400, ""),
            (api("issue-certificate", {"virtual_host": "alice.test", "dns_identifiers": "alice.test"}), 400, ""),
            (api("issue-certificate", {"virtual_host": "alice.test", "dns_identifiers": [{"x": 1}]}), 400, ""),
            (api("issue-certificate", None, raw=b'{"virtual_host": "alice.test", "virtual_host": "bob.test", '
                                         b'"dns_identifiers": ["bob.test"]}'), 400, "bob.test"),
            (("raw-body", b"action=issue&vhost=%zz&csrf_token=" + token.encode(), "application/x-www-form-urlencoded"), 400, ""),
            (("raw-body", b"action=issue&vhost=\xff\xfe.test&csrf_token=" + token.encode(), "application/x-www-form-urlencoded"),
             400, "UTF-8"),
            (api("issue-certificate", None, raw=b'{"virtual_host": "\xff\xfe"}'), 400, ""),
            (("raw-body", b"<xml/>", "text/xml"), 400, ""),
            # IDN confusables: Cyrillic and Greek letters that look like Latin ones
            (form(action="issue", vhost="\u0430lice.test"), 400, "not a website of this account"),
            (form(action="issue", vhost="alice.test", names=["www.\u0430lice.test"]), 400, "not a domain of this account"),
            (form(action="issue", vhost="xn--lice-43d.test"), 400, "not a website of this account"),
            (form(action="issue", vhost="alic\u0435.test"), 400, "not a website of this account"),
            (form(action="issue", vhost="alice.t\u0435st"), 400, ""),
            (form(action="issue", vhost="\u212blice.test"), 400, ""),  # Kelvin-sign-like compatibility characters
            # 10,000 names
            (api("issue-certificate", {"virtual_host": "alice.test", "dns_identifiers": HUGE_NAME_LIST}), 400, "at most 100 names"),
            (form(action="issue", vhost="alice.test", names=HUGE_NAME_LIST[:2000]), 400, ""),
        ]
        answers, wrong = [], []
        for case, status, text in corpus:
            started = time.monotonic()
            code, body = await self.send(case)
            elapsed = time.monotonic() - started
            answers.append((case, code))
            label = repr(case)[:160]
            shown = body.replace("&#x27;", "'").replace("&quot;", '"')
            if not (400 <= code < 500 if status == 400 else code == status) or text not in shown \
                    or "Traceback" in body or elapsed > 10:
                wrong.append(f"{label}: answered {code} in {elapsed:.1f} s: {_message(shown)}")
            self.assertEqual(self.snapshot(), before, f"{label} changed the account's data")
        self.assertEqual(wrong, [], "\n".join(wrong))
        print(f"hostile page corpus: {len(corpus)} requests, statuses "
              + ", ".join(f"{c}: {sum(1 for _, k in answers if k == c)}" for c in sorted({k for _, k in answers})))

    async def test_header_injection_never_reaches_the_response(self):
        """CR/LF in any field never becomes a response header."""
        await self.login()
        token = await self.token()
        for field in ("vhost", "names", "key_type", "preferred_issuer", "source", "target"):
            response = await HTTPClient(self.agent).post(
                self.page_url, data={"action": "issue", "vhost": "alice.test", field: "x\r\nX-Injected: yes",
                                     "csrf_token": token},
                headers={"Cookie": self.cookie})
            await response.content()
            self.assertIsNone(response.headers.getRawHeaders("x-injected"), field)

    async def send(self, case):
        kind = case[0]
        if kind in ("form", "raw-form"):
            return await self.post(case[1])
        if kind == "api":
            return await self.post(body=case[2], content_type="application/json", query=API + case[1],
                                   accept="application/json")
        if kind == "api-get":
            return await self.get(API + case[1], accept="application/json")
        if kind == "raw-body":
            return await self.post(body=case[1], content_type=case[2])
        raise AssertionError(kind)


class HostileDataTests(SystemTestCase):
    """Bad data where lecp reads and writes, for a real account's worker: refused, reported, nothing followed."""

    async def issue(self):
        out, err, code = await self.run_worker({"job": "issue", "vhost": f"{self.users[0]}.test"})
        return json.loads(out.decode().strip().splitlines()[-1]), err.decode()

    def setUp(self):
        super().setUp()
        self.write_config(self.pebble.directory_url, "[mail]\nenabled = false\n" + self.paths_section())
        self.docroot = os.path.join(self.home, "public_html")

    async def test_document_root_pointing_at_root(self):
        """public_html replaced by a symlink to /root: nothing is written there, the error says why."""
        os.rename(self.docroot, self.docroot + ".real")
        os.symlink("/root", self.docroot)
        before = set(os.listdir("/root"))
        outcome, err = await self.issue()
        self.assertEqual(outcome["outcome"], "preflight_failed", outcome)  # the worker (the user) cannot write there
        self.assertEqual(set(os.listdir("/root")), before)
        self.assertFalse(os.path.exists("/root/.well-known"))
        self.assertEqual(Store(self.home, uid=self.user.pw_uid).read().certificates(), {})

    async def test_well_known_is_a_file(self):
        """A `.well-known` that is a file: a clear failure naming it, the file untouched."""
        path = os.path.join(self.docroot, ".well-known")
        with open(path, "w") as f:
            f.write("not a folder")
        os.chown(path, self.user.pw_uid, self.user.pw_gid)
        outcome, err = await self.issue()
        self.assertNotIn(outcome["outcome"], ("issued",), outcome)
        self.assertIn(".well-known", outcome["message"] + outcome["advice"] + json.dumps(outcome["problems"]))
        with open(path) as f:
            self.assertEqual(f.read(), "not a folder")

    async def test_store_symlinked_to_another_account(self):
        """A store that is a symlink (to another account's, say) is refused by the worker and by root's reader."""
        from lecp.saferead import UnsafePath, read_beneath

        folder = os.path.join(self.home, ".cpanel", "nvdata")
        os.makedirs(folder, exist_ok=True)
        for part in (os.path.join(self.home, ".cpanel"), folder):
            os.chown(part, self.user.pw_uid, self.user.pw_gid)
        os.symlink("/etc/shadow", os.path.join(folder, "letsencrypt-cpanel"))
        outcome, err = await self.issue()
        self.assertEqual(outcome["outcome"], "error", outcome)
        self.assertIn("symlink", outcome["message"])
        with self.assertRaises(UnsafePath):
            read_beneath(self.home, ".cpanel/nvdata/letsencrypt-cpanel", self.user.pw_uid)

    async def test_corrupt_store(self):
        """A corrupt store is kept aside (never overwritten) and the job says where it went."""
        store = Store(self.home, uid=self.user.pw_uid)
        os.makedirs(store.folder, exist_ok=True)
        for part in (os.path.join(self.home, ".cpanel"), store.folder):
            os.chown(part, self.user.pw_uid, self.user.pw_gid)
        with open(store.path, "wb") as f:
            f.write(b'{"certs": {"x": ')
        os.chown(store.path, self.user.pw_uid, self.user.pw_gid)
        outcome, err = await self.issue()
        self.assertIn("could not be read", outcome["message"])
        kept = [n for n in os.listdir(store.folder) if ".corrupt-" in n]
        self.assertEqual(len(kept), 1)
        with open(os.path.join(store.folder, kept[0]), "rb") as f:
            self.assertEqual(f.read(), b'{"certs": {"x": ')

    async def test_cpanel_answering_garbage_or_errors(self):
        """uapi printing garbage, failing, or answering an error envelope: a clear error; nothing stored."""
        fake = os.path.join(self.base, "fake-uapi")
        answers = {
            "garbage": "echo '<html>500 Internal Server Error</html>'",
            "failure": "echo 'cpanel is restarting' >&2; exit 1",
            "error envelope": "echo '{\"result\": {\"status\": 0, \"errors\": [\"The system is under maintenance.\"], \"data\": null}}'",
            "truncated": "printf '{\"result\": {\"status\": 1, \"data\": [{\"domain\": '",
        }
        for name, script in answers.items():
            with open(fake, "w") as f:
                f.write(f"#!/bin/sh\n{script}\n")
            os.chmod(fake, 0o755)
            self.write_config(self.pebble.directory_url, "[mail]\nenabled = false\n" + self.paths_section(uapi=fake))
            outcome, err = await self.issue()
            self.assertEqual(outcome["outcome"], "error", (name, outcome))
            self.assertIn("cPanel", outcome["message"], (name, outcome))
            self.assertEqual(Store(self.home, uid=self.user.pw_uid).read().certificates(), {}, name)
