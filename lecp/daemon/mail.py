# -*- test-case-name: tests.integration.test_mail -*-
"""
E-mail from the daemon: renewal successes and failures to the account's contact address, alerts
and a periodic summary to the admin. SMTP to localhost:25 by default (Exim on a cPanel server);
host, port, STARTTLS and authentication are configurable. Proper MIME: a plain-text part and an
HTML part.
"""

from __future__ import annotations

import email.utils
import html
import io
import socket
from email.message import EmailMessage

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from lecp.config import Config

log = Logger()


@attrs.frozen
class Message:
    """One e-mail: who to, the subject, paragraphs of text, and optional lines kept as a list."""

    to: tuple
    subject: str
    paragraphs: tuple
    items: tuple = ()

    def render(self, sender: str, now=None) -> bytes:
        text = "\n\n".join(self.paragraphs)
        if self.items:
            text += "\n\n" + "\n".join(f"  - {item}" for item in self.items)
        text += "\n\n-- \nlecp, Let's Encrypt for cPanel\n"
        body = "".join(f"<p>{html.escape(p)}</p>" for p in self.paragraphs)
        if self.items:
            body += "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in self.items) + "</ul>"
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(self.to)
        message["Subject"] = self.subject
        message["Date"] = email.utils.formatdate(now, localtime=False)
        message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or None)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text)
        message.add_alternative(f"<!DOCTYPE html><html><body>{body}<hr><p><small>lecp, Let's Encrypt for cPanel"
                                "</small></p></body></html>", subtype="html")
        return bytes(message)


def _when(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


def renewed(to, vhost: str, names, expiry: float) -> Message:
    return Message(tuple(to), f"The certificate for {vhost} was renewed", (
        f"The Let's Encrypt certificate of {vhost} was renewed and installed. It is valid until {_when(expiry)}.",
        "Nothing needs to be done: it will be renewed again automatically.",
    ), tuple(names))


def renewal_failed(to, vhost: str, message: str, advice: str, expiry: float, next_try: float, problems=()) -> Message:
    paragraphs = [f"The Let's Encrypt certificate of {vhost} could not be renewed: {message}"]
    if advice:
        paragraphs.append(f"What to do: {advice}")
    if expiry:
        paragraphs.append(f"The current certificate is valid until {_when(expiry)}. lecp tries again from "
                          f"{_when(next_try)}.")
    paragraphs.append("You can turn these e-mails off on the Let's Encrypt page in cPanel.")
    return Message(tuple(to), f"Action needed: the certificate for {vhost} could not be renewed", tuple(paragraphs),
                   tuple(f"{p.name}: {p.reason}" for p in problems))


def order_failed(to, vhost: str, message: str) -> Message:
    return Message(tuple(to), f"The certificate for {vhost} could not be finished", (
        f"The certificate requested for {vhost} could not be finished by Let's Encrypt: {message}",
        "Please request it again on the Let's Encrypt page in cPanel.",
    ))


def admin_alert(to, user: str, vhost: str, expiry: float, message: str) -> Message:
    return Message(tuple(to), f"lecp: {vhost} ({user}) expires on {_when(expiry)} and could not be renewed", (
        f"The certificate of {vhost} (account {user}) expires on {_when(expiry)} and every renewal attempt has "
        f"failed so far. The last error: {message}",
        "lecp keeps trying at least once a day, so a fix is picked up on its next pass; the account's "
        "Let's Encrypt page in cPanel shows the last error.",
    ))


def admin_summary(to, since: float, renewed_count: int, failures) -> Message:
    return Message(tuple(to), f"lecp summary: {renewed_count} renewed, {len(failures)} failing", (
        f"Since {_when(since)}, lecp renewed {renewed_count} certificate(s).",
        f"{len(failures)} certificate(s) are failing:" if failures else "No certificate is failing.",
    ), tuple(f"{user} {vhost}: {detail}" for user, vhost, detail in failures))


@attrs.define
class Mailer:
    """
    Sends L{Message}s over SMTP as the configuration in force says (C{settings.config}, which a
    SIGHUP replaces); never raises, logs failures.
    """

    reactor: object
    settings: object
    sent: int = 0
    failed: int = 0

    @property
    def config(self) -> Config:
        return self.settings.config

    @property
    def sender(self) -> str:
        return self.config.mail_from or f"lecp@{socket.getfqdn()}"

    def _password(self) -> str | None:
        if not self.config.smtp_password_file:
            return None
        with open(self.config.smtp_password_file) as f:
            return f.read().strip()

    async def send(self, message: Message) -> bool:
        """Deliver C{message}; C{False} (logged) when mail is off or the SMTP server refused."""
        recipients = [r for r in message.to if r]
        if not self.config.mail or not recipients:
            return False
        from twisted.internet.endpoints import HostnameEndpoint
        from twisted.internet.ssl import optionsForClientTLS
        from twisted.mail.smtp import ESMTPSenderFactory

        try:
            password = self._password()
            done = Deferred()
            factory = ESMTPSenderFactory(
                self.config.smtp_username or None, password, self.sender, recipients,
                io.BytesIO(message.render(self.sender, self.reactor.seconds())), done,
                contextFactory=optionsForClientTLS(self.config.smtp_host) if self.config.smtp_starttls else None,
                requireAuthentication=bool(self.config.smtp_username),
                requireTransportSecurity=self.config.smtp_starttls, heloFallback=True,
            )
            factory.noisy = False
            endpoint = HostnameEndpoint(self.reactor, self.config.smtp_host, self.config.smtp_port, timeout=30)
            await endpoint.connect(factory)
            done.addTimeout(120, self.reactor)
            await done
        except Exception as e:  # a mail that cannot be sent must never stop a renewal pass
            self.failed += 1
            log.warn("Could not send {subject!r} to {to}: {error}", subject=message.subject, to=recipients,
                     error=str(e) or type(e).__name__)
            return False
        self.sent += 1
        log.info("Sent {subject!r} to {to}", subject=message.subject, to=recipients)
        return True
