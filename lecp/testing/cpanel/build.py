"""
Creating an emulated cPanel server from a description:

    {"hostname": "server.lecp.test",
     "accounts": [{"user": "alice", "password": "…", "email": "alice@example.net",
                   "domain": "alice.test", "addon": ["shop.test"], "sub": ["blog.alice.test"],
                   "parked": ["alice-alias.test"], "features": {"lecp": true},
                   "quota": {"megabytes_used": 12, "megabyte_limit": null},
                   "self_signed": ["alice.test"], "home": "/optional/home"}],
     "self_signed_key_type": "rsa:2048"}

Homes default to C{DIR/home/USER}; when a Linux user of the same name exists and this runs as
root, the home belongs to that user (uid, gid) as on a real server.
"""

from __future__ import annotations

import json
import os
import pwd
import time

from lecp.fsutil import atomic_write
from lecp.keys import certificate_to_pem, generate_private_key, make_self_signed_certificate, private_key_to_pem
from lecp.testing.cpanel import uapi, whm
from lecp.testing.cpanel.cli import write_scripts
from lecp.testing.cpanel.server import SERVICES, Server, hash_password, vhosts_of, write_userdatadomains

DEFAULT_PASSWORD = "lecp-sandbox"


class SpecError(ValueError):
    """The server description is wrong; says what and where."""


def _linux_user(name: str):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _chown_tree(path: str, uid: int, gid: int) -> None:
    for folder, dirs, files in os.walk(path):
        os.chown(folder, uid, gid, follow_symlinks=False)
        for name in files:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def _domain(value, what: str) -> str:
    name = str(value).strip().lower().rstrip(".")
    if not name or "/" in name or " " in name or "." not in name:
        raise SpecError(f"{what}: {value!r} is not a domain name")
    return name


def _account_record(server: Server, spec: dict, index: int) -> dict:
    user = str(spec.get("user", "")).strip()
    if not user or not user.isalnum() or not user[0].isalpha() or len(user) > 16:
        raise SpecError(f"account {index + 1}: user {spec.get('user')!r} must be 1-16 letters and digits, starting with a letter")
    linux = _linux_user(user)
    home = os.path.abspath(spec.get("home") or (linux.pw_dir if linux and spec.get("use_linux_home") else server.path("home", user)))
    main = _domain(spec.get("domain"), f"account {user}: domain")
    addons, subs = [], []
    for entry in spec.get("addon", []):
        name = _domain(entry["domain"] if isinstance(entry, dict) else entry, f"account {user}: addon")
        docroot = entry.get("docroot") if isinstance(entry, dict) else None
        addons.append({"domain": name, "servername": f"{name.split('.')[0]}.{main}",
                       "documentroot": os.path.abspath(docroot or os.path.join(home, name))})
    for entry in spec.get("sub", []):
        name = _domain(entry["domain"] if isinstance(entry, dict) else entry, f"account {user}: subdomain")
        docroot = entry.get("docroot") if isinstance(entry, dict) else None
        label = name[: -len(main) - 1] if name.endswith("." + main) else name.split(".")[0]
        subs.append({"domain": name, "documentroot": os.path.abspath(docroot or os.path.join(home, "public_html", label))})
    return {
        "user": user,
        "password": hash_password(str(spec.get("password") or DEFAULT_PASSWORD)),
        "uid": linux.pw_uid if linux else 20000 + index,
        "gid": linux.pw_gid if linux else 20000 + index,
        "home": home,
        "contact_email": spec.get("email", f"{user}@{main}"),
        "contact_email_2": spec.get("email2", ""),
        "owner": spec.get("owner", "root"),
        "plan": spec.get("plan", "default"),
        "theme": "jupiter",
        "ip": spec.get("ip", "127.0.0.1"),
        "suspended": bool(spec.get("suspended", False)),
        "startdate": int(spec.get("startdate", time.time())),
        "features": dict(spec.get("features", {})),
        "quota": dict(spec.get("quota", {"megabytes_used": 12, "megabyte_limit": None})),
        "main_domain": {"domain": main, "documentroot": os.path.join(home, "public_html")},
        "addon_domains": addons,
        "sub_domains": subs,
        "parked_domains": [_domain(p, f"account {user}: parked") for p in spec.get("parked", [])],
    }


def _self_signed(names: list[str], key_type: str) -> tuple[str, str]:
    key = generate_private_key(key_type)
    cert = make_self_signed_certificate(key, names)
    return certificate_to_pem(cert), private_key_to_pem(key).decode()


def create_server(root: str, spec: dict) -> Server:
    """Make (or extend) the emulated server in C{root} from C{spec}; returns it."""
    server = Server(root)
    os.makedirs(server.root, exist_ok=True)
    hostname = _domain(spec.get("hostname", "server.lecp.test"), "hostname")
    if not os.path.exists(server.path("server.json")):
        atomic_write(server.path("server.json"), json.dumps({"hostname": hostname, "ip": "127.0.0.1"}, indent=2).encode(), 0o644)
    write_scripts(server.root)
    key_type = spec.get("self_signed_key_type", "rsa:2048")
    taken = {}
    for user in server.users():
        for host in vhosts_of(server.account(user)):
            for name in host["names"]:
                taken[name] = user
    for index, account_spec in enumerate(spec.get("accounts", [])):
        record = _account_record(server, account_spec, len(server.users()) + index)
        for host in vhosts_of(record):
            for name in host["names"]:
                if taken.get(name, record["user"]) != record["user"]:
                    raise SpecError(f"account {record['user']}: {name} already belongs to {taken[name]}")
                taken[name] = record["user"]
        for host in vhosts_of(record):
            os.makedirs(host["documentroot"], mode=0o755, exist_ok=True)
        os.makedirs(os.path.join(record["home"], ".cpanel", "nvdata"), mode=0o700, exist_ok=True)
        server.save_account(record)
        linux = _linux_user(record["user"])
        if linux and os.geteuid() == 0 and record["home"].startswith(server.root):
            _chown_tree(record["home"], linux.pw_uid, linux.pw_gid)
        for vhost in account_spec.get("self_signed", []):
            host = next((h for h in vhosts_of(record) if vhost in h["names"]), None)
            if host is None:
                raise SpecError(f"account {record['user']}: self_signed {vhost} is not one of its domains")
            cert, key = _self_signed([host["domain"], f"www.{host['domain']}"], key_type)
            answer = uapi.call(server, record["user"], "SSL", "install_ssl", {"domain": host["domain"], "cert": cert, "key": key})
            if not answer["result"]["status"]:
                raise SpecError(f"installing a self-signed certificate on {vhost}: {answer['result']['errors']}")
    write_userdatadomains(server)
    for service in SERVICES:
        if not os.path.exists(os.path.join(server.service_dir(service), "certificate.pem")):
            cert, key = _self_signed([hostname], key_type)
            answer = whm.call(server, "install_service_ssl_certificate", {"service": service, "crt": cert, "key": key, "cabundle": ""})
            if str(answer["metadata"]["result"]) != "1":
                raise SpecError(f"service certificate for {service}: {answer['metadata']['reason']}")
    return server
