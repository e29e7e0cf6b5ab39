"""
One-click issuance, process to process, lecp against the clients an admin would otherwise use,
in one run against the same Pebble: lecp's page (a JSON-API request to the emulated cPanel, which
runs the CGI process), `python -m lecp.acme issue`, certbot (PyPI, in bench/.certbot), acme-tiny
and uacme (Debian). Each issues a 2-name certificate (NAME and www.NAME, fresh names every run)
through HTTP-01 from a document root served by the emulated cPanel's web server. Contenders run
alternately (the order rotates every round) after a warm-up round that registers their accounts;
medians over the counted rounds and the ratio lecp/peer are reported.

Sets: RSA-2048 with Pebble's PEBBLE_VA_NOSLEEP=1 (no bad nonces); RSA-2048 with Pebble's defaults
(validation sleeps up to 4 s, 5 % bad nonces); RSA-4096, lecp against certbot, NOSLEEP.

    python bench/peers_issuance.py [--runs 7] [--sets nosleep,default,rsa4096]   (as root)

Key and CSR generation count for every client (acme-tiny's openssl commands included).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import summary, write_result  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CERTBOT = os.path.join(HERE, ".certbot", "bin", "certbot")
LECP_PAGE, LECP_CLI = "lecp page", "lecp acme CLI"


def versions() -> dict:
    def run(argv):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    def deb(package):
        return run(["dpkg-query", "-W", "-f=${Version}", package])

    return {"certbot": run([CERTBOT, "--version"]), "acme-tiny": deb("acme-tiny"), "uacme": deb("uacme"),
            "openssl": run(["openssl", "version"])}


class World:
    """Pebble, the emulated cPanel (web server, front, page) and every contender's state, for one set."""

    def __init__(self, base: str, pebble, server, front_url: str, key_type: str):
        self.base, self.pebble, self.server, self.front_url, self.key_type = base, pebble, server, front_url, key_type
        self.bits = key_type.split(":")[1]
        self.counter = 0
        self.page = self._login()

    def fresh_site(self) -> tuple[str, str]:
        """A new addon website (its name and document root), for one issuance."""
        self.counter += 1
        name = f"r{self.counter}-{uuid.uuid4().hex[:8]}.test"
        docroot = self.server.add_addon("bench", name)
        return name, docroot

    def _login(self) -> str:
        import http.cookiejar

        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        response = self.opener.open(urllib.request.Request(f"{self.front_url}/login/", data=b"user=bench&pass=bench-password"),
                                    timeout=30)
        session = response.geturl().split("/frontend/")[0]
        return f"{session}/frontend/jupiter/lecp/lecp.live.cgi?api_version=1&api_function=issue-certificate"

    # The contenders: each returns the argv (or a callable) for one issuance of NAME into DOCROOT.

    def lecp_page(self, name, docroot):
        body = json.dumps({"virtual_host": name, "dns_identifiers": [name, f"www.{name}"], "key_type": self.key_type})
        request = urllib.request.Request(self.page, data=body.encode(), headers={
            "Content-Type": "application/json", "Accept": "application/json"})
        with self.opener.open(request, timeout=300) as response:
            answer = json.loads(response.read())
        if not answer.get("success"):
            raise RuntimeError(f"the page answered {answer.get('errors')}")

    def lecp_cli(self, name, docroot):
        out = os.path.join(self.base, "lecp-cli", name)
        return [sys.executable, "-m", "lecp.acme", "issue", "--directory", self.pebble.directory_url, "--ca-bundle",
                self.pebble.ca_bundle, "--webroot", docroot, "--key-type", self.key_type, "--account-key",
                os.path.join(self.base, "lecp-cli-account.key"), "--out", out, name, f"www.{name}"], {}

    def certbot(self, name, docroot):
        folder = os.path.join(self.base, "certbot")
        return [CERTBOT, "certonly", "-n", "--agree-tos", "--register-unsafely-without-email", "--server",
                self.pebble.directory_url, "--webroot", "-w", docroot, "-d", name, "-d", f"www.{name}",
                "--key-type", "rsa", "--rsa-key-size", self.bits, "--config-dir", f"{folder}/etc",
                "--work-dir", f"{folder}/work", "--logs-dir", f"{folder}/logs"], {"REQUESTS_CA_BUNDLE": self.pebble.ca_bundle}

    def acme_tiny(self, name, docroot):
        folder = os.path.join(self.base, "acme-tiny")
        os.makedirs(folder, exist_ok=True)
        account = os.path.join(folder, "account.key")
        key, csr = os.path.join(folder, f"{name}.key"), os.path.join(folder, f"{name}.csr")
        challenges = os.path.join(docroot, ".well-known", "acme-challenge")
        script = (f"set -e; [ -f {account} ] || openssl genrsa -out {account} 2048 2>/dev/null; "
                  f"openssl genrsa -out {key} {self.bits} 2>/dev/null; "
                  f"openssl req -new -sha256 -key {key} -subj /CN={name} -addext subjectAltName=DNS:{name},DNS:www.{name} "
                  f"-out {csr}; mkdir -p {challenges}; "
                  f"acme-tiny --account-key {account} --csr {csr} --acme-dir {challenges} "
                  f"--directory-url {self.pebble.directory_url} --disable-check > {folder}/{name}.crt")
        return ["sh", "-c", script], {"SSL_CERT_FILE": self.pebble.ca_bundle}

    def uacme(self, name, docroot):
        folder = os.path.join(self.base, "uacme")
        bundle = os.path.join(self.base, "uacme-ca.crt")
        if not os.path.exists(bundle):
            shutil.copy(self.pebble.ca_bundle, bundle)
        challenges = os.path.join(docroot, ".well-known", "acme-challenge")
        # uacme's libcurl-gnutls trusts only the system bundle: give it Pebble's in a private mount namespace.
        new = "" if os.path.exists(os.path.join(folder, "private", "key.pem")) else \
            f"uacme -c {folder} -a {self.pebble.directory_url} -y -t RSA new >/dev/null; "
        script = (f"mount --bind {bundle} /etc/ssl/certs/ca-certificates.crt && mkdir -p {challenges} && {new}"
                  f"UACME_CHALLENGE_PATH={challenges} uacme -c {folder} -a {self.pebble.directory_url} -t RSA -b {self.bits} "
                  f"-h /usr/share/uacme/uacme.sh issue {name} www.{name}")
        return ["unshare", "-m", "sh", "-c", script], {}


CONTENDERS = {LECP_PAGE: "lecp_page", LECP_CLI: "lecp_cli", "certbot": "certbot", "acme-tiny": "acme_tiny",
              "uacme": "uacme"}


def time_one(world: World, contender: str) -> tuple[float | None, str]:
    """Seconds for one issuance by C{contender} (None and the reason when it failed)."""
    name, docroot = world.fresh_site()
    make = getattr(world, CONTENDERS[contender])
    started = time.perf_counter()
    try:
        if contender == LECP_PAGE:
            make(name, docroot)
            return time.perf_counter() - started, ""
        argv, env = make(name, docroot)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "LANG": "C.UTF-8", **env})
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            return None, (done.stderr or done.stdout).strip()[-400:]
        return elapsed, ""
    except Exception as e:
        return None, str(e)[-400:]


def run_set(world: World, contenders: list[str], runs: int) -> dict:
    """A warm-up round, then C{runs} counted rounds, the order rotating each round."""
    figures: dict = {c: [] for c in contenders}
    failures: dict = {c: [] for c in contenders}
    for round_ in range(runs + 1):
        order = contenders[round_ % len(contenders):] + contenders[:round_ % len(contenders)]
        for contender in order:
            seconds, error = time_one(world, contender)
            if round_ == 0:
                if seconds is None:
                    failures[contender].append(f"warm-up: {error}")
                continue
            if seconds is None:
                failures[contender].append(error)
            else:
                figures[contender].append(seconds)
        print(f"  round {round_}{' (warm-up)' if round_ == 0 else ''}: done", flush=True)
    medians = {c: statistics.median(v) for c, v in figures.items() if v}
    peers = [c for c in contenders if c not in (LECP_PAGE, LECP_CLI) and c in medians]
    fastest = min(peers, key=lambda c: medians[c]) if peers else None
    ratios = {}
    for mine in (LECP_PAGE, LECP_CLI):
        if mine in medians:
            ratios[mine] = {peer: round(medians[mine] / medians[peer], 3) for peer in peers}
            if fastest:
                ratios[mine]["fastest peer"] = round(medians[mine] / medians[fastest], 3)
    return {"runs": {c: [round(v, 4) for v in figures[c]] for c in contenders},
            "summary": {c: summary(v) for c, v in figures.items() if v}, "medians": medians,
            "failures": failures, "fastest_peer": fastest, "ratios": ratios}


def build_world(base: str, settings, key_type: str, reactor):
    """Pebble and the emulated cPanel with lecp's page for the account `bench` (serving from the reactor thread)."""
    from twisted.internet.threads import blockingCallFromThread

    from lecp.testing.cpanel.build import create_server
    from lecp.testing.cpanel.cpsrvd import listen_front
    from lecp.testing.cpanel.web import listen_web
    from lecp.testing.pebble import Pebble
    from tests.integration.test_page import install_plugin

    pebble = Pebble(os.path.join(base, "pebble"), settings).start()
    server = create_server(os.path.join(base, "cpanel"), {
        "hostname": "server.lecp.test", "accounts": [{"user": "bench", "domain": "bench.test", "password": "bench-password"}]})
    install_plugin(server)
    config = os.path.join(base, "lecp.toml")
    with open(config, "w") as f:
        f.write(f'[acme]\ndirectory = "{pebble.directory_url}"\nca_bundle = "{pebble.ca_bundle}"\n'
                f'[certificates]\nkey_type = "{key_type}"\nkey_types = ["rsa:2048", "rsa:4096"]\npage_deadline = 120\n'
                f'[preflight]\nport = {pebble.http_port}\nresolve = "dns:127.0.0.1:{pebble.dns_port}"\n'
                f'[paths]\ndaemon_socket = "{base}/none.sock"\n')

    def listen():
        return [listen_web(reactor, pebble.http_port, server), listen_front(reactor, 0, server, {"LECP_CONFIG": config})]

    ports = blockingCallFromThread(reactor, listen)
    world = World(base, pebble, server, f"http://127.0.0.1:{ports[1].getHost().port}", key_type)
    return world, ports


def benchmark(args, reactor) -> dict:
    from twisted.internet.threads import blockingCallFromThread

    from lecp.testing.pebble import PebbleSettings

    sets = {
        "nosleep": (PebbleSettings(nosleep=True, nonce_reject=0), "rsa:2048", list(CONTENDERS)),
        "default": (PebbleSettings.defaults(), "rsa:2048", list(CONTENDERS)),
        "rsa4096": (PebbleSettings(nosleep=True, nonce_reject=0), "rsa:4096", [LECP_PAGE, LECP_CLI, "certbot"]),
    }
    results = {}
    for name in args.sets.split(","):
        settings, key_type, contenders = sets[name]
        base = tempfile.mkdtemp(prefix=f"lecp-peers-{name}-")
        print(f"set {name}: {key_type}, {', '.join(contenders)}", flush=True)
        try:
            world, ports = build_world(base, settings, key_type, reactor)
            try:
                results[name] = {"key_type": key_type, "pebble": "defaults" if name == "default" else "PEBBLE_VA_NOSLEEP=1",
                                 **run_set(world, contenders, args.runs)}
            finally:
                blockingCallFromThread(reactor, lambda: __import__("twisted.internet.defer", fromlist=["x"]).gatherResults(
                    [p.stopListening() for p in ports]))
                world.pebble.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="counted rounds after the warm-up (at least 5)")
    parser.add_argument("--sets", default="nosleep,default,rsa4096")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("peers_issuance: run as root (uacme needs a private mount namespace)", file=sys.stderr)
        return 1
    if not os.access(CERTBOT, os.X_OK):
        print(f"peers_issuance: {CERTBOT} is missing; run `make bench-deps`", file=sys.stderr)
        return 1
    from twisted.internet import reactor

    box = {}

    def drive():
        try:
            box["results"] = benchmark(args, reactor)
        except BaseException as e:  # reported after the reactor stops
            box["error"] = e
        finally:
            reactor.callFromThread(reactor.stop)

    # The reactor runs in the main thread (it reaps the page's CGI processes); the benchmark drives from a thread.
    reactor.callWhenRunning(lambda: threading.Thread(target=drive, daemon=True).start())
    reactor.run()
    if "error" in box:
        raise box["error"]
    results = box["results"]
    path = write_result("peers_issuance", {"benchmark": "peers_issuance", "peers": versions(), "sets": results,
                                           "targets": {"lecp/fastest peer": 0.8, "lecp/certbot": 0.5}})
    for name, result in results.items():
        print(f"\n{name} ({result['key_type']}, Pebble {result['pebble']}): median seconds per issuance")
        for contender, seconds in sorted(result["medians"].items(), key=lambda item: item[1]):
            failed = len(result["failures"][contender])
            print(f"  {contender:14} {seconds:7.3f} s" + (f"   ({failed} failed)" if failed else ""))
        for mine, ratios in result["ratios"].items():
            print(f"  {mine}/peer: " + ", ".join(f"{peer} {ratio:.2f}" for peer, ratio in ratios.items()))
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
