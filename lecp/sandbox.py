"""
The whole system on one machine, on loopback only, as root: Pebble (issuing 15-minute
certificates), an emulated cPanel server with three accounts (each a real, unprivileged Unix user
named C{lecp…}, so that the page and the daemon's workers run as the account, as on cPanel), its
web server and cpsrvd front with lecp's page, and the daemon (renewing every minute).

    python -m lecp.sandbox start [--state-dir DIR] [--detach] [--cpsrvd-port 2083] [--health-port 8765]
    python -m lecp.sandbox stop [--state-dir DIR]
    python -m lecp.sandbox purge [--state-dir DIR]     (stop, delete the state and the Unix users)

C{start} prints the page's URL, the logins, the health URL and where the logs are, writes the
same as JSON to C{DIR/sandbox.json}, and stops everything it started on Ctrl-C (or C{stop}).
A restart keeps the emulated server and the stores (Pebble starts afresh: lecp registers again).
The state (default C{/var/lib/lecp-sandbox}) must be a folder every user can traverse.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_STATE = "/var/lib/lecp-sandbox"
CERTIFICATE_LIFETIME = 15 * 60
ACCOUNTS = [
    {"user": "lecpalice", "domain": "alice.test", "addon": ["shop.test"], "sub": ["blog.alice.test"],
     "parked": ["alias.test"], "email": "alice@mail.test"},
    {"user": "lecpbob", "domain": "bob.test", "sub": ["news.bob.test"], "email": "bob@mail.test"},
    {"user": "lecpcarol", "domain": "carol.test", "self_signed": ["carol.test"], "email": "carol@mail.test"},
]


def _ensure_users(homes: str) -> None:
    for account in ACCOUNTS:
        try:
            pwd.getpwnam(account["user"])
        except KeyError:
            subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", "-d",
                            os.path.join(homes, account["user"]), account["user"]], check=True)


def _install_page(server, python: str) -> None:
    from lecp.testing.cpanel.cpsrvd import theme_root

    folder = os.path.join(theme_root(server), "lecp")
    os.makedirs(folder, exist_ok=True)
    for name in ("install.json", "lecp.svg"):
        shutil.copy(os.path.join(ROOT, "cgi", name), folder)
    with open(os.path.join(ROOT, "cgi", "lecp.live.cgi")) as f:
        body = f.read().split("\n", 1)[1]
    with open(os.path.join(folder, "lecp.live.cgi"), "w") as f:
        f.write(f"#!{python}\n{body}")
    os.chmod(os.path.join(folder, "lecp.live.cgi"), 0o755)


def _write_config(state: str, pebble, server, health_port: int, python: str) -> str:
    path = os.path.join(state, "lecp.toml")
    with open(path, "w") as f:
        f.write(f'''# The sandbox's configuration (rewritten at every start).
[acme]
directory = "{pebble.directory_url}"
staging_directory = "{pebble.directory_url}"
ca_bundle = "{pebble.ca_bundle}"
[certificates]
key_type = "rsa:2048"
[renewal]
interval = 60
first_pass_delay = 5
orders_interval = 20
[mail]
enabled = false
[health]
port = {health_port}
[hostcert]
docroot = "{server.path("var", "www", "html")}"
[preflight]
port = {pebble.http_port}
resolve = "dns:127.0.0.1:{pebble.dns_port}"
[paths]
daemon_socket = "{os.path.join(state, "run", "lecp.sock")}"
state_dir = "{os.path.join(state, "daemon")}"
uapi = "{server.path("bin", "uapi")}"
whmapi1 = "{server.path("bin", "whmapi1")}"
apache_tls = "{server.path("var", "cpanel", "ssl", "apache_tls")}"
userdatadomains = "{server.path("etc", "userdatadomains.json")}"
worker_python = "{python}"
''')
    os.chmod(path, 0o644)
    return path


async def _worker(reactor, user: str, job: dict, python: str, paths: list, config: str) -> dict:
    """Run lecp.worker as C{user}, as the daemon does."""
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import ProcessProtocol

    account = pwd.getpwnam(user)
    done = Deferred()

    class Collect(ProcessProtocol):
        out = b""

        def connectionMade(self):
            self.transport.write(json.dumps(job).encode())
            self.transport.closeStdin()

        def outReceived(self, data):
            self.out += data

        def processEnded(self, reason):
            done.callback(self.out)

    reactor.spawnProcess(Collect(), python, [python, "-m", "lecp.worker"], path="/", uid=account.pw_uid,
                         gid=account.pw_gid, env={"HOME": account.pw_dir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
                                                  "LECP_CONFIG": config, "PYTHONPATH": ":".join(paths)})
    out = await done
    return json.loads(out.decode().strip().splitlines()[-1])


def as_original_plugin(home: str, uid: int, gid: int) -> None:
    """Rewrite a store as the FleetSSL plugin left it: no lecp fields, the vhost repeated in alt_names."""
    from lecp.fsutil import atomic_write
    from lecp.store import Store

    store = Store(home, uid=uid)
    document = store.read()
    for vhost, record in document.certificates().items():
        raw = document.raw["certs"][vhost]
        for key in [k for k in raw if k.startswith("lecp_")]:
            del raw[key]
        raw["alt_names"] = record.names
    original = {k: v for k, v in document.raw.items() if not k.startswith("lecp_")}
    atomic_write(store.path, json.dumps(original).encode(), 0o600)  # as the original wrote it: no lecp_schema
    os.chown(store.path, uid, gid)


def start(state: str, cpsrvd_port: int, health_port: int) -> int:
    """Run the sandbox in the foreground until SIGINT or SIGTERM."""
    if os.geteuid() != 0:
        print("sandbox: run me as root (the accounts are real, unprivileged Unix users)", file=sys.stderr)
        return 1
    from twisted.internet import defer, reactor

    from lecp.cpanel.adapter import WHM
    from lecp.cpanel.transports import WHMAPICommand
    from lecp.testing.cpanel.adminbin import listen_adminbin
    from lecp.testing.cpanel.build import DEFAULT_PASSWORD, create_server
    from lecp.testing.cpanel.cli import write_scripts
    from lecp.testing.cpanel.cpsrvd import listen_front
    from lecp.testing.cpanel.server import Server
    from lecp.testing.cpanel.web import listen_web
    from lecp.testing.pebble import Pebble, PebbleFailed, PebbleNotInstalled, PebbleSettings
    from lecp.testing.python import world_readable_python, write_launcher

    state = os.path.abspath(state)
    os.makedirs(state, exist_ok=True)
    os.chmod(state, 0o755)
    logs = os.path.join(state, "logs")
    os.makedirs(logs, exist_ok=True)
    python, paths = world_readable_python(os.path.join(state, "python"))
    cpanel_dir = os.path.join(state, "cpanel")
    _ensure_users(os.path.join(cpanel_dir, "home"))
    fresh = not os.path.exists(os.path.join(cpanel_dir, "server.json"))
    server = create_server(cpanel_dir, {"hostname": "server.lecp.test", "accounts": ACCOUNTS}) if fresh else Server(cpanel_dir)
    write_scripts(server.root, python, paths)
    os.chmod(server.root, 0o755)
    _install_page(server, python)
    pebble = Pebble(os.path.join(state, "pebble"), PebbleSettings(nosleep=True, certificate_validity=CERTIFICATE_LIFETIME))
    try:
        pebble.start()
    except (PebbleNotInstalled, PebbleFailed) as e:
        print(f"sandbox: {e}", file=sys.stderr)
        return 1
    config = _write_config(state, pebble, server, health_port, write_launcher(os.path.join(state, "python"), python, paths))
    environment = {"LECP_CONFIG": config, "PYTHONPATH": ":".join(paths)}
    listening = [listen_web(reactor, pebble.http_port, server), listen_adminbin(reactor, server),
                 listen_front(reactor, cpsrvd_port, server, environment)]
    front_port = listening[2].getHost().port
    daemon_log = open(os.path.join(logs, "daemon.log"), "ab")
    daemon = subprocess.Popen([sys.executable, "-m", "twisted", "--log-format=text", "lecp", "--config", config], stdout=daemon_log,
                              stderr=subprocess.STDOUT, cwd=state, start_new_session=True,
                              env={**os.environ, "PYTHONPATH": ":".join(paths)})

    async def announce():
        if fresh:  # bob comes with a certificate issued and stored by "the original plugin"
            bob = pwd.getpwnam("lecpbob")
            outcome = await _worker(reactor, "lecpbob", {"job": "issue", "vhost": "bob.test", "names": ["www.bob.test"]},
                                    python, paths, config)
            if outcome.get("outcome") == "issued":
                as_original_plugin(bob.pw_dir, bob.pw_uid, bob.pw_gid)
        whm = WHM(WHMAPICommand(reactor, executable=server.path("bin", "whmapi1")))
        accounts = []
        for user in server.users():
            account = server.account(user)
            session = await whm.create_user_session(user)
            domains = [account["main_domain"]["domain"]] + [d["domain"] for d in account["addon_domains"]] \
                + [d["domain"] for d in account["sub_domains"]] + account["parked_domains"]
            accounts.append({"user": user, "password": DEFAULT_PASSWORD, "domains": domains, "login_url": session.url})
        facts = {"pid": os.getpid(), "page_url": f"http://127.0.0.1:{front_port}/", "accounts": accounts,
                 "acme_directory": pebble.directory_url, "acme_ca_bundle": pebble.ca_bundle,
                 "health_url": f"http://127.0.0.1:{health_port}/health", "uapi": server.path("bin", "uapi"),
                 "whmapi1": server.path("bin", "whmapi1"), "logs": logs, "config": config, "daemon_pid": daemon.pid}
        with open(os.path.join(state, "sandbox.json.tmp"), "w") as f:
            json.dump(facts, f, indent=2)
        os.replace(os.path.join(state, "sandbox.json.tmp"), os.path.join(state, "sandbox.json"))
        print(f"""
lecp sandbox is running, on 127.0.0.1 only (Ctrl-C stops everything).

  cPanel:  {facts['page_url']}
           log in as {', '.join(a['user'] for a in accounts)} with the password {DEFAULT_PASSWORD}
           (or open a one-time login: {accounts[0]['login_url']}),
           then "Let's Encrypt SSL" and "Secure this site".
  daemon:  {facts['health_url']}  (renews every minute; certificates last {CERTIFICATE_LIFETIME // 60} minutes)
  admin:   {os.path.join(os.path.dirname(sys.executable), 'lecp')} --config {config} status
           (also: list, renew, issue, remove, hostcert, self-test, import; --help)
  logs:    {logs}
  as JSON: {os.path.join(state, 'sandbox.json')}
""", flush=True)

    def failed(failure):
        print(f"sandbox: could not start: {failure.getErrorMessage()}", file=sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.Deferred.fromCoroutine(announce()).addErrback(failed))
    try:
        reactor.run()  # Twisted's handlers: SIGINT/SIGTERM stop it, SIGCHLD reaps the child processes
    finally:
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
        pebble.stop()
        daemon_log.close()
        for port in listening:
            port.stopListening()
        try:
            os.unlink(os.path.join(state, "sandbox.json"))
        except FileNotFoundError:
            pass
        print("lecp sandbox stopped.", flush=True)
    return 0


def detach(state: str, argv: list[str]) -> int:
    """Start in the background; return once sandbox.json says it is up."""
    state = os.path.abspath(state)
    os.makedirs(os.path.join(state, "logs"), exist_ok=True)
    facts = os.path.join(state, "sandbox.json")
    if os.path.exists(facts):
        os.unlink(facts)
    with open(os.path.join(state, "logs", "sandbox.log"), "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "lecp.sandbox", *argv], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    until = time.monotonic() + 180
    while not os.path.exists(facts):
        if process.poll() is not None or time.monotonic() > until:
            print(f"sandbox: did not start; see {os.path.join(state, 'logs', 'sandbox.log')}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    with open(facts) as f:
        print(json.dumps(json.load(f), indent=2))
    return 0


def stop_detached(state: str) -> int:
    try:
        with open(os.path.join(os.path.abspath(state), "sandbox.json")) as f:
            pid = json.load(f)["pid"]
    except FileNotFoundError:
        print(f"sandbox: nothing is running in {state}")
        return 0
    os.kill(pid, signal.SIGTERM)
    until = time.monotonic() + 30
    while time.monotonic() < until:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("lecp sandbox stopped.")
            return 0
        time.sleep(0.2)
    print(f"sandbox: process {pid} did not stop", file=sys.stderr)
    return 1


def purge(state: str) -> int:
    stop_detached(state)
    for account in ACCOUNTS:
        subprocess.run(["userdel", account["user"]], check=False, capture_output=True)
    shutil.rmtree(state, ignore_errors=True)
    print(f"removed {state} and the sandbox's Unix users")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m lecp.sandbox", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("start", help="start the whole system")
    run.add_argument("--state-dir", default=DEFAULT_STATE)
    run.add_argument("--detach", action="store_true", help="run in the background")
    run.add_argument("--cpsrvd-port", type=int, default=2083)
    run.add_argument("--health-port", type=int, default=8765)
    for name, text in (("stop", "stop a detached sandbox"), ("purge", "stop, then delete the state and the Unix users")):
        sub.add_parser(name, help=text).add_argument("--state-dir", default=DEFAULT_STATE)
    args = parser.parse_args(argv)
    if args.command == "stop":
        return stop_detached(args.state_dir)
    if args.command == "purge":
        return purge(args.state_dir)
    if args.detach:
        return detach(args.state_dir, [a for a in argv if a != "--detach"])
    return start(args.state_dir, args.cpsrvd_port, args.health_port)


if __name__ == "__main__":
    sys.exit(main())
