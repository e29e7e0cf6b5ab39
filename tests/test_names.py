"""Tests for L{lecp.names}."""

from twisted.trial.unittest import SynchronousTestCase

from lecp.names import BadName, display, normalise


class NormaliseTests(SynchronousTestCase):
    """Names made canonical, or refused with the reason."""

    def test_case_and_trailing_dot(self):
        """Upper case and a trailing dot are forgiven."""
        self.assertEqual(normalise(" WWW.Example.COM. "), "www.example.com")

    def test_idn_to_a_label(self):
        """An internationalised name becomes its A-label, and displays back."""
        self.assertEqual(normalise("Bücher.example"), "xn--bcher-kva.example")
        self.assertEqual(display("xn--bcher-kva.example"), "bücher.example")

    def test_refusals(self):
        """Wildcards, IPs, single labels, bad characters, long labels and bad IDNs are refused with a reason."""
        for bad, reason in (
            ("*.example.com", "wildcard"), ("192.0.2.1", "IP addresses"), ("localhost", "full domain name"),
            ("exa_mple.com", "not a valid part"), ("-a.example.com", "not a valid part"), ("a" * 64 + ".com", "not a valid part"),
            ("", "empty"), ("a..b.com", "not a valid part"), ("xn--ls8h\u200d.example", "internationalised"),
            ("../etc/passwd", "not a valid part"), ("a.com\r\nX-Evil: 1", "not a valid part"),
        ):
            with self.assertRaises(BadName) as caught:
                normalise(bad)
            self.assertIn(reason, str(caught.exception), bad)
