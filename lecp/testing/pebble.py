# -*- test-case-name: tests.integration.test_pebble_launcher -*-
"""
Runs Debian's Pebble (the ACME test server) and pebble-challtestsrv (its mock DNS) on free
loopback ports, with a TLS certificate made here, for tests, benchmarks and the sandbox.

DNS answers 127.0.0.1 for every name and nothing for AAAA: Pebble 2.4 tries AAAA first and
would otherwise validate against [::1] (reference/acme.md §2.4). Pebble validates HTTP-01 on
C{http_port}: whatever serves the webroot must listen there.

    python -m lecp.testing.pebble run --state-dir DIR [--webroot DIR] [--default]

runs both in the foreground (and a webroot server when asked), writes C{DIR/pebble.json}, and
stops everything it started on SIGINT or SIGTERM.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lecp.keys import private_key_to_pem

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


class PebbleNotInstalled(RuntimeError):
    """Pebble's binaries are missing; says how to install them."""


class PebbleFailed(RuntimeError):
    """Pebble or challtestsrv did not come up; carries the tail of its log."""


def free_ports(count: int) -> list[int]:
    """C{count} distinct free TCP ports on 127.0.0.1 (held open together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _write_tls_certificate(cert_path: str, key_path: str) -> None:
    """A self-signed certificate for localhost and 127.0.0.1, for Pebble's HTTPS listeners."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lecp test Pebble")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_to_pem(key))


@attrs.frozen
class PebbleSettings:
    """
    Pebble's knobs. C{None} leaves Pebble's own default (reference/acme.md §2.3).

    @ivar nosleep: C{PEBBLE_VA_NOSLEEP}: no random 0-4 s sleep before validations.
    @ivar nonce_reject: C{PEBBLE_WFE_NONCEREJECT}: percent of good nonces rejected (default 5).
    @ivar authz_reuse: C{PEBBLE_AUTHZREUSE}: percent of valid authorizations reused (default 50).
    @ivar chain_length: C{PEBBLE_CHAIN_LENGTH}: intermediates between leaf and root (default 1).
    @ivar alternate_roots: C{PEBBLE_ALTERNATE_ROOTS}: extra chains linked as alternates (default 0).
    @ivar certificate_validity: certificate lifetime in seconds (default 5 years).
    """

    nosleep: bool = True
    nonce_reject: int | None = None
    authz_reuse: int | None = None
    chain_length: int | None = None
    alternate_roots: int | None = None
    certificate_validity: int | None = None
    strict: bool = False

    @classmethod
    def defaults(cls) -> "PebbleSettings":
        """Pebble exactly as shipped: validation sleeps, 5 % bad nonces, 50 % authz reuse."""
        return cls(nosleep=False)

    def environment(self) -> dict:
        env = {}
        if self.nosleep:
            env["PEBBLE_VA_NOSLEEP"] = "1"
        for name, value in (
            ("PEBBLE_WFE_NONCEREJECT", self.nonce_reject),
            ("PEBBLE_AUTHZREUSE", self.authz_reuse),
            ("PEBBLE_CHAIN_LENGTH", self.chain_length),
            ("PEBBLE_ALTERNATE_ROOTS", self.alternate_roots),
        ):
            if value is not None:
                env[name] = str(int(value))
        return env


@attrs.define
class Pebble:
    """
    One Pebble plus its challtestsrv, started by L{start} and stopped by L{stop}.

    @ivar workdir: where the configuration, TLS files and logs go.
    """

    workdir: str
    settings: PebbleSettings = attrs.field(factory=PebbleSettings)
    listen_port: int = 0
    management_port: int = 0
    http_port: int = 0
    tls_port: int = 0
    dns_port: int = 0
    dns_management_port: int = 0
    _processes: list = attrs.field(factory=list)

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.listen_port}/dir"

    @property
    def ca_bundle(self) -> str:
        """The PEM that Pebble's HTTPS listeners present (trust it to talk to Pebble)."""
        return os.path.join(self.workdir, "pebble-tls.pem")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes]

    def start(self, timeout: float = 30.0) -> "Pebble":
        """Start challtestsrv and Pebble; return once both accept connections."""
        for binary in (PEBBLE, CHALLTESTSRV):
            if not os.access(binary, os.X_OK):
                raise PebbleNotInstalled(
                    f"{binary} is missing: install Debian's 'pebble' package (make test does it: "
                    "apt-get install pebble)"
                )
        os.makedirs(self.workdir, exist_ok=True)
        ports = free_ports(6)
        (self.listen_port, self.management_port, self.http_port, self.tls_port, self.dns_port,
         self.dns_management_port) = ports
        key_path = os.path.join(self.workdir, "pebble-tls.key")
        _write_tls_certificate(self.ca_bundle, key_path)
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.listen_port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": self.ca_bundle,
                "privateKey": key_path,
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        if self.settings.certificate_validity is not None:
            config["pebble"]["certificateValidityPeriod"] = int(self.settings.certificate_validity)
        config_path = os.path.join(self.workdir, "pebble-config.json")
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2)
        try:
            self._spawn(
                "challtestsrv",
                [CHALLTESTSRV, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01",
                 f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-management", f"127.0.0.1:{self.dns_management_port}"],
                {},
            )
            self._wait_for_port("challtestsrv", self.dns_management_port, timeout)
            args = [PEBBLE, "-config", config_path, "-dnsserver", f"127.0.0.1:{self.dns_port}"]
            if self.settings.strict:
                args.append("-strict")
            self._spawn("pebble", args, self.settings.environment())
            self._wait_for_port("pebble", self.listen_port, timeout)
            self._wait_for_port("pebble", self.management_port, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, args: list[str], extra_env: dict) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEBBLE_")}
        env.update(extra_env)
        log = open(os.path.join(self.workdir, f"{name}.log"), "ab")
        try:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=self.workdir, start_new_session=True,
            )
        finally:
            log.close()
        process.lecp_name = name
        self._processes.append(process)

    def _log_tail(self, name: str) -> str:
        try:
            with open(os.path.join(self.workdir, f"{name}.log"), "rb") as f:
                return f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _wait_for_port(self, name: str, port: int, timeout: float) -> None:
        """Poll until C{port} accepts a connection; fail loudly if the process died or time ran out."""
        process = next(p for p in self._processes if p.lecp_name == name)
        until = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise PebbleFailed(f"{name} exited with status {process.returncode}:\n{self._log_tail(name)}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > until:
                    raise PebbleFailed(f"{name} did not listen on port {port} within {timeout} s:\n{self._log_tail(name)}")
                time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop exactly the processes this object started (TERM, then KILL)."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()

    def _management_get(self, path: str) -> bytes:
        context = ssl.create_default_context(cafile=self.ca_bundle)
        url = f"https://127.0.0.1:{self.management_port}{path}"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return response.read()

    def issuing_roots(self) -> list[str]:
        """The PEM roots Pebble signs with: the default one first, then the alternates."""
        count = 1 + (self.settings.alternate_roots or 0)
        return [self._management_get(f"/roots/{i}").decode("ascii") for i in range(count)]

    def set_ipv4(self, host: str, address: str) -> None:
        """Make challtestsrv answer C{address} for C{host} (e.g. an address where nothing listens)."""
        body = json.dumps({"host": host, "addresses": [address]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.dns_management_port}/add-a", data=body)
        urllib.request.urlopen(request, timeout=10).read()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def describe(self) -> dict:
        """The facts a client needs, as JSON-ready data."""
        return {
            "directory_url": self.directory_url,
            "ca_bundle": self.ca_bundle,
            "http_port": self.http_port,
            "management_url": f"https://127.0.0.1:{self.management_port}",
            "dns_management_url": f"http://127.0.0.1:{self.dns_management_port}",
            "pids": self.pids,
            "workdir": self.workdir,
        }


def _run(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lecp.testing.pebble", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run Pebble in the foreground until interrupted")
    run.add_argument("--state-dir", required=True, help="folder for configuration, logs and pebble.json")
    run.add_argument("--webroot", help="also serve this folder on Pebble's HTTP-01 port")
    run.add_argument("--default", action="store_true", help="Pebble's defaults: validation sleeps, 5%% bad nonces")
    run.add_argument("--validity", type=int, help="certificate lifetime in seconds")
    run.add_argument("--alternate-roots", type=int)
    run.add_argument("--chain-length", type=int)
    args = parser.parse_args(argv)
    settings = PebbleSettings(
        nosleep=not args.default,
        certificate_validity=args.validity,
        alternate_roots=args.alternate_roots,
        chain_length=args.chain_length,
    )
    state_dir = os.path.abspath(args.state_dir)
    pebble = Pebble(os.path.join(state_dir, "pebble"), settings)
    try:
        pebble.start()
    except (PebbleNotInstalled, PebbleFailed) as e:
        print(f"pebble: {e}", file=sys.stderr)
        return 1
    from twisted.internet import reactor

    from lecp.testing.webserver import listen_webroot

    facts = pebble.describe()
    if args.webroot:
        os.makedirs(args.webroot, exist_ok=True)
        listen_webroot(reactor, pebble.http_port, os.path.abspath(args.webroot))
        facts["webroot"] = os.path.abspath(args.webroot)
    facts["pid"] = os.getpid()
    with open(os.path.join(state_dir, "pebble.json"), "w") as f:
        json.dump(facts, f, indent=2)
    print(json.dumps(facts), flush=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: reactor.callFromThread(reactor.stop))
    try:
        reactor.run(installSignalHandlers=False)
    finally:
        pebble.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_run(sys.argv[1:]))
