"""Tests for L{lecp.cpanel}: lenient envelope parsing, the typed models, and the adapter's operations."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from lecp.cpanel.adapter import CPanel, WHM
from lecp.cpanel.envelope import CPanelError, as_bool, as_int, as_list, liveapi_json, uapi_result, whm_data
from lecp.cpanel.models import virtual_hosts_from_domains_data
from lecp.interfaces import IUAPITransport


def ok(data, messages=None):
    return {"apiversion": 3, "func": "f", "module": "M",
            "result": {"data": data, "errors": None, "messages": messages, "metadata": {}, "status": 1, "warnings": None}}


def failed(*errors, data=None):
    return {"apiversion": 3, "func": "f", "module": "M",
            "result": {"data": data, "errors": list(errors), "messages": None, "metadata": {}, "status": 0, "warnings": None}}


@implementer(IUAPITransport)
class ScriptedTransport:
    """Answers each (module, function) with a scripted envelope, recording the calls."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def call(self, module, function, arguments):
        self.calls.append((module, function, dict(arguments)))
        answer = self.answers[(module, function)]
        if isinstance(answer, list):
            answer = answer.pop(0)
        return succeed(answer)


class EnvelopeTests(SynchronousTestCase):
    """Lenient scalar types and envelopes."""

    def test_lenient_scalars(self):
        """Numbers as strings, null lists and 0/1 booleans are all understood."""
        self.assertEqual(as_int("1700000000"), 1700000000)
        self.assertEqual(as_int(""), None)
        self.assertEqual(as_int(None, 0), 0)
        self.assertTrue(as_bool("1"))
        self.assertFalse(as_bool(0))
        self.assertEqual(as_list(None), [])

    def test_uapi_failure_names_module_function_and_messages(self):
        """A failed UAPI call raises CPanelError carrying cPanel's own messages."""
        with self.assertRaises(CPanelError) as caught:
            uapi_result(failed("Certificate and key do not match."), "SSL", "install_ssl")
        self.assertEqual(str(caught.exception), "cPanel UAPI SSL::install_ssl failed: Certificate and key do not match.")

    def test_uapi_status_as_string(self):
        """status "1" counts as success."""
        envelope = ok([])
        envelope["result"]["status"] = "1"
        self.assertEqual(uapi_result(envelope, "M", "f")["data"], [])

    def test_whm_result_as_string_and_number(self):
        """metadata.result may arrive as 1 or "1"."""
        for result in (1, "1"):
            data = whm_data({"metadata": {"result": result, "reason": "OK"}, "data": {"x": 1}}, "f")
            self.assertEqual(data, {"x": 1})

    def test_whm_failure_reason(self):
        """A WHM failure carries metadata.reason."""
        with self.assertRaises(CPanelError) as caught:
            whm_data({"metadata": {"result": 0, "reason": "Account does not exist."}}, "accountsummary")
        self.assertIn("Account does not exist.", str(caught.exception))

    def test_liveapi_reply_with_prologue_and_warning(self):
        """A reply with an XML prologue and an <error> warning still yields the JSON."""
        reply = b'<?xml version="1.0" ?><cpanelresult><error>A warning.</error>{"result": {"status": 1}}</cpanelresult>'
        self.assertEqual(liveapi_json(reply), {"result": {"status": 1}})

    def test_liveapi_empty_reply(self):
        """An empty cpanelresult is cPanel's untrappable error, said plainly."""
        with self.assertRaises(CPanelError) as caught:
            liveapi_json(b"<cpanelresult></cpanelresult>")
        self.assertIn("error_log", str(caught.exception))


DOMAINS_DATA = {
    "main_domain": {"domain": "example.com", "servername": "example.com", "documentroot": "/home/bob/public_html/",
                    "serveralias": "mail.example.com www.example.com parked.example www.parked.example", "user": "bob"},
    "addon_domains": [{"domain": "addon.example", "servername": "addon.example.com",
                       "serveralias": "addon.example www.addon.example www.addon.example.com",
                       "documentroot": "/home/bob/addon.example"}],
    "sub_domains": [0, {"domain": "blog.example.com", "servername": "blog.example.com",
                        "serveralias": "www.blog.example.com", "documentroot": "/home/bob/public_html/blog"}],
    "parked_domains": ["parked.example"],
}


class ModelTests(SynchronousTestCase):
    """Grouping domains into virtual hosts and reading certificate objects."""

    def test_virtual_hosts(self):
        """Main, addon and sub vhosts with every alias; a 0 entry is skipped; trailing / stripped."""
        hosts = virtual_hosts_from_domains_data(DOMAINS_DATA)
        self.assertEqual([h.name for h in hosts], ["example.com", "addon.example", "blog.example.com"])
        main, addon, sub = hosts
        self.assertEqual(main.document_root, "/home/bob/public_html")
        self.assertEqual(main.name_list, ["example.com", "mail.example.com", "www.example.com", "parked.example", "www.parked.example"])
        self.assertEqual(addon.servername, "addon.example.com")
        self.assertEqual(addon.name_list, ["addon.example", "addon.example.com", "www.addon.example", "www.addon.example.com"])
        self.assertTrue(sub.owns("www.blog.example.com"))
        self.assertFalse(main.owns("blog.example.com"))

    def test_installed_hosts_lenient(self):
        """not_after as a string, commonName as an object, dotted keys: all read into typed values."""
        transport = ScriptedTransport({("SSL", "installed_hosts"): ok([{
            "servername": "example.com", "domains": ["example.com"], "fqdns": None, "docroot": "/home/bob/public_html",
            "certificate_text": "PEM", "certificate": {
                "id": "example_com_x", "domains": ["example.com", "www.example.com"], "not_after": "1767225599",
                "not_before": 1759449600, "is_self_signed": "0", "subject.commonName": {"commonName": "example.com"},
                "issuer.commonName": "R11", "issuer.organizationName": "Let's Encrypt", "key_algorithm": "rsaEncryption"}}])})
        [host] = self.successResultOf(Deferred.fromCoroutine(CPanel(transport).installed_hosts()))
        self.assertEqual(host.fqdns, ())
        self.assertEqual(host.certificate.not_after.timestamp(), 1767225599)
        self.assertEqual(host.certificate.subject_common_name, "example.com")
        self.assertFalse(host.certificate.is_self_signed)
        self.assertEqual(host.certificate.issuer_organization, "Let's Encrypt")


class AdapterTests(SynchronousTestCase):
    """CPanel and WHM operations over a scripted transport."""

    def run_(self, coroutine):
        return Deferred.fromCoroutine(coroutine)

    def test_install_ssl_sends_trimmed_material(self):
        """install_ssl sends domain, cert, key and cabundle, and reads the ids and message."""
        transport = ScriptedTransport({("SSL", "install_ssl"): ok({
            "cert_id": "c1", "key_id": "k1", "domain": "example.com", "message": "installed",
            "working_domains": ["example.com"], "warning_domains": []})})
        result = self.successResultOf(self.run_(CPanel(transport).install_ssl("example.com", " CERT\n", "KEY\n", "CHAIN\n")))
        self.assertEqual((result.cert_id, result.key_id, result.message), ("c1", "k1", "installed"))
        self.assertEqual(transport.calls[0][2], {"domain": "example.com", "cert": "CERT", "key": "KEY", "cabundle": "CHAIN"})

    def test_install_ssl_error_but_installed(self):
        """cPanel's 'unknown error' with the certificate really installed counts as success."""
        transport = ScriptedTransport({
            ("SSL", "install_ssl"): failed("unknown error", data={"cert_id": "c1", "key_id": "k1"}),
            ("SSL", "installed_hosts"): ok([{"servername": "example.com", "domains": ["example.com"], "certificate_text": "CERT\n"}]),
        })
        result = self.successResultOf(self.run_(CPanel(transport).install_ssl("example.com", "CERT", "KEY")))
        self.assertEqual(result.cert_id, "c1")

    def test_install_ssl_error_not_installed(self):
        """A real install failure is raised with cPanel's messages."""
        transport = ScriptedTransport({
            ("SSL", "install_ssl"): failed("The certificate could not be installed on the domain “x”.", "Certificate and key do not match."),
            ("SSL", "installed_hosts"): ok([]),
        })
        failure = self.failureResultOf(self.run_(CPanel(transport).install_ssl("x", "CERT", "KEY")), CPanelError)
        self.assertIn("Certificate and key do not match.", str(failure.value))

    def test_contact_emails(self):
        """Empty and null contacts are left out."""
        transport = ScriptedTransport({("Variables", "get_user_information"): ok({"contact_email": "a@x.test", "contact_email_2": None})})
        self.assertEqual(self.successResultOf(self.run_(CPanel(transport).contact_emails())), ["a@x.test"])

    def test_has_feature(self):
        """A message in has_feature's answer means the feature is off."""
        transport = ScriptedTransport({("Features", "has_feature"): [ok(None), ok(None, ["The feature “lecp” is not enabled."])]})
        self.assertTrue(self.successResultOf(self.run_(CPanel(transport).has_feature("lecp"))))
        self.assertFalse(self.successResultOf(self.run_(CPanel(transport).has_feature("lecp"))))

    def test_quota_string_flag(self):
        """under_quota_overall as the number 1 means under quota (the original plugin got this wrong)."""
        transport = ScriptedTransport({("Quota", "get_quota_info"): ok({"under_quota_overall": 1, "megabytes_used": "12", "megabyte_limit": "0"})})
        quota = self.successResultOf(self.run_(CPanel(transport).quota()))
        self.assertTrue(quota.under_quota)
        self.assertIsNone(quota.limit_mb)

    def test_whm_accounts(self):
        """listaccts is read into Accounts; '*unknown*' e-mail means none."""

        class WHMTransport:
            def call(self, function, arguments):
                return succeed({"metadata": {"result": 1, "reason": "OK"}, "data": {"acct": [
                    {"user": "bob", "domain": "Example.com", "email": "*unknown*", "suspended": "0", "uid": "1001", "owner": "root"},
                    {"user": "amy", "domain": "amy.test", "email": "a@x, b@y", "suspended": 1, "uid": 1002, "owner": "res"}]}})

        accounts = self.successResultOf(self.run_(WHM(WHMTransport()).accounts()))
        self.assertEqual([(a.user, a.domain, a.emails, a.suspended, a.uid) for a in accounts],
                         [("bob", "example.com", (), False, 1001), ("amy", "amy.test", ("a@x", "b@y"), True, 1002)])
