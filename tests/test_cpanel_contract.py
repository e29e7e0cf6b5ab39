"""
Contract tests: for each operation lecp uses, the emulator answers with the shape and types
reference/cpanel-api.md documents (field by field), and the adapter parses that answer.
"""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from lecp.cpanel.adapter import CPanel, WHM
from lecp.cpanel.envelope import CPanelError
from lecp.keys import certificate_to_pem, generate_private_key, make_self_signed_certificate, private_key_to_pem
from lecp.testing.cpanel import uapi, whm
from lecp.testing.cpanel.build import create_server

INT01 = "int01"
STR_OR_NULL = "str|null"
STRS = "list[str]"
INT_OR_NULL = "int|null"


def check_shape(test, value, shape, where="data"):
    """Assert C{value} matches C{shape} (a type, a marker, a dict of shapes or a one-item list)."""
    if isinstance(shape, dict):
        test.assertIsInstance(value, dict, where)
        for key, sub in shape.items():
            test.assertIn(key, value, f"{where} lacks {key}")
            check_shape(test, value[key], sub, f"{where}.{key}")
    elif isinstance(shape, list):
        test.assertIsInstance(value, list, where)
        for i, item in enumerate(value):
            check_shape(test, item, shape[0], f"{where}[{i}]")
    elif shape == INT01:
        test.assertIn(value, (0, 1), where)
        test.assertIs(type(value), int, where)
    elif shape == STR_OR_NULL:
        test.assertTrue(value is None or isinstance(value, str), where)
    elif shape == INT_OR_NULL:
        test.assertTrue(value is None or type(value) is int, where)
    elif shape == STRS:
        test.assertIsInstance(value, list, where)
        test.assertTrue(all(isinstance(v, str) for v in value), where)
    elif shape is None:
        test.assertIsNone(value, where)
    else:
        test.assertIs(type(value), shape, f"{where}: {value!r} is not {shape.__name__}")


CERTIFICATE = {
    "id": str, "domains": STRS, "subject.commonName": STR_OR_NULL, "issuer.commonName": STR_OR_NULL,
    "issuer.organizationName": STR_OR_NULL, "issuer_text": str, "subject_text": str, "not_before": int,
    "not_after": int, "is_self_signed": INT01, "is_autossl": INT01, "validation_type": STR_OR_NULL,
    "key_algorithm": str, "modulus_length": INT_OR_NULL, "ecdsa_curve_name": STR_OR_NULL, "signature_algorithm": str,
}
INSTALLED_HOST = {
    "servername": str, "domains": STRS, "fqdns": STRS, "docroot": str, "ip": str, "is_primary_on_ip": INT01,
    "needs_sni": INT01, "mail_sni_status": INT01, "certificate_text": str, "certificate": CERTIFICATE,
}
DOMAIN_RECORD = {
    "domain": str, "type": str, "status": str, "servername": str, "serveralias": str, "documentroot": str,
    "homedir": str, "user": str, "group": str, "owner": str, "ip": str, "port": int, "hascgi": int,
    "usecanonicalname": str, "serveradmin": str, "customlog": [{"format": str, "target": str}],
    "scriptalias": [{"path": str, "url": str}],
}
INSTALL_DATA = {
    "status": INT01, "action": str, "cert_id": str, "key_id": str, "domain": str, "ip": str, "user": str,
    "message": str, "statusmsg": str, "html": str, "working_domains": STRS, "warning_domains": STRS,
    "extra_certificate_domains": STRS,
}
ACCOUNT = {
    "user": str, "domain": str, "owner": str, "plan": str, "theme": str, "email": str, "ip": str, "suspended": INT01,
    "suspendreason": str, "unix_startdate": int, "uid": int, "disklimit": str, "diskused": str, "is_locked": INT01,
}
CERTIFICATE_INFO = {"domains": STRS, "is_self_signed": INT01, "not_before": int, "not_after": int,
                    "issuer.commonName": STR_OR_NULL, "issuer.organizationName": STR_OR_NULL, "key_algorithm": str}

SPEC = {
    "hostname": "server.lecp.test",
    "self_signed_key_type": "ecdsa:p-256",
    "accounts": [
        {"user": "alice", "domain": "alice.test", "addon": ["shop.test"], "sub": ["blog.alice.test"],
         "parked": ["alias.test"], "self_signed": ["alice.test"], "email": "alice@mail.test"},
        {"user": "bob", "domain": "bob.test", "self_signed": ["bob.test"]},
    ],
}


def self_signed(names, key_type="rsa:2048"):
    key = generate_private_key(key_type)
    return certificate_to_pem(make_self_signed_certificate(key, names)), private_key_to_pem(key).decode(), key


class _InProcess:
    """A transport that calls the emulator's functions directly (the CLI and socket only frame them)."""

    def __init__(self, server, user=None):
        self.server, self.user = server, user

    def call(self, *args):
        if self.user is None:
            function, arguments = args
            return succeed(whm.call(self.server, function, arguments))
        module, function, arguments = args
        return succeed(uapi.call(self.server, self.user, module, function, arguments))


class ContractTests(SynchronousTestCase):
    """The emulator's answers, operation by operation."""

    def setUp(self):
        self.server = create_server(os.path.abspath(self.mktemp()), SPEC)
        self.alice = CPanel(_InProcess(self.server, "alice"))
        self.whm = WHM(_InProcess(self.server))

    def uapi(self, module, function, **args):
        return uapi.call(self.server, "alice", module, function, args)

    def resolve(self, coroutine):
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def assertEnvelope(self, answer, module, function, status):
        check_shape(self, answer, {"apiversion": int, "func": str, "module": str, "result": dict}, "envelope")
        self.assertEqual((answer["module"], answer["func"], answer["result"]["status"]), (module, function, status))
        result = answer["result"]
        for key in ("errors", "messages", "warnings"):
            self.assertTrue(result[key] is None or (isinstance(result[key], list) and result[key]), f"{key} must be null or non-empty")
        self.assertIsInstance(result["metadata"], dict)

    def test_domains_data(self):
        """domains_data (hash): main is an object, addons and subs lists of objects, parked a list of strings."""
        answer = self.uapi("DomainInfo", "domains_data", format="hash")
        self.assertEnvelope(answer, "DomainInfo", "domains_data", 1)
        data = answer["result"]["data"]
        check_shape(self, data, {"main_domain": DOMAIN_RECORD, "addon_domains": [DOMAIN_RECORD],
                                 "sub_domains": [DOMAIN_RECORD], "parked_domains": STRS})
        self.assertEqual(data["addon_domains"][0]["servername"], "shop.alice.test")
        self.assertEqual(data["addon_domains"][0]["type"], "addon_domain")
        self.assertEqual(answer["result"]["metadata"], {})
        hosts = self.resolve(self.alice.virtual_hosts())
        self.assertEqual([h.name for h in hosts], ["alice.test", "shop.test", "blog.alice.test"])
        self.assertEqual(hosts[0].document_root, self.server.account("alice")["main_domain"]["documentroot"])
        self.assertTrue(hosts[0].owns("www.alias.test"))

    def test_list_format_and_list_domains(self):
        """domains_data list format is flat; list_domains gives names with main_domain a string."""
        flat = self.uapi("DomainInfo", "domains_data", format="list")["result"]
        check_shape(self, flat["data"], [DOMAIN_RECORD])
        self.assertEqual(flat["metadata"], {"transformed": 1})
        data = self.uapi("DomainInfo", "list_domains")["result"]["data"]
        check_shape(self, data, {"main_domain": str, "addon_domains": STRS, "parked_domains": STRS, "sub_domains": STRS})

    def test_single_domain_data_errors(self):
        """Missing domain and parked or foreign domains fail with cPanel's messages."""
        self.assertEqual(self.uapi("DomainInfo", "single_domain_data")["result"]["errors"], ["Domain must be passed as a parameter."])
        for name in ("alias.test", "bob.test"):
            answer = self.uapi("DomainInfo", "single_domain_data", domain=name)
            self.assertEnvelope(answer, "DomainInfo", "single_domain_data", 0)
            self.assertEqual(answer["result"]["errors"], [f"Unable to locate the domain: {name}"])

    def test_installed_hosts(self):
        """installed_hosts: one entry per SSL vhost with the documented fields; the adapter reads it."""
        answer = self.uapi("SSL", "installed_hosts")
        self.assertEnvelope(answer, "SSL", "installed_hosts", 1)
        check_shape(self, answer["result"]["data"], [INSTALLED_HOST])
        self.assertEqual(answer["result"]["metadata"], {"transformed": 1})
        [host] = self.resolve(self.alice.installed_hosts())
        self.assertEqual(host.servername, "alice.test")
        self.assertTrue(host.certificate.is_self_signed)
        self.assertEqual(host.certificate.domains, ("alice.test", "www.alice.test"))

    def test_install_ssl(self):
        """install_ssl answers the documented data and message; the adapter returns the ids."""
        cert, key, _ = self_signed(["shop.test", "www.shop.test"], "ecdsa:p-256")
        answer = self.uapi("SSL", "install_ssl", domain="shop.test", cert=cert, key=key)
        self.assertEnvelope(answer, "SSL", "install_ssl", 1)
        check_shape(self, answer["result"]["data"], INSTALL_DATA)
        self.assertEqual(answer["result"]["messages"], ["The certificate was successfully installed on the domain “shop.test”."])
        self.assertEqual(answer["result"]["data"]["warning_domains"], ["shop.alice.test", "www.shop.alice.test"])
        self.assertTrue(answer["result"]["data"]["key_id"].startswith("ec-"))
        cert2, key2, _ = self_signed(["blog.alice.test"])
        result = self.resolve(self.alice.install_ssl("blog.alice.test", cert2, key2))
        self.assertEqual(result.domain, "blog.alice.test")
        self.assertIn("blog.alice.test", [h.servername for h in self.resolve(self.alice.installed_hosts())])

    def test_install_ssl_refusals(self):
        """Key mismatch, foreign domain and uncovered vhost are refused with cPanel's messages; nothing installed."""
        cert, _, _ = self_signed(["alice.test"])
        _, other_key, _ = self_signed(["alice.test"])
        before = self.uapi("SSL", "installed_hosts")["result"]["data"]
        mismatch = self.uapi("SSL", "install_ssl", domain="alice.test", cert=cert, key=other_key)["result"]
        self.assertEqual(mismatch["errors"], ["Certificate and key do not match."])
        bob_cert, bob_key, _ = self_signed(["bob.test"])
        foreign = self.uapi("SSL", "install_ssl", domain="bob.test", cert=bob_cert, key=bob_key)["result"]
        self.assertEqual(foreign["status"], 0)
        self.assertEqual(foreign["errors"], ["The certificate could not be installed on the domain “bob.test”.",
                                             "You do not control the domain “bob.test”."])
        self.assertIn("cert_id", foreign["data"])
        wrong = self.uapi("SSL", "install_ssl", domain="alice.test", cert=bob_cert, key=bob_key)["result"]
        self.assertIn("does not cover any domain", wrong["errors"][1])
        self.assertEqual(self.uapi("SSL", "installed_hosts")["result"]["data"], before)
        self.assertEqual(self.server.installed("bob.test")["user"], "bob")

    def test_delete_ssl_and_store(self):
        """delete_ssl removes the vhost's SSL; list_certs/list_keys/delete_cert/delete_key keep their shapes."""
        answer = self.uapi("SSL", "delete_ssl", domain="alice.test")
        self.assertEnvelope(answer, "SSL", "delete_ssl", 1)
        self.assertEqual(answer["result"]["messages"], ["The SSL host was successfully removed."])
        self.assertEqual(self.resolve(self.alice.installed_hosts()), [])
        again = self.uapi("SSL", "delete_ssl", domain="alice.test")["result"]
        self.assertIn("does not have SSL", again["errors"][0])
        certs = self.uapi("SSL", "list_certs")["result"]["data"]
        check_shape(self, certs, [{**{k: v for k, v in CERTIFICATE.items() if k != "is_autossl"}, "friendly_name": str,
                                   "created": int, "domain_is_configured": INT01, "serial": str}])
        keys = self.uapi("SSL", "list_keys")["result"]["data"]
        check_shape(self, keys, [{"id": str, "friendly_name": str, "created": int, "key_algorithm": str}])
        self.resolve(self.alice.delete_certificate(certs[0]["id"]))
        self.resolve(self.alice.delete_key(keys[0]["id"]))
        self.assertEqual(self.uapi("SSL", "list_certs")["result"]["data"], [])
        failure = self.failureResultOf(Deferred.fromCoroutine(self.alice.delete_key("nope")), CPanelError)
        self.assertIn("does not exist", str(failure.value))

    def test_features_quota_contacts(self):
        """has_feature, get_quota_info and get_user_information answer as documented."""
        self.assertTrue(self.resolve(self.alice.has_feature("lecp")))
        record = self.server.account("alice")
        record["features"] = {"lecp": False, "sslinstall": False}
        self.server.save_account(record)
        self.assertFalse(self.resolve(self.alice.has_feature("lecp")))
        denied = self.uapi("SSL", "installed_hosts")["result"]
        self.assertEqual(denied["errors"], ["You do not have the feature “sslinstall”."])
        quota = self.uapi("Quota", "get_quota_info")["result"]["data"]
        check_shape(self, quota, {"megabytes_used": int, "megabyte_limit": int, "under_quota_overall": INT01})
        self.assertTrue(self.resolve(self.alice.quota()).under_quota)
        self.assertEqual(self.resolve(self.alice.contact_emails()), ["alice@mail.test"])
        unknown = self.uapi("Variables", "get_user_information", name="shoe_size")["result"]
        self.assertIn("unknown value(s): shoe_size", unknown["errors"][0])

    def test_unknown_module_and_function(self):
        """Unknown modules and functions get cPanel's own error texts."""
        self.assertEqual(self.uapi("Nope", "x")["result"]["errors"][0], "Failed to load module “Nope”: Can't locate Cpanel/API/Nope.pm")
        self.assertEqual(self.uapi("SSL", "frobnicate")["result"]["errors"],
                         ["The system could not find the function “frobnicate” in the module “SSL”."])
        self.assertEqual(self.uapi("SSL", "_private")["result"]["errors"], ["Illegal function name: _private"])

    def test_whm_accounts(self):
        """listaccts and accountsummary answer data.acct with the documented types."""
        answer = whm.call(self.server, "listaccts", {})
        check_shape(self, answer, {"metadata": {"command": str, "reason": str, "result": int, "version": int},
                                   "data": {"acct": [ACCOUNT]}})
        none = whm.call(self.server, "listaccts", {"search": "zzz", "searchtype": "user"})
        self.assertEqual(none["metadata"]["result"], 1)
        self.assertNotIn("data", none)
        missing = whm.call(self.server, "accountsummary", {"user": "carol"})
        self.assertEqual((missing["metadata"]["result"], missing["metadata"]["reason"], missing["data"]),
                         (0, "Account does not exist.", {"acct": []}))
        accounts = self.resolve(self.whm.accounts())
        self.assertEqual([(a.user, a.domain, a.emails) for a in accounts],
                         [("alice", "alice.test", ("alice@mail.test",)), ("bob", "bob.test", ("bob@bob.test",))])
        self.assertEqual(self.resolve(self.whm.account("bob")).domain, "bob.test")

    def test_whm_service_certificates(self):
        """fetch_service_ssl_components and install_service_ssl_certificate, with result sent as "1"."""
        answer = whm.call(self.server, "fetch_service_ssl_components", {})
        check_shape(self, answer["data"], {"services": [{"service": str, "certificate": str, "key": str,
                                                         "certificate_info": CERTIFICATE_INFO}]})
        services = self.resolve(self.whm.service_certificates())
        self.assertEqual([s.service for s in services], ["cpanel", "exim", "dovecot", "ftp"])
        self.assertTrue(all(s.info.is_self_signed for s in services))
        cert, key, _ = self_signed(["server.lecp.test"])
        installed = whm.call(self.server, "install_service_ssl_certificate", {"service": "exim", "crt": cert, "key": key, "cabundle": ""})
        self.assertEqual(installed["metadata"]["result"], "1")
        check_shape(self, installed["data"], {"service": str, "service_description": str, "certificate": str,
                                              "certificate_info": CERTIFICATE_INFO})
        info = self.resolve(self.whm.install_service_certificate("ftp", cert, key, ""))
        self.assertEqual(info.domains, ("server.lecp.test",))
        bad = whm.call(self.server, "install_service_ssl_certificate", {"service": "courier", "crt": cert, "key": key})
        self.assertEqual(bad["metadata"]["result"], 0)
        self.assertNotIn("data", bad)

    def test_whm_hostname_and_sessions(self):
        """gethostname, version, create_user_session, and an unknown function."""
        self.assertEqual(self.resolve(self.whm.hostname()), "server.lecp.test")
        session = self.resolve(self.whm.create_user_session("alice"))
        self.assertRegex(session.security_token, r"^/cpsess\d{10}$")
        self.assertIn(f"{session.security_token}/login/?session=alice:", session.url)
        unknown = whm.call(self.server, "no_such_thing", {})
        self.assertEqual(unknown["metadata"]["result"], 0)
        self.assertIn("no_such_thing", unknown["metadata"]["reason"])
