# -*- test-case-name: tests.test_frontend -*-
"""
A CGI request, parsed without the removed C{cgi} module: the query string, and bodies of
C{application/x-www-form-urlencoded} or C{application/json}, at most 1 MiB.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import attrs

MAX_BODY = 1024 * 1024


class BadRequest(Exception):
    """The request cannot be read; C{status} is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


@attrs.frozen
class Request:
    """What the page needs of a request."""

    method: str
    query: dict
    form: dict
    json: dict | None
    environ: dict

    @property
    def user(self) -> str:
        return self.environ.get("REMOTE_USER", "")

    @property
    def security_token(self) -> str:
        return self.environ.get("cp_security_token", "")

    @property
    def wants_json(self) -> bool:
        """The original plugin's switch: Accept asks for JSON, or the API parameters are present."""
        return "application/json" in self.environ.get("HTTP_ACCEPT", "") or "api_function" in self.query

    def get(self, name: str, default: str = "") -> str:
        """A single value: the JSON body's, then the form's, then the query's."""
        if self.json is not None and name in self.json:
            value = self.json[name]
            return value if isinstance(value, str) else json.dumps(value) if value is not None else default
        for source in (self.form, self.query):
            if name in source:
                return source[name][0]
        return default

    def get_list(self, name: str) -> list:
        if self.json is not None and name in self.json:
            value = self.json[name]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise BadRequest(f"'{name}' must be a list of names")
            return value
        return list(self.form.get(name, self.query.get(name, [])))

    def flag(self, name: str) -> bool:
        if self.json is not None and name in self.json:
            return self.json[name] in (True, 1, "1", "true", "on")
        return self.get(name) in ("1", "true", "on", "yes")


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"the {what} is not valid UTF-8") from None


def parse(environ: dict, stdin) -> Request:
    """Read the request; raises L{BadRequest} (400 malformed, 411 no length, 413 too large, 415 type)."""
    method = environ.get("REQUEST_METHOD", "GET").upper()
    query = parse_qs(_text(environ.get("QUERY_STRING", "").encode("latin-1"), "query string"), keep_blank_values=True)
    form, body_json = {}, None
    if method == "POST":
        length_text = environ.get("CONTENT_LENGTH", "")
        try:
            length = int(length_text or "0")
        except ValueError:
            raise BadRequest("the Content-Length is not a number") from None
        if length > MAX_BODY:
            raise BadRequest(f"the request body is larger than {MAX_BODY // 1024} KiB", 413)
        raw = stdin.read(length) if length else b""
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type == "application/json":
            try:
                body_json = json.loads(_text(raw, "body")) if raw.strip() else {}
            except ValueError as e:
                raise BadRequest(f"the JSON body does not parse ({e})") from None
            if not isinstance(body_json, dict):
                raise BadRequest("the JSON body must be an object")
        elif content_type in ("application/x-www-form-urlencoded", ""):
            form = parse_qs(_text(raw, "form"), keep_blank_values=True)
        else:
            raise BadRequest(f"unsupported Content-Type {content_type}; send a form or JSON", 415)
    return Request(method, query, form, body_json, dict(environ))
