# -*- test-case-name: tests.integration.test_page -*-
"""
The page's request handling. Views (GET) read the store and ask cPanel over a blocking LiveAPI
socket, without importing Twisted; actions (POST) run the jobs of L{lecp.issuance} on Twisted.
Every POST of an HTML form needs the CSRF token; the JSON API (the original plugin's functions
and envelope, so WHMCS hooks keep working) takes C{application/json} bodies, which a browser
cannot send across sites without a CORS preflight cPanel never grants.
"""

from __future__ import annotations

import json
import os
import time

from lecp.frontend import csrf
from lecp.frontend.request import BadRequest, Request, parse

FEATURE = "lecp"
API_FUNCTIONS = ("list-certificates", "issue-certificate", "remove-certificate", "reinstall-certificate",
                 "reuse-certificate", "remove-certificate-reuse")


class Response:
    """Status, content type and body of the CGI's answer."""

    def __init__(self, body: str, status: int = 200, content_type: str = "text/html; charset=utf-8"):
        self.body, self.status, self.content_type = body, status, content_type

    def write(self, out) -> None:
        reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
                  409: "Conflict", 411: "Length Required", 413: "Payload Too Large", 415: "Unsupported Media Type",
                  500: "Internal Server Error", 503: "Service Unavailable"}.get(self.status, "Error")
        head = (f"Status: {self.status} {reason}\r\nContent-Type: {self.content_type}\r\n"
                "Cache-Control: no-store\r\nX-Frame-Options: SAMEORIGIN\r\nX-Content-Type-Options: nosniff\r\n\r\n")
        out.write(head.encode("ascii") + self.body.encode("utf-8"))
        out.flush()


def api_response(success: bool, data=None, errors=(), status: int = 200) -> Response:
    body = json.dumps({"success": success, "errors": list(errors) or None, "data": data}, indent=2)
    return Response(body, status, "application/json")


class Context:
    """One request's collaborators: configuration, store, cPanel (blocking), the page renderer."""

    def __init__(self, request: Request, environ: dict):
        from lecp.config import load
        from lecp.store import Store

        self.request, self.environ = request, environ
        self.config = load()
        self.store = Store(environ.get("HOME") or os.path.expanduser("~"))
        self._cpanel = None
        self._live = None

    @property
    def cpanel(self):
        if self._cpanel is None:
            from lecp.cpanel.adapter import CPanel
            from lecp.cpanel.blocking import BlockingLiveAPI

            self._live = BlockingLiveAPI.from_environment(self.environ)
            self._cpanel = CPanel(self._live)
        return self._cpanel

    def call(self, coroutine):
        """Run a read-only adapter call on the blocking socket."""
        from lecp.cpanel.blocking import run_now

        return run_now(coroutine)

    def close(self) -> None:
        if self._live is not None:
            self._live.close()

    def csrf_token(self) -> str:
        secret = self.store.read().csrf_secret()
        if not secret:
            with self.store.update() as document:
                secret = document.ensure_csrf_secret()
        return csrf.token(secret, self.request.user, self.request.security_token)

    def page(self):
        from lecp.frontend.views import TITLE, Page

        script = os.path.basename(self.environ.get("SCRIPT_NAME", "")) or "lecp.live.cgi"
        header, footer = self.call(self.cpanel.page_chrome(TITLE))
        return Page(script, self.csrf_token(), header, footer)

    def run_job(self, method: str, **arguments):
        """Run one job of L{lecp.issuance.Jobs} on Twisted, over the LiveAPI socket."""
        self.close()
        from lecp.cpanel.adapter import CPanel
        from lecp.cpanel.transports import LiveAPI
        from lecp.issuance import Jobs
        from lecp.run import run_to_completion

        async def job(reactor):
            live = LiveAPI.from_environment(reactor, self.environ)
            try:
                return await getattr(Jobs.create(reactor, self.config, self.store, CPanel(live)), method)(**arguments)
            finally:
                live.close()

        return run_to_completion(job)


def handle(environ: dict, stdin) -> Response:
    """Answer one request."""
    from lecp.config import ConfigError
    from lecp.cpanel.envelope import CPanelError
    from lecp.outcome import Refused
    from lecp.store import StoreError

    try:
        request = parse(environ, stdin)
    except BadRequest as e:
        wants_json = "application/json" in environ.get("HTTP_ACCEPT", "")
        return api_response(False, None, [e.message], e.status) if wants_json else _plain(e.message, e.status)
    context = None
    try:
        context = Context(request, environ)
        if not context.call(context.cpanel.has_feature(FEATURE)):
            message = "Let's Encrypt SSL is not enabled for this hosting package; ask your hosting provider."
            return api_response(False, None, [message], 403) if request.wants_json else _plain(message, 403)
        if request.wants_json:
            return _api(context, request)
        return _html(context, request)
    except Refused as e:
        if request.wants_json:
            return api_response(False, None, [e.message], e.status)
        return Response(context.page().refused(e.message), e.status) if context else _plain(e.message, e.status)
    except BadRequest as e:
        return api_response(False, None, [e.message], e.status) if request.wants_json else _plain(e.message, e.status)
    except (ConfigError, StoreError, CPanelError) as e:
        return api_response(False, None, [str(e)], 500) if request.wants_json else _plain(str(e), 500)
    finally:
        if context is not None:
            context.close()


def _plain(message: str, status: int) -> Response:
    from lecp.frontend.html import el

    return Response("<!DOCTYPE html>" + el("html", {"lang": "en"}, el("head", {}, el("meta", {"charset": "utf-8"}),
                    el("title", {}, "Let's Encrypt SSL")), el("body", {}, el("h1", {}, "Let's Encrypt SSL"),
                    el("p", {"role": "alert"}, message))), status)


def _check_csrf(context: Context, request: Request) -> None:
    secret = context.store.read().csrf_secret()
    if not csrf.valid(secret, request.user, request.security_token, request.get("csrf_token")):
        raise BadRequest("This form has expired or did not come from this page (the security token is missing or "
                         "wrong). Go back, reload the page and try again.", 403)


def _vhost_names(context: Context) -> list:
    return context.call(context.cpanel.virtual_hosts())


def _html(context: Context, request: Request) -> Response:
    from lecp.frontend.views import site_rows

    action = request.get("action")
    if request.method == "POST":
        _check_csrf(context, request)
        return _post(context, request, action)
    if request.method not in ("GET", "HEAD"):
        raise BadRequest(f"{request.method} is not used by this page", 405)
    page = context.page()
    if action == "":
        rows = site_rows(_vhost_names(context), context.call(context.cpanel.installed_hosts()), context.store.read(),
                         time.time(), context.config.remaining_fraction)
        return Response(page.home(rows))
    if action == "issue":
        vhost = request.get("vhost")
        host = next((h for h in _vhost_names(context) if h.name == vhost), None)
        if host is None:
            raise BadRequest(f"{vhost or 'That website'} is not a website of this account.", 400)
        document = context.store.read()
        record = document.certificate(vhost)
        existing = record.names if record else ()
        sources = sorted(v for v in document.certificates() if v != vhost)
        return Response(page.issue(host, context.config.key_types, context.config.key_type, existing, sources))
    if action == "view":
        return Response(page.view(context.run_job("view", vhost=request.get("vhost"))))
    if action == "remove":
        record = context.store.read().certificate(request.get("vhost"))
        if record is None:
            raise BadRequest(f"lecp has no certificate for {request.get('vhost') or 'that website'}.", 404)
        return Response(page.remove(record.vhost, record.names))
    if action == "settings":
        return Response(page.settings(not context.store.read().disable_mail))
    raise BadRequest(f"There is no page called “{action}”.", 404)


def _post(context: Context, request: Request, action: str) -> Response:
    vhost = request.get("vhost")
    if action == "issue":
        outcome = context.run_job("issue", vhost=vhost, names=request.get_list("names"),
                                  key_type=request.get("key_type") or None, dry_run=request.flag("dry_run"),
                                  skip_failed_names=request.flag("skip_failed_names"))
        page = context.page()
        retry = None
        if outcome.kind == "preflight_failed" and len(outcome.problems) < len(outcome.names):
            retry = page.form("issue", el_hidden("vhost", vhost), el_hidden("skip_failed_names", "1"),
                              *[el_hidden("names", n) for n in outcome.names],
                              el_hidden("key_type", request.get("key_type")), el_button("Issue for the names that passed"),
                              progress="Securing your website. This takes a few seconds.")
        return Response(page.outcome(outcome, retry))
    if action == "remove":
        outcome = context.run_job("remove", vhost=vhost, revoke=request.flag("revoke"))
    elif action == "reinstall":
        preferred = request.get("preferred_issuer", None) if "preferred_issuer" in request.form else None
        outcome = context.run_job("reinstall", vhost=vhost, preferred_issuer=preferred)
    elif action == "reuse":
        outcome = context.run_job("reuse", source=request.get("source"), target=request.get("target"))
    elif action == "remove-reuse":
        outcome = context.run_job("remove_reuse", target=vhost)
    elif action == "settings":
        with context.store.update() as document:
            document.disable_mail = not request.flag("mail")
        return Response(context.page().settings(request.flag("mail"), "Settings saved."))
    else:
        raise BadRequest(f"There is no action called “{action}”.", 404)
    return Response(context.page().outcome(outcome))


def el_hidden(name, value):
    from lecp.frontend.html import el

    return el("input", {"type": "hidden", "name": name, "value": value or ""})


def el_button(text):
    from lecp.frontend.html import el

    return el("button", {"type": "submit"}, text)


def _api(context: Context, request: Request) -> Response:
    function = request.query.get("api_function", [""])[0]
    if function not in API_FUNCTIONS:
        return api_response(False, None, ["That API endpoint does not exist"], 404)
    if function == "list-certificates":
        document = context.store.read()
        hosts = {}
        for vhost, record in document.certificates().items():
            hosts[vhost] = {"virtual_host": vhost, "dns_identifiers": record.names, "challenge_method": record.challenge_method,
                            "cpanel_cert_id": record.cert_id, "cpanel_key_id": record.key_id, "cert_pem": record.cert_pem,
                            "issuer_pem": record.chain_pem, "privkey_pem": record.key_pem, "order_url": record.order_url,
                            "expiry": record.expiry}
        return api_response(True, {"virtual_hosts": hosts, "reuses": document.reuses(),
                                   "pending": sorted(document.pending()), "csrf_token": context.csrf_token()})
    if request.method != "POST":
        return api_response(False, None, ["API request method must be POST"], 405)
    if request.json is None:
        _check_csrf(context, request)
    if function == "issue-certificate":
        vhost = request.get("virtual_host")
        if not vhost:
            raise BadRequest("The destination `virtual_host` must be provided")
        names = request.get_list("dns_identifiers")
        if not names:
            raise BadRequest("At least one DNS identifier (`dns_identifiers`) must be included on the certificate")
        method = request.get("challenge_method") or "http-01"
        if method != "http-01":
            raise BadRequest("`challenge_method` must be one of: [http-01]")
        outcome = context.run_job("issue", vhost=vhost, names=names, key_type=request.get("key_type") or None,
                                  dry_run=request.flag("dry_run"))
    elif function == "remove-certificate":
        outcome = context.run_job("remove", vhost=_required(request, "virtual_host"), revoke=request.flag("revoke"))
    elif function == "reinstall-certificate":
        preferred = request.get("preferred_issuer") if request.get("preferred_issuer") else None
        outcome = context.run_job("reinstall", vhost=_required(request, "virtual_host"), preferred_issuer=preferred)
    elif function == "reuse-certificate":
        outcome = context.run_job("reuse", source=_required(request, "src_virtual_host"),
                                  target=_required(request, "dest_virtual_host"))
    else:
        outcome = context.run_job("remove_reuse", target=_required(request, "dest_virtual_host"))
    errors = [] if outcome.ok else [outcome.message] + [f"{p.name}: {p.reason}" for p in outcome.problems]
    return api_response(outcome.ok, outcome.message if outcome.ok else outcome.to_json(), errors)


def _required(request: Request, name: str) -> str:
    value = request.get(name)
    if not value:
        raise BadRequest(f"`{name}` must be provided")
    return value


def main() -> int:
    """The CGI entry point."""
    import sys

    response = handle(dict(os.environ), sys.stdin.buffer)
    response.write(sys.stdout.buffer)
    return 0
