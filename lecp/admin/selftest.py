# -*- test-case-name: tests.integration.test_admin -*-
"""
C{lecp self-test}: is this server set up so that lecp can work? The configuration is readable
(by the users' workers too), root's state folder is private, the ACME directory answers, WHM's
API answers, the daemon is healthy, and, for a given domain, the HTTP-01 pre-flight passes (run
as the domain's owner, as issuance runs it). Each check says what is wrong and what to do.
"""

from __future__ import annotations

import json
import os
import stat
import urllib.error
import urllib.request

import attrs


@attrs.frozen
class Check:
    """One check's result, and what to do when it failed."""

    name: str
    ok: bool
    detail: str
    hint: str = ""

    def to_json(self) -> dict:
        return attrs.asdict(self)


def health_url(config, path: str = "/health") -> str:
    return f"http://127.0.0.1:{config.health_port}{path}"


def fetch_health(config, timeout: float = 5.0) -> dict:
    """The daemon's /health document; OSError (with the reason) when it does not answer."""
    try:
        with urllib.request.urlopen(health_url(config), timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:  # 503: a service is failing; the body still says which
        try:
            return json.load(e)
        except ValueError:
            raise OSError(f"{health_url(config)} answered {e.code}") from None
    except urllib.error.URLError as e:
        raise OSError(f"{health_url(config)} does not answer ({e.reason})") from None
    except ValueError:
        raise OSError(f"{health_url(config)} did not answer JSON") from None


def check_configuration(config) -> Check:
    if config.source in ("", "(defaults)"):
        return Check("configuration", True, "no configuration file: the built-in defaults are in force")
    mode = os.stat(config.source).st_mode
    if not mode & stat.S_IROTH:
        return Check("configuration", False, f"{config.source} is not readable by the accounts' workers",
                     f"chmod 644 {config.source} (keep the SMTP password in [mail] password_file)")
    return Check("configuration", True, f"{config.source} is valid")


def check_state_folder(config) -> Check:
    try:
        info = os.stat(config.state_dir, follow_symlinks=False)
    except FileNotFoundError:
        return Check("state folder", True, f"{config.state_dir} does not exist yet; the daemon creates it")
    if not stat.S_ISDIR(info.st_mode):
        return Check("state folder", False, f"{config.state_dir} is not a folder", "move it aside and restart lecp")
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        return Check("state folder", False, f"{config.state_dir} can be changed by other users "
                     f"(owner uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o})",
                     f"chown root:root {config.state_dir} && chmod 700 {config.state_dir}")
    return Check("state folder", True, f"{config.state_dir} is private")


def check_daemon(config) -> Check:
    try:
        health = fetch_health(config)
    except OSError as e:
        return Check("daemon", False, str(e), "start it: systemctl start lecp (logs: journalctl -u lecp)")
    if health.get("status") != "ok":
        failing = ", ".join(f"{name}: {health['services'][name].get('last_error', '')}" for name in health.get("failing", ()))
        return Check("daemon", False, f"a service is failing ({failing})", "see the daemon's log for details")
    return Check("daemon", True, f"healthy, up {round(health.get('uptime', 0))} s")


async def check_acme(reactor, config) -> Check:
    from lecp.acme.http import make_http_client

    url = config.acme_directory
    try:
        http = make_http_client(reactor, config.ca_bundle or None)
        response = await http.get(url, timeout=15)
        body = await response.json() if response.code == 200 else None
    except Exception as e:
        return Check("ACME directory", False, f"{url} cannot be reached: {e}",
                     "check the server's outgoing HTTPS (firewall, proxy) and [acme] directory/ca_bundle")
    if not isinstance(body, dict) or "newOrder" not in body:
        return Check("ACME directory", False, f"{url} answered {response.code} without an ACME directory",
                     "check [acme] directory in the configuration")
    return Check("ACME directory", True, f"{url} answers")


async def check_whm(reactor, config) -> Check:
    from lecp.cpanel import WHM, WHMAPICommand
    from lecp.cpanel.envelope import CPanelError

    whm = WHM(WHMAPICommand(reactor, executable=config.whmapi1))
    try:
        hostname = await whm.hostname()
        accounts = await whm.accounts()
    except (CPanelError, OSError) as e:
        return Check("WHM API", False, f"{config.whmapi1} failed: {e}", "check that cPanel is running (whmapi1 version)")
    return Check("WHM API", True, f"{hostname}, {len(accounts)} accounts")


def owner_of(config, domain: str) -> tuple[str, str]:
    """The account and website serving C{domain}, from cPanel's domain map; LookupError when none does."""
    from lecp.daemon.scan import read_userdatadomains, vhost_domains

    for (user, vhost), (domains, _) in vhost_domains(read_userdatadomains(config.userdatadomains)).items():
        if domain in domains or (domain.startswith("www.") and domain[4:] in domains):
            return user, vhost
    raise LookupError(f"{domain} is not a domain of any account on this server")


async def check_domain(reactor, config, domain: str) -> Check:
    from lecp.admin.actions import config_path
    from lecp.daemon.accounts import read_passwd
    from lecp.daemon.workers import WorkerRunner

    name = f"pre-flight of {domain}"
    try:
        user, vhost = owner_of(config, domain)
    except LookupError as e:
        return Check(name, False, str(e), "add it to an account in cPanel first")
    import sys

    runner = WorkerRunner(reactor, config_path(config), 1, config.worker_timeout, config.worker_python or sys.executable,
                          passwd=read_passwd(config.passwd))
    outcome = await runner.run(user, {"job": "check", "vhost": vhost, "names": [domain]})
    if outcome.ok:
        return Check(name, True, f"http://{domain}/.well-known/acme-challenge/ reaches {user}'s website {vhost}")
    reasons = "; ".join(f"{p.name}: {p.reason}" for p in outcome.problems) or outcome.message
    advice = "; ".join(sorted({p.advice for p in outcome.problems if p.advice})) or outcome.advice
    return Check(name, False, reasons, advice or "see README.md, Troubleshooting")


async def self_test(reactor, config, domain: str | None = None) -> list[Check]:
    """Every check, in order."""
    checks = [check_configuration(config), check_state_folder(config), await check_acme(reactor, config),
              await check_whm(reactor, config), check_daemon(config)]
    if domain:
        checks.append(await check_domain(reactor, config, domain))
    return checks
