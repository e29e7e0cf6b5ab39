# -*- test-case-name: tests.test_acme_errors -*-
"""
What can go wrong when talking to an ACME server, as exceptions that carry the facts and say,
in words a hosting admin can act on, what happened and what to do.
"""

from __future__ import annotations

import datetime
import re

import attrs

PROBLEM_PREFIX = "urn:ietf:params:acme:error:"


def _when(moment: datetime.datetime | None) -> str:
    if moment is None:
        return "later"
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class ACMEError(Exception):
    """Base of every error raised by L{lecp.acme}."""


@attrs.define(eq=False, str=False)
class ACMEProblem(ACMEError):
    """
    The ACME server answered with a problem document (RFC 8555 §6.7).

    @ivar problem_type: the full type URN (or another URI the server used).
    @ivar detail: the server's own explanation.
    @ivar status: the HTTP status of the answer.
    @ivar url: the request URL that got this answer.
    @ivar subproblems: per-identifier problems, as L{ACMEProblem}s.
    @ivar identifier: the identifier (a domain name) this problem is about, if any.
    @ivar retry_after: when the server said a retry may be made, if it said.
    """

    problem_type: str
    detail: str = ""
    status: int | None = None
    url: str | None = None
    subproblems: tuple = ()
    identifier: str | None = None
    retry_after: datetime.datetime | None = None

    def __attrs_post_init__(self):
        Exception.__init__(self, str(self))

    @property
    def code(self) -> str:
        """The short type: C{badNonce}, C{rateLimited}, ... (or the whole URI for foreign types)."""
        if self.problem_type.startswith(PROBLEM_PREFIX):
            return self.problem_type[len(PROBLEM_PREFIX):]
        return self.problem_type

    @classmethod
    def from_json(cls, body: dict, status=None, url=None, retry_after=None) -> "ACMEProblem":
        """Build the right subclass from a problem document."""
        problem_type = str(body.get("type") or "about:blank")
        identifier = body.get("identifier") or {}
        subproblems = tuple(
            ACMEProblem.from_json(sub, status=status, url=url)
            for sub in body.get("subproblems") or ()
            if isinstance(sub, dict)
        )
        kind = _PROBLEM_CLASSES.get(problem_type[len(PROBLEM_PREFIX):], ACMEProblem)
        return kind(
            problem_type=problem_type,
            detail=str(body.get("detail") or ""),
            status=status,
            url=url,
            subproblems=subproblems,
            identifier=identifier.get("value") if isinstance(identifier, dict) else None,
            retry_after=retry_after,
        )

    def __str__(self) -> str:
        prefix = f"{self.identifier}: " if self.identifier else ""
        detail = self.detail or "no detail given"
        text = f"{prefix}the CA refused the request ({self.code}): {detail}"
        if self.subproblems:
            text += "; " + "; ".join(str(s) for s in self.subproblems)
        return text


class BadNonce(ACMEProblem):
    """The server rejected the anti-replay nonce; retried automatically, raised only when retries ran out."""

    def __str__(self) -> str:
        return f"the CA rejected our request nonce repeatedly ({self.detail}); try again in a minute"


class RateLimited(ACMEProblem):
    """A Let's Encrypt rate limit was hit; nothing must be retried before C{retry_after}."""

    def __str__(self) -> str:
        return (
            f"rate limited until {_when(self.retry_after)}: {self.detail or 'too many requests'}; "
            "lecp will not retry before then"
        )


class AccountDoesNotExist(ACMEProblem):
    """The server does not know the account key (or the account was deleted)."""

    def __str__(self) -> str:
        return "the CA has no account for this key (it may have been deactivated or the CA reset)"


class Unauthorized(ACMEProblem):
    """The request was not authorized (wrong account, or validation failed)."""


class ServerInternal(ACMEProblem):
    """The CA had an internal error; retry later."""

    def __str__(self) -> str:
        return f"the CA had an internal error ({self.detail or 'no detail'}); lecp will retry later"


_PROBLEM_CLASSES = {
    "badNonce": BadNonce,
    "rateLimited": RateLimited,
    "accountDoesNotExist": AccountDoesNotExist,
    "unauthorized": Unauthorized,
    "serverInternal": ServerInternal,
}


@attrs.define(eq=False, str=False)
class ACMEHTTPError(ACMEError):
    """The server answered with an HTTP error that is not a problem document (a proxy's 502, say)."""

    status: int
    url: str
    body: str = ""
    retry_after: datetime.datetime | None = None

    def __attrs_post_init__(self):
        Exception.__init__(self, str(self))

    def __str__(self) -> str:
        text = f"the CA answered HTTP {self.status} for {self.url}"
        if self.retry_after is not None:
            text += f"; it asks to wait until {_when(self.retry_after)}"
        else:
            text += "; lecp will retry later"
        return text


@attrs.define(eq=False, str=False)
class ACMEConnectionError(ACMEError):
    """The ACME server could not be reached (refused, reset, timed out, TLS failure)."""

    url: str
    reason: str

    def __attrs_post_init__(self):
        Exception.__init__(self, str(self))

    def __str__(self) -> str:
        return (
            f"could not talk to the CA at {self.url} ({self.reason}); check the server's network and "
            "the configured ACME directory"
        )


@attrs.define(eq=False, str=False)
class ACMEProtocolError(ACMEError):
    """The server's answer broke RFC 8555 (no Location, not JSON, wrong content type...)."""

    url: str
    reason: str

    def __attrs_post_init__(self):
        Exception.__init__(self, str(self))

    def __str__(self) -> str:
        return f"the CA sent an answer lecp cannot use from {self.url}: {self.reason}"


def _reason_from_detail(detail: str) -> str:
    """A short, human reason from a validation error detail."""
    lowered = detail.lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("no route to host", "no route to host"),
        ("i/o timeout", "timed out"),
        ("timeout", "timed out"),
        ("connection reset", "connection reset"),
        ("nxdomain", "the name does not resolve in DNS"),
        ("no such host", "the name does not resolve in DNS"),
        ("no valid a records", "the name does not resolve in DNS"),
        ("too many redirects", "redirect loop"),
        ("stopped after", "redirect loop"),
    ):
        if needle in lowered:
            return reason
    match = re.search(r"invalid response from \S+: (\d{3})", lowered) or re.search(r"\b(40\d|50\d)\b", lowered)
    if match:
        return f"HTTP {match.group(1)}"
    return detail or "no detail given"


_ADVICE = {
    "connection": "check that the domain's DNS points to this server and that port 80 is open",
    "dns": "check the domain's DNS records (A/AAAA) point to this server",
    "unauthorized": (
        "check that nothing (an .htaccess redirect, a CDN, a firewall) blocks "
        "/.well-known/acme-challenge/ on this domain"
    ),
    "incorrectResponse": "check that nothing rewrites /.well-known/acme-challenge/ on this domain",
    "caa": "a CAA DNS record forbids Let's Encrypt; add letsencrypt.org to it",
    "rejectedIdentifier": "the CA will not issue for this name",
    "tls": "the HTTP-01 check followed a redirect to HTTPS that failed; remove the redirect for /.well-known/",
}


@attrs.define(eq=False, str=False)
class AuthorizationFailed(ACMEError):
    """
    The CA could not validate control of a name.

    @ivar identifier: the name.
    @ivar authorization_url: the authorization's URL.
    @ivar problem: the challenge's (or authorization's) L{ACMEProblem}, when the CA gave one.
    @ivar validation_url: the URL the CA fetched, for HTTP-01.
    """

    identifier: str
    authorization_url: str
    problem: ACMEProblem | None = None
    validation_url: str | None = None

    def __attrs_post_init__(self):
        Exception.__init__(self, str(self))

    def __str__(self) -> str:
        if self.problem is None:
            return f"{self.identifier}: the CA marked the authorization invalid and gave no reason"
        code = self.problem.code
        where = self.validation_url or f"http://{self.identifier}/.well-known/acme-challenge/…"
        reason = _reason_from_detail(self.problem.detail)
        if code in ("connection", "unauthorized", "incorrectResponse", "tls"):
            what = f"the CA could not reach {where} ({reason})"
        elif code == "dns":
            what = f"DNS lookup failed ({reason})"
        else:
            what = f"{code}: {self.problem.detail or 'no detail given'}"
        advice = _ADVICE.get(code)
        return f"{self.identifier}: {what}" + (f"; {advice}" if advice else "")


@attrs.define(eq=False, str=False)
class OrderFailed(ACMEError):
    """The order became C{invalid}; it cannot be finished and a new one is needed."""

    order_url: str
    problem: ACMEProblem | None = None

    def __attrs_post_init__(self):
        Exception.__init__(self, str(self))

    def __str__(self) -> str:
        reason = str(self.problem) if self.problem else "no reason given"
        return f"the CA marked the order invalid ({reason}); a new order is needed"


@attrs.define(eq=False, str=False)
class NoSupportedChallenge(ACMEError):
    """The CA offered no challenge type lecp can answer for a name."""

    identifier: str
    offered: tuple

    def __attrs_post_init__(self):
        Exception.__init__(self, str(self))

    def __str__(self) -> str:
        offered = ", ".join(self.offered) or "none"
        return f"{self.identifier}: the CA offered no HTTP-01 challenge (offered: {offered})"


class ValidationFailed(ACMEError):
    """One or more names failed validation; C{failures} holds an L{AuthorizationFailed} for each."""

    def __init__(self, order_url: str, failures):
        self.order_url = order_url
        self.failures = tuple(failures)
        super().__init__("; ".join(str(f) for f in self.failures))
