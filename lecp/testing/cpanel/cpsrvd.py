"""
A cpsrvd-like HTTP front for the emulated server: log in as a user (password, or a one-time URL
from C{whmapi1 create_user_session}), then plugin pages under
C{/cpsessNNNNNNNNNN/frontend/jupiter/PLUGIN/FILE}. CGI files run as a separate process per
request with cPanel's environment; C{.live.} files also get a LiveAPI socket for that request.

Plugins live in C{DIR/usr/local/cpanel/base/frontend/jupiter/} (a plugin folder may be a symlink).
When the front runs as root and a Linux user of the account's name exists, CGIs run as that user.
"""

from __future__ import annotations

import os
import pwd
import secrets
import tempfile
import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.web import resource, server as web_server
from twisted.web.static import File
from twisted.web.template import flattenString, tags

from lecp.testing.cpanel.liveapi import listen_liveapi
from lecp.testing.cpanel.server import VERSION, NoSuchAccount, RemovingFolderOnStop, Server, check_password

THEME = "jupiter"
COOKIE = "cpsession"
MAX_BODY = 16 * 1024 * 1024
MAX_OUTPUT = 64 * 1024 * 1024
CGI_TIMEOUT = 120.0
log = Logger()


def theme_root(server: Server) -> str:
    return server.path("usr", "local", "cpanel", "base", "frontend", THEME)


def _html(title: str, *body) -> bytes:
    page = tags.html(tags.head(tags.meta(charset="utf-8"), tags.title(title)), tags.body(tags.h1(title), *body))
    out = []
    flattenString(None, page).addBoth(out.append)
    return b"<!DOCTYPE html>\n" + out[0]


def _login_form(message: str = "") -> bytes:
    return _html(
        "cPanel Login (emulated)",
        tags.p(message, role="alert") if message else "",
        tags.form(
            tags.label("Username ", tags.input(name="user", id="user", autocomplete="username")), tags.br(),
            tags.label("Password ", tags.input(name="pass", id="pass", type="password", autocomplete="current-password")),
            tags.br(), tags.button("Log in", type="submit", id="login_submit"),
            method="post", action="/login/",
        ),
    )


class _CGIProcess(ProcessProtocol):
    def __init__(self, body: bytes, finished: Deferred):
        self.body, self.finished = body, finished
        self.out, self.err = [], []
        self.size = 0

    def connectionMade(self):
        if self.body:
            self.transport.write(self.body)
        self.transport.closeStdin()

    def outReceived(self, data):
        self.size += len(data)
        if self.size > MAX_OUTPUT:
            self.transport.signalProcess("KILL")
            return
        self.out.append(data)

    def errReceived(self, data):
        self.err.append(data)

    def processEnded(self, reason):
        self.finished.callback((b"".join(self.out), b"".join(self.err), getattr(reason.value, "exitCode", None)))


def parse_cgi_output(output: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Split a CGI's output into status, headers and body (RFC 3875 §6)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, sep, body = output.partition(separator)
        if sep:
            break
    else:
        return 502, [("Content-Type", "text/plain")], b"The CGI sent no headers.\n"
    status, headers = 200, []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            try:
                status = int(value.split()[0])
            except (ValueError, IndexError):
                status = 502
        elif name:
            headers.append((name, value))
    if any(n.lower() == "location" for n, _ in headers) and status == 200:
        status = 302
    return status, headers, body


class Front(resource.Resource):
    """The emulated cpsrvd: login, sessions, plugin pages, CGI."""

    isLeaf = True

    def __init__(self, server: Server, reactor, extra_env: dict | None = None, run_dir: str | None = None):
        super().__init__()
        self.server, self.reactor = server, reactor
        self.extra_env = dict(extra_env or {})
        # Unix socket paths are limited to 108 bytes: keep them in a short folder.
        self.run_dir = run_dir or tempfile.mkdtemp(prefix="lecp-cpsrvd-")
        os.chmod(self.run_dir, 0o711)
        self.running: dict = {}  # pid -> the CGI processes running now (tests kill them mid-request)

    # Sessions

    def _session_from_cookie(self, request) -> dict | None:
        cookie = SimpleCookie()
        try:
            cookie.load((request.getHeader("cookie") or ""))
        except Exception:
            return None
        morsel = cookie.get(COOKIE)
        session = self.server.session(morsel.value) if morsel else None
        if session and session["expires"] > time.time():
            return session
        return None

    def _start_session(self, request, session: dict) -> bytes:
        request.addCookie(COOKIE, session["id"], path="/", httpOnly=True, sameSite="Lax")
        request.redirect(f"{session['token']}/frontend/{THEME}/index.html".encode())
        return b""

    def render(self, request):
        path = request.path.decode("utf-8", "replace")
        parts = [p for p in path.split("/") if p]
        if not parts or parts == ["login"] or (len(parts) == 2 and parts[1] == "login" and parts[0].startswith("cpsess")):
            return self._login(request, parts)
        if not parts[0].startswith("cpsess"):
            request.setResponseCode(404)
            return _html("Not found", tags.p("No such page."))
        session = self._session_from_cookie(request)
        if session is None or session["token"] != "/" + parts[0]:
            request.setResponseCode(401)
            return _login_form("Your session has expired or is not valid. Log in again.")
        if parts[1:] == ["logout"]:
            session["expires"] = 0
            self.server.save_session(session)
            return _login_form("You are logged out.")
        if parts[1:3] != ["frontend", THEME] or len(parts) < 4:
            request.setResponseCode(404)
            return _html("Not found", tags.p("No such page."))
        if parts[3:] == ["index.html"]:
            return self._home(session)
        return self._plugin_file(request, session, parts[3:])

    def _login(self, request, parts):
        if request.method == b"POST" and parts == ["login"]:
            body = parse_qs(request.content.read(64 * 1024).decode("utf-8", "replace"))
            user, password = body.get("user", [""])[0], body.get("pass", [""])[0]
            try:
                account = self.server.account(user)
            except NoSuchAccount:
                account = None
            if account is None or not check_password(account["password"], password):
                request.setResponseCode(401)
                return _login_form("The login is invalid.")
            if account.get("suspended"):
                request.setResponseCode(403)
                return _login_form("This account is suspended.")
            return self._start_session(request, self.server.new_session(user))
        query = parse_qs(request.uri.decode("utf-8", "replace").partition("?")[2])
        if "session" in query:
            try:
                user, session_id, secret = query["session"][0].split(":", 2)
            except ValueError:
                user = session_id = secret = ""
            session = self.server.session(session_id)
            if (session and session["user"] == user and session.get("login_secret")
                    and secrets.compare_digest(session["login_secret"], secret) and session["expires"] > time.time()
                    and "/" + parts[0] == session["token"]):
                session["login_secret"] = None  # one time only
                session["expires"] = int(time.time() + 3600)
                self.server.save_session(session)
                return self._start_session(request, session)
            request.setResponseCode(401)
            return _login_form("That login link has expired or was already used.")
        return _login_form()

    def _home(self, session):
        """The plugins of the theme, linked as cPanel's sitemap would from each install.json."""
        import json

        root = theme_root(self.server)
        links = []
        if os.path.isdir(root):
            for name in sorted(os.listdir(root)):
                folder = os.path.join(root, name)
                try:
                    with open(os.path.join(folder, "install.json")) as f:
                        entries = json.load(f)
                except (OSError, ValueError):
                    entries = []
                for entry in entries if isinstance(entries, list) else [entries]:
                    if isinstance(entry, dict) and entry.get("type") == "link" and entry.get("uri"):
                        links.append(tags.li(tags.a(entry.get("name", name), href=entry["uri"], id=f"plugin-{entry.get('id', name)}")))
                if not entries:
                    index = next((f for f in ("index.live.cgi", "index.cgi", "index.html") if os.path.exists(os.path.join(folder, f))), None)
                    if index:
                        links.append(tags.li(tags.a(name, href=f"{name}/{index}", id=f"plugin-{name}")))
        return _html(f"cPanel (emulated) — {session['user']}", tags.ul(*links), tags.p(tags.a("Log out", href="../../logout")))

    def _plugin_file(self, request, session, rest):
        root = os.path.realpath(theme_root(self.server))
        if any(p in ("..", ".") or p.startswith(".") for p in rest):
            request.setResponseCode(404)
            return _html("Not found", tags.p("No such page."))
        path = os.path.join(root, *rest)
        if not os.path.isfile(path):
            request.setResponseCode(404)
            return _html("Not found", tags.p("No such page."))
        name = rest[-1]
        if name.endswith((".cgi", ".pl")) and os.access(path, os.X_OK):
            self._run_cgi(request, session, path, "/".join(rest))
            return web_server.NOT_DONE_YET
        return File(path).render(request)

    def _environment(self, request, session, path: str, relative: str, account: dict, socket_path: str | None) -> dict:
        host = (request.getHeader("host") or "127.0.0.1").split(":")[0]
        port = str(request.getHost().port)
        home = account["home"]
        script_name = f"{session['token']}/frontend/{THEME}/{relative}"
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": request.clientproto.decode(),
            "SERVER_SOFTWARE": f"cpsrvd/{VERSION}",
            "SERVER_NAME": host,
            "SERVER_ADDR": request.getHost().host,
            "SERVER_PORT": port,
            "HTTPS": "off",
            "REMOTE_ADDR": request.getClientAddress().host,
            "REMOTE_PORT": str(request.getClientAddress().port),
            "REQUEST_METHOD": request.method.decode(),
            "REQUEST_URI": request.uri.decode("utf-8", "replace"),
            "QUERY_STRING": request.uri.decode("utf-8", "replace").partition("?")[2],
            "SCRIPT_NAME": script_name,
            "SCRIPT_FILENAME": path,
            "SCRIPT_URI": f"http://{host}:{port}{script_name}",
            "PATH_INFO": "",
            "REMOTE_USER": session["user"],
            "USER": session["user"],
            "HOME": home,
            "TMPDIR": os.path.join(home, "tmp"),
            "cp_security_token": session["token"],
            "CPANEL": "active",
        }
        content_type = request.getHeader("content-type")
        if content_type:
            env["CONTENT_TYPE"] = content_type
        length = request.getHeader("content-length")
        if length:
            env["CONTENT_LENGTH"] = length
        for name, values in request.requestHeaders.getAllRawHeaders():
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_PROXY"):
                env[key] = ", ".join(v.decode("latin-1") for v in values)
        if socket_path:
            env["CPANEL_CONNECT_SOCKET"] = socket_path
            env["CPANEL_PHPCONNECT_SOCKET"] = socket_path
        env.update(self.extra_env)
        return env

    def _run_cgi(self, request, session, path: str, relative: str):
        account = self.server.account(session["user"])
        linux = None
        if os.geteuid() == 0:
            try:
                linux = pwd.getpwnam(session["user"])
            except KeyError:
                linux = None
        uid, gid = (linux.pw_uid, linux.pw_gid) if linux else (None, None)
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            request.setResponseCode(413)
            request.write(b"Request body too large.\n")
            request.finish()
            return
        request.content.seek(0)
        socket_path, listening = None, None
        if ".live." in os.path.basename(path):
            socket_path = os.path.join(self.run_dir, f"{secrets.token_hex(8)}.sock")
            listening = listen_liveapi(self.reactor, socket_path, self.server, session["user"], uid, gid)
        env = self._environment(request, session, path, relative, account, socket_path)
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        finished = Deferred()
        protocol = _CGIProcess(body, finished)
        process = self.reactor.spawnProcess(
            protocol, path, [path], env=env, path=os.path.dirname(path), uid=uid, gid=gid,
        )
        timer = self.reactor.callLater(CGI_TIMEOUT, lambda: process.signalProcess("KILL"))
        pid = process.pid  # Twisted sets process.pid to None once the process has ended
        self.running[pid] = process

        def done(result):
            self.running.pop(pid, None)
            out, err, code = result
            if timer.active():
                timer.cancel()
            if listening is not None:
                listening.stopListening()
            if err:
                log.info("CGI {path} stderr: {stderr}", path=relative, stderr=err.decode("utf-8", "replace")[-4000:])
            if code not in (0, None) and not out:
                status, headers, content = 500, [("Content-Type", "text/plain")], b"The page failed (exit status %d).\n" % code
            else:
                status, headers, content = parse_cgi_output(out)
            if gone:
                return
            request.setResponseCode(status)
            for name, value in headers:
                request.responseHeaders.addRawHeader(name, value)
            request.write(content)
            request.finish()

        finished.addCallback(done)
        finished.addErrback(lambda f: log.failure("CGI {path} failed", f, path=relative))


class _QuietSite(web_server.Site):
    def log(self, request):
        pass


def listen_front(reactor, port: int, server: Server, extra_env: dict | None = None, interface: str = "127.0.0.1"):
    """Serve the cpsrvd front on C{interface:port}; records the port in C{server.json}."""
    front = Front(server, reactor, extra_env)
    listening = reactor.listenTCP(port, _QuietSite(front), interface=interface)
    server.update_settings(cpsrvd_port=listening.getHost().port)
    return RemovingFolderOnStop(listening, front.run_dir)
