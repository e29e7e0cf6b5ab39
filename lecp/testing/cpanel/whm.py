"""
The WHM API 1 functions of the emulated cPanel (root only), with WHM's envelope: C{metadata}
with C{result} and C{reason}, and C{data} only on success (reference/cpanel-api.md §2, §3.15-3.21).
"""

from __future__ import annotations

import json
import os
import re
import time

from lecp.fsutil import atomic_write
from lecp.testing.cpanel import sslstore
from lecp.testing.cpanel.server import SERVICE_DESCRIPTIONS, SERVICES, VERSION, NoSuchAccount, Server, userdata, vhost_for


class WHMFailure(Exception):
    """A WHM function failed with C{reason}; C{data} is sent only when given."""

    def __init__(self, reason: str, data=None):
        super().__init__(reason)
        self.reason, self.data = reason, data


def _arg(args: dict, name: str) -> str:
    value = args.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    return "" if value is None else str(value).strip()


def _acct(server: Server, user: str) -> dict:
    account = server.account(user)
    emails = [e for e in (account.get("contact_email"), account.get("contact_email_2")) if e]
    return {
        "user": user,
        "domain": account["main_domain"]["domain"],
        "owner": account.get("owner", "root"),
        "plan": account.get("plan", "default"),
        "theme": account.get("theme", "jupiter"),
        "shell": "/bin/bash",
        "partition": "home",
        "email": ", ".join(emails) if emails else "*unknown*",
        "ip": account.get("ip", "127.0.0.1"),
        "ipv6": [],
        "suspended": int(bool(account.get("suspended"))),
        "suspendreason": account.get("suspendreason", "not suspended") if account.get("suspended") else "not suspended",
        "suspendtime": 0,
        "is_locked": 0,
        "outgoing_mail_suspended": 0,
        "outgoing_mail_hold": 0,
        "temporary": 0,
        "startdate": time.strftime("%y %b %d %H:%M", time.gmtime(account.get("startdate", 0))),
        "unix_startdate": account.get("startdate", 0),
        "uid": account.get("uid"),
        "disklimit": "unlimited",
        "diskused": f"{account.get('quota', {}).get('megabytes_used', 0)}M",
        "maxaddons": "unlimited",
        "maxsub": "unlimited",
        "maxparked": "unlimited",
        "mailbox_format": "maildir",
        "backup": 0,
        "legacy_backup": 0,
        "has_backup": 0,
        "child_nodes": [],
    }


def listaccts(server: Server, args: dict):
    users = server.users()
    search, searchtype = _arg(args, "search"), _arg(args, "searchtype") or "user"
    if search:
        if searchtype not in ("user", "domain", "domain_and_user", "owner", "ip", "package"):
            raise WHMFailure("Unknown search type.")
        method = _arg(args, "searchmethod") or "regex"
        matcher = (lambda v: v == search) if method == "exact" else (lambda v: re.search(search, v) is not None)
        keep = []
        for user in users:
            acct = _acct(server, user)
            fields = {"user": [user], "domain": [acct["domain"]], "owner": [acct["owner"]], "ip": [acct["ip"]],
                      "package": [acct["plan"]], "domain_and_user": [user, acct["domain"]]}[searchtype]
            if any(matcher(v) for v in fields):
                keep.append(user)
        users = keep
    if not users:
        return None
    want = [w for w in _arg(args, "want").split(",") if w]
    accounts = [_acct(server, u) for u in users]
    if want:
        accounts = [{k: v for k, v in a.items() if k in want} for a in accounts]
    return {"acct": accounts}


def accountsummary(server: Server, args: dict):
    user, domain = _arg(args, "user"), _arg(args, "domain").lower()
    if not user and not domain:
        raise WHMFailure("You must specify a user or domain to get a summary of.")
    if domain and not user:
        user = server.owner_of_domain(domain) or ""
    try:
        return {"acct": [_acct(server, user)]}
    except NoSuchAccount:
        raise WHMFailure("Account does not exist.", data={"acct": []}) from None


def gethostname(server: Server, args: dict):
    hostname = server.settings.get("hostname")
    if not hostname:
        raise WHMFailure("Unable to determine hostname.")
    return {"hostname": hostname}


def version(server: Server, args: dict):
    return {"version": VERSION}


def domainuserdata(server: Server, args: dict):
    domain = _arg(args, "domain").lower()
    if not domain:
        raise WHMFailure("API failure: You must specify a domain.")
    user = server.owner_of_domain(domain)
    if user is None:
        raise WHMFailure(f"API failure: The domain “{domain}” does not exist.")
    account = server.account(user)
    return {"userdata": userdata(account, vhost_for(account, domain))}


def _service_components(server: Server, service: str) -> dict:
    folder = server.service_dir(service)

    def read(name):
        try:
            with open(os.path.join(folder, name)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    certificate = read("certificate.pem")
    info = json.loads(read("info.json") or "null")
    return {"service": service, "certificate": certificate, "key": read("key.pem"), "cabundle": read("cabundle.pem") or None,
            "certificate_info": info}


def fetch_service_ssl_components(server: Server, args: dict):
    return {"services": [_service_components(server, s) for s in SERVICES]}


def install_service_ssl_certificate(server: Server, args: dict):
    from lecp.keys import join_pem_chain, key_matches_certificate, load_certificate, load_private_key, split_pem_chain

    service = _arg(args, "service")
    if service not in SERVICES:
        raise WHMFailure(f"“{service}” is not a valid service name. Use one of: {', '.join(SERVICES)}.")
    try:
        cert = load_certificate(_arg(args, "crt"))
        key = load_private_key(_arg(args, "key"))
    except ValueError as e:
        raise WHMFailure(f"The certificate or key is not valid: {e}") from None
    if not key_matches_certificate(key, cert):
        raise WHMFailure("The certificate does not match the private key.")
    leaf = split_pem_chain(_arg(args, "crt"))[0]
    cabundle = join_pem_chain(split_pem_chain(_arg(args, "cabundle")))
    folder = server.service_dir(service)
    with server.locked():
        os.makedirs(folder, mode=0o700, exist_ok=True)
        atomic_write(os.path.join(folder, "certificate.pem"), leaf.encode(), 0o644)
        atomic_write(os.path.join(folder, "key.pem"), (_arg(args, "key") + "\n").encode(), 0o600)
        atomic_write(os.path.join(folder, "cabundle.pem"), cabundle.encode(), 0o644)
        info = sslstore.describe_certificate(leaf)
        for key in ("id", "subject_text", "auto_ssl_provider", "auto_ssl_provider_display_name", "is_autossl",
                    "validation_type", "signature_algorithm", "subject.commonName", "serial"):
            info.pop(key, None)
        atomic_write(os.path.join(folder, "info.json"), json.dumps(info).encode(), 0o644)
        os.makedirs(server.path("var", "log"), exist_ok=True)
        with open(server.path("var", "log", "restarts.log"), "a") as f:
            f.write(f"{int(time.time())} restart {service}\n")
    components = _service_components(server, service)
    return {"service": service, "service_description": SERVICE_DESCRIPTIONS[service],
            "certificate": components["certificate"], "certificate_info": components["certificate_info"]}


def create_user_session(server: Server, args: dict):
    user, service = _arg(args, "user"), _arg(args, "service")
    if service not in ("cpaneld", "webmaild", "whostmgrd"):
        raise WHMFailure("The “service” parameter must be one of: cpaneld, webmaild, whostmgrd.")
    try:
        server.account(user)
    except NoSuchAccount:
        raise WHMFailure(f"The user “{user}” does not exist.") from None
    session = server.new_session(user, lifetime=900, one_time=True)
    port = server.settings.get("cpsrvd_port", 2083)
    return {
        "cp_security_token": session["token"],
        "expires": session["expires"],
        "session": f"{user}:{session['id']}",
        "url": f"http://127.0.0.1:{port}{session['token']}/login/?session={user}:{session['id']}:{session['login_secret']}",
        "service": service,
    }


FUNCTIONS = {
    "listaccts": listaccts,
    "accountsummary": accountsummary,
    "gethostname": gethostname,
    "version": version,
    "domainuserdata": domainuserdata,
    "fetch_service_ssl_components": fetch_service_ssl_components,
    "install_service_ssl_certificate": install_service_ssl_certificate,
    "create_user_session": create_user_session,
}


def call(server: Server, function: str, args: dict) -> dict:
    """Run one WHM API 1 function; always returns an envelope."""
    metadata = {"command": function, "version": 1}
    handler = FUNCTIONS.get(function)
    if handler is None:
        return {"metadata": {**metadata, "result": 0, "reason": f"Unknown app (“{function}”) requested for this version (1) of the API."}}
    try:
        data = handler(server, args)
    except WHMFailure as failure:
        answer = {"metadata": {**metadata, "result": 0, "reason": failure.reason}}
        if failure.data is not None:
            answer["data"] = failure.data
        return answer
    # install_service_ssl_certificate sets result from a Perl string list: clients have seen "1".
    result = "1" if function == "install_service_ssl_certificate" else 1
    answer = {"metadata": {**metadata, "result": result, "reason": "OK"}}
    if data is not None:
        answer["data"] = data
    return answer
