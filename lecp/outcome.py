# -*- test-case-name: tests.test_issuance -*-
"""
What a job ended in, as values the page, the JSON API, the worker and e-mails all render:
issued, deferred, failed (with the CA's problem or cPanel's error and what to do), and the
results of removal, reinstallation and re-use. Input that cannot be acted on raises L{Refused}.
"""

from __future__ import annotations

import attrs

ISSUED = "issued"
DEFERRED = "deferred"
FAILED = "failed"
PREFLIGHT_FAILED = "preflight_failed"
REMOVED = "removed"
REINSTALLED = "reinstalled"
REUSED = "reused"
REUSE_REMOVED = "reuse_removed"
CHECKED = "checked"  # a pre-flight on its own found every name reachable


class Refused(Exception):
    """
    The request cannot be acted on as asked; nothing was changed.

    @ivar status: the HTTP status the page answers with (400 bad input, 404 unknown, 409 busy).
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status

    def to_json(self) -> dict:
        return {"outcome": "refused", "message": self.message, "status": self.status}


@attrs.frozen
class NameProblem:
    """Why one name could not be validated, and what to do about it."""

    name: str
    reason: str
    advice: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "reason": self.reason, "advice": self.advice}


@attrs.frozen
class Outcome:
    """
    The end of a job for one virtual host.

    @ivar kind: one of the module's constants.
    @ivar message: what happened, in a sentence for the account's owner.
    @ivar advice: what to do next (empty when nothing is needed).
    @ivar problems: per-name problems (validation or pre-flight).
    @ivar error_type: for failures, where it failed: C{acme}, C{validation}, C{rate_limit},
        C{cpanel}, C{network}, C{store}.
    @ivar retry_after: epoch seconds before which a retry is pointless (rate limits), else 0.
    """

    kind: str
    vhost: str
    message: str
    advice: str = ""
    names: tuple = ()
    problems: tuple = ()
    expiry: int = 0
    issuer: str = ""
    order_url: str = ""
    error_type: str = ""
    retry_after: int = 0
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.kind not in (FAILED, PREFLIGHT_FAILED)

    def to_json(self) -> dict:
        return {
            "outcome": self.kind, "vhost": self.vhost, "message": self.message, "advice": self.advice,
            "names": list(self.names), "problems": [p.to_json() for p in self.problems], "expiry": self.expiry,
            "issuer": self.issuer, "order_url": self.order_url, "error_type": self.error_type,
            "retry_after": self.retry_after, "dry_run": self.dry_run,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Outcome":
        return cls(
            kind=data["outcome"], vhost=data.get("vhost", ""), message=data.get("message", ""),
            advice=data.get("advice", ""), names=tuple(data.get("names", ())),
            problems=tuple(NameProblem(**p) for p in data.get("problems", ())), expiry=int(data.get("expiry", 0)),
            issuer=data.get("issuer", ""), order_url=data.get("order_url", ""), error_type=data.get("error_type", ""),
            retry_after=int(data.get("retry_after", 0)), dry_run=bool(data.get("dry_run", False)),
        )
