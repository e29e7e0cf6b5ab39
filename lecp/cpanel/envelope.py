# -*- test-case-name: tests.test_cpanel_envelope -*-
"""
cPanel's answers, read leniently: the UAPI and WHM API 1 envelopes, the LiveAPI framing, and
the loose scalar types real servers send (numbers as strings, C{null} lists, 0/1 booleans).
"""

from __future__ import annotations

import datetime
import json

import attrs


@attrs.define(eq=False, str=False)
class CPanelError(Exception):
    """
    A cPanel call failed: names the API, module and function, and carries cPanel's own messages.

    @ivar api: C{"UAPI"}, C{"WHM API 1"} or C{"LiveAPI"}.
    """

    api: str
    function: str
    messages: tuple = ()
    module: str | None = None

    def __attrs_post_init__(self):
        Exception.__init__(self, str(self))

    def __str__(self) -> str:
        name = f"{self.module}::{self.function}" if self.module else self.function
        detail = "; ".join(m for m in self.messages if m) or "no reason given"
        return f"cPanel {self.api} {name} failed: {detail}"


def as_int(value, default: int | None = None) -> int | None:
    """An int from an int, a numeric string, a float, C{""} or C{None}."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return default


def as_bool(value) -> bool:
    """cPanel's 0/1 (as int or string), and real booleans."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def as_list(value) -> list:
    """A list from a list, C{None} (cPanel's empty list), or a single value."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    return [value]


def as_str(value, default: str = "") -> str:
    """A string, with C{None} as the default."""
    return default if value is None else str(value)


def as_common_name(value) -> str | None:
    """Old servers sent C{{"commonName": ...}} where new ones send the string."""
    if isinstance(value, dict):
        value = value.get("commonName")
    return None if value in (None, "") else str(value)


def as_datetime(value) -> datetime.datetime | None:
    """An aware UTC datetime from an epoch (int or string)."""
    seconds = as_int(value)
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


def uapi_result(envelope, module: str, function: str, api: str = "UAPI") -> dict:
    """
    The C{result} object of a UAPI answer, checked for success.

    @raise CPanelError: when C{status} is not 1, or the answer is not an envelope.
    """
    if not isinstance(envelope, dict):
        raise CPanelError(api, function, ("the answer is not a JSON object",), module)
    result = envelope.get("result", envelope if "status" in envelope else None)
    if not isinstance(result, dict):
        error = envelope.get("error")
        messages = (str(error),) if error else ("the answer has no result",)
        raise CPanelError(api, function, messages, module)
    if as_int(result.get("status")) != 1:
        messages = tuple(str(e) for e in as_list(result.get("errors"))) or ("cPanel reported a failure without a message",)
        raise CPanelError(api, function, messages, module)
    return result


def whm_data(envelope, function: str) -> dict:
    """
    The C{data} of a WHM API 1 answer, checked for success (C{metadata.result} as 1 or "1").

    @raise CPanelError: on failure, with C{metadata.reason}.
    """
    if not isinstance(envelope, dict) or not isinstance(envelope.get("metadata"), dict):
        raise CPanelError("WHM API 1", function, ("the answer has no metadata",))
    metadata = envelope["metadata"]
    if as_int(metadata.get("result")) != 1:
        raise CPanelError("WHM API 1", function, (as_str(metadata.get("reason"), "no reason given"),))
    data = envelope.get("data")
    return data if isinstance(data, dict) else {}


def parse_json(raw: bytes | str, api: str, function: str, module: str | None = None):
    """JSON from a CLI's output; a clear error when it is not JSON (a usage message, say)."""
    try:
        return json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        first = text.strip().splitlines()[0][:200] if text.strip() else "no output"
        raise CPanelError(api, function, (f"the answer is not JSON: {first}",), module) from None


def liveapi_frame(payload: str) -> bytes:
    """One LiveAPI message: C{<decimal byte length>\\n<payload>}."""
    data = payload.encode("utf-8")
    return str(len(data)).encode("ascii") + b"\n" + data


RESULT_END = b"</cpanelresult>"


def liveapi_json(reply: bytes) -> dict:
    """
    The JSON inside a LiveAPI reply, tolerating an C{<?xml ...?>} prologue and C{<error>}
    warnings before the JSON, as real cpsrvd sends them.
    """
    text = reply.decode("utf-8", "replace")
    end = text.rfind("</cpanelresult>")
    start = text.find("<cpanelresult>")
    if start < 0 or end < 0:
        raise CPanelError("LiveAPI", "reply", ("the reply is not framed as <cpanelresult>",))
    body = text[start + len("<cpanelresult>"):end]
    brace = body.find("{")
    if brace < 0:
        raise CPanelError("LiveAPI", "reply", ("cPanel could not pass the error to LiveAPI; check cPanel's error_log",))
    try:
        value = json.loads(body[brace:])
    except ValueError as e:
        raise CPanelError("LiveAPI", "reply", (f"the reply is not JSON ({e})",)) from None
    if not isinstance(value, dict):
        raise CPanelError("LiveAPI", "reply", ("the reply is not a JSON object",))
    return value
