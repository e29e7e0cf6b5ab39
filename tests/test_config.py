"""Tests for L{lecp.config}."""

import os

from twisted.trial.unittest import SynchronousTestCase

from lecp.config import LETSENCRYPT, LETSENCRYPT_STAGING, ConfigError, load, parse


class ConfigTests(SynchronousTestCase):
    """Reading lecp.toml."""

    def test_defaults(self):
        """An empty file gives Let's Encrypt production, RSA 4096, pre-flight on."""
        config = parse("")
        self.assertEqual((config.acme_directory, config.key_type, config.preflight), (LETSENCRYPT, "rsa:4096", True))

    def test_staging_switch(self):
        """staging = true switches the directory in use."""
        self.assertEqual(parse("[acme]\nstaging = true").acme_directory, LETSENCRYPT_STAGING)

    def test_values(self):
        """Every kind of value is read and converted."""
        config = parse('[certificates]\nkey_type = "ECDSA:P-256"\npage_deadline = 5\n[preflight]\nport = 8080\n'
                       'resolve = "dns:127.0.0.1:8053"\n[paths]\ndaemon_socket = "/tmp/x.sock"')
        self.assertEqual((config.key_type, config.page_deadline, config.preflight_port), ("ecdsa:p-256", 5.0, 8080))
        self.assertEqual(config.daemon_socket, "/tmp/x.sock")

    def test_errors_name_the_key_and_what_is_allowed(self):
        """A wrong value names the file, the section, the key and what is allowed."""
        for text, expected in (
            ("[preflight]\nport = 0", "[preflight] port: must be a port number from 1 to 65535, got 0"),
            ('[certificates]\nkey_type = "rsa:1024"', "[certificates] key_type: must be one of rsa:2048"),
            ("[acme]\nstaging = 'yes'", "[acme] staging: must be true or false"),
            ("[acme]\ndirectroy = 'x'", "unknown key [acme] directroy; known keys of [acme]: directory"),
            ("[nope]\nx = 1", "known sections:"),
            ("[preflight]\nresolve = 'example.com'", "[preflight] resolve: must be empty"),
            ("[paths]\nuapi = 'bin/uapi'", "[paths] uapi: must be an absolute path"),
            ("key_type = 1", "'key_type' must be a [section]"),
            ("[acme\n", "not valid TOML"),
        ):
            with self.assertRaises(ConfigError) as caught:
                parse(text, "/etc/lecp/lecp.toml")
            self.assertIn(expected, str(caught.exception))
            self.assertTrue(str(caught.exception).startswith("/etc/lecp/lecp.toml"))

    def test_load(self):
        """load() reads a named file, and refuses a named file that is missing."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("[acme]\nstaging = true\n")
        self.assertTrue(load(path).staging)
        self.assertRaises(ConfigError, load, path + ".missing")
