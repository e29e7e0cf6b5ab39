"""The daemon's mail against a real SMTP server on loopback (Twisted's own)."""

from __future__ import annotations

import email

from twisted.internet.defer import Deferred, succeed
from twisted.mail import smtp
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from lecp.config import Config
from lecp.daemon import mail
from lecp.tap import Settings


@implementer(smtp.IMessage)
class _Collected:
    def __init__(self, box):
        self.box, self.lines = box, []

    def lineReceived(self, line):
        self.lines.append(line)

    def eomReceived(self):
        self.box.append(b"\n".join(self.lines))
        return succeed(None)

    def connectionLost(self):
        pass


@implementer(smtp.IMessageDelivery)
class _Delivery:
    def __init__(self, box, recipients):
        self.box, self.recipients = box, recipients

    def receivedHeader(self, helo, origin, recipients):
        return b"Received: by the lecp test server"

    def validateFrom(self, helo, origin):
        return origin

    def validateTo(self, user):
        self.recipients.append(str(user.dest))
        return lambda: _Collected(self.box)


class _Server(smtp.SMTPFactory):
    """An SMTP server that hands every message to a delivery object, and says when a client left."""

    def __init__(self):
        super().__init__()
        self.closed = []

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.delivery = self.delivery
        closed = Deferred()
        self.closed.append(closed)
        lost = protocol.connectionLost

        def connectionLost(reason):
            lost(reason)
            closed.callback(None)

        protocol.connectionLost = connectionLost
        return protocol


class MailTests(TestCase):
    """Messages reach a real SMTP server as proper MIME."""

    def setUp(self):
        from twisted.internet import reactor

        self.reactor, self.box, self.recipients = reactor, [], []
        factory = self.server = _Server()
        factory.delivery = _Delivery(self.box, self.recipients)
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    async def test_failure_mail_is_multipart(self):
        """A renewal-failure mail has a text and an HTML part, the subject, and escapes HTML."""
        config = Config(smtp_host="127.0.0.1", smtp_port=self.port.getHost().port, mail_from="lecp@server.test")
        mailer = mail.Mailer(self.reactor, Settings(config))
        message = mail.renewal_failed(("alice@mail.test",), "a.test", "the CA said <no>", "fix DNS", 1900000000, 1800000060)
        self.assertTrue(await mailer.send(message))
        await self.server.closed[0]
        self.assertEqual(self.recipients, ["alice@mail.test"])
        parsed = email.message_from_bytes(self.box[0].replace(b"\n", b"\r\n"))
        self.assertEqual(parsed["Subject"], "Action needed: the certificate for a.test could not be renewed")
        self.assertEqual(parsed["From"], "lecp@server.test")
        self.assertEqual(parsed.get_content_type(), "multipart/alternative")
        parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in parsed.walk() if not p.is_multipart()}
        self.assertIn("the CA said <no>", parts["text/plain"])
        self.assertIn("the CA said &lt;no&gt;", parts["text/html"])
        self.assertEqual(mailer.sent, 1)

    async def test_unreachable_server_does_not_raise(self):
        """A mail that cannot be delivered is logged and counted, never raised."""
        config = Config(smtp_host="127.0.0.1", smtp_port=1)
        mailer = mail.Mailer(self.reactor, Settings(config))
        self.assertFalse(await mailer.send(mail.renewed(("a@b.test",), "a.test", ["a.test"], 1900000000)))
        self.assertEqual(mailer.failed, 1)

    async def test_mail_off(self):
        """With mail disabled nothing is sent."""
        mailer = mail.Mailer(self.reactor, Settings(Config(mail=False)))
        self.assertFalse(await mailer.send(mail.renewed(("a@b.test",), "a.test", ["a.test"], 1900000000)))
