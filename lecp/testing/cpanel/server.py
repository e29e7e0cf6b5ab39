"""
The emulated cPanel server's state, kept in one directory (C{DIR}):

    DIR/server.json                 hostname, IP, version, the cpsrvd front's port
    DIR/accounts/USER.json          an account: contacts, password hash, features, quota, domains
    DIR/home/USER/                  default homes (an account may name another home)
    DIR/var/cpanel/ssl/apache_tls/SERVERNAME/{combined,certificates}   installed web certificates
    DIR/var/cpanel/ssl/SERVICE/{certificate,key,cabundle}.pem          service certificates
    DIR/sessions/ID.json            cpsrvd sessions and one-time logins
    DIR/bin/uapi, DIR/bin/whmapi1   the command-line faces

Every change holds an exclusive lock on C{DIR/.lock}; every file is replaced atomically.
Kept free of Twisted so that one C{uapi} call stays cheap.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets

from lecp.fsutil import atomic_write

SERVICES = ("cpanel", "exim", "dovecot", "ftp")
SERVICE_DESCRIPTIONS = {
    "cpanel": "Calendar, cPanel, WebDisk, Webmail, and WHM Services",
    "exim": "Exim (SMTP) Server",
    "dovecot": "Dovecot Mail Server",
    "ftp": "FTP Server",
}
PROXY_LABELS = ("cpanel", "webmail", "webdisk", "cpcalendars", "cpcontacts")
VERSION = "11.120.0.16"


class NoSuchAccount(KeyError):
    """The emulated server has no such account."""


def hash_password(password: str, salt: str | None = None) -> str:
    """A PBKDF2 hash of an account password, as stored in the account file."""
    salt = salt or secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 20_000).hex()
    return f"pbkdf2_sha256${salt}${digest}"


def check_password(stored: str, password: str) -> bool:
    """Whether C{password} matches the stored hash."""
    try:
        _, salt, _ = stored.split("$", 2)
    except ValueError:
        return False
    return hmac.compare_digest(stored, hash_password(password, salt))


def _dump(value) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


class Server:
    """An emulated cPanel server in C{root}."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    # Paths and locking

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @contextlib.contextmanager
    def locked(self):
        """Hold the server-wide lock (cPanel serialises changes to an account the same way)."""
        fd = os.open(self.path(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @property
    def settings(self) -> dict:
        with open(self.path("server.json")) as f:
            return json.load(f)

    def update_settings(self, **changes) -> None:
        with self.locked():
            settings = self.settings
            settings.update(changes)
            atomic_write(self.path("server.json"), _dump(settings), 0o644)

    # Accounts

    def users(self) -> list[str]:
        folder = self.path("accounts")
        return sorted(n[:-5] for n in os.listdir(folder) if n.endswith(".json")) if os.path.isdir(folder) else []

    def user_for_uid(self, uid: int) -> str | None:
        """
        The account whose record names C{uid}, for accounts without a passwd entry (the large
        synthetic servers of the benchmarks); the index is rebuilt when a uid is not in it.
        """
        index = getattr(self, "_uids", None)
        if index is None or uid not in index:
            index = {}
            for user in self.users():
                try:
                    index[int(self.account(user).get("uid", -1))] = user
                except (NoSuchAccount, ValueError, TypeError):
                    continue
            self._uids = index
        return index.get(uid)

    def account(self, user: str) -> dict:
        """An account's record; raises L{NoSuchAccount}."""
        if not user or "/" in user or user.startswith("."):
            raise NoSuchAccount(user)
        try:
            with open(self.path("accounts", f"{user}.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            raise NoSuchAccount(user) from None

    def save_account(self, record: dict) -> None:
        os.makedirs(self.path("accounts"), exist_ok=True)
        atomic_write(self.path("accounts", f"{record['user']}.json"), _dump(record), 0o600)

    def add_addon(self, user: str, domain: str) -> str:
        """Add the addon domain C{domain} to C{user}'s account (as WHM would); returns its document root."""
        record = self.account(user)
        main = record["main_domain"]["domain"]
        docroot = os.path.join(record["home"], domain)
        record["addon_domains"].append({"domain": domain, "servername": f"{domain.split('.')[0]}.{main}",
                                        "documentroot": docroot})
        os.makedirs(docroot, mode=0o755, exist_ok=True)
        self.save_account(record)
        write_userdatadomains(self)
        return docroot

    def owner_of_domain(self, domain: str) -> str | None:
        """The account that owns C{domain} (any kind of name, with or without www.)."""
        domain = domain.lower().rstrip(".")
        for user in self.users():
            if vhost_for(self.account(user), domain) is not None:
                return user
        return None

    # Installed certificates and the user's SSL store

    def installed_dir(self, servername: str) -> str:
        return self.path("var", "cpanel", "ssl", "apache_tls", servername)

    def installed(self, servername: str) -> dict | None:
        """What is installed on a vhost (user, ids, leaf PEM, description), or C{None}."""
        try:
            with open(os.path.join(self.installed_dir(servername), "meta.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def service_dir(self, service: str) -> str:
        return self.path("var", "cpanel", "ssl", service)

    # Sessions for the cpsrvd front

    def new_session(self, user: str, lifetime: int = 3600, one_time: bool = False, now=None) -> dict:
        import time

        now = now if now is not None else time.time()
        session = {
            "id": secrets.token_hex(16),
            "user": user,
            "token": "/cpsess" + "".join(secrets.choice("0123456789") for _ in range(10)),
            "expires": int(now + lifetime),
            "login_secret": secrets.token_urlsafe(24) if one_time else None,
        }
        os.makedirs(self.path("sessions"), mode=0o700, exist_ok=True)
        atomic_write(self.path("sessions", f"{session['id']}.json"), _dump(session), 0o600)
        return session

    def session(self, session_id: str) -> dict | None:
        if not session_id or not all(c in "0123456789abcdef" for c in session_id):
            return None
        try:
            with open(self.path("sessions", f"{session_id}.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def save_session(self, session: dict) -> None:
        atomic_write(self.path("sessions", f"{session['id']}.json"), _dump(session), 0o600)


def vhosts_of(account: dict) -> list[dict]:
    """
    The web virtual hosts of an account: main, each addon (on its backing subdomain), each
    subdomain, with every name each answers to.
    """
    main = account["main_domain"]
    hosts = []
    main_names = [main["domain"], f"www.{main['domain']}", f"mail.{main['domain']}"]
    for parked in account.get("parked_domains", []):
        main_names += [parked, f"www.{parked}"]
    hosts.append({"kind": "main_domain", "domain": main["domain"], "servername": main["domain"],
                  "documentroot": main["documentroot"], "names": main_names, "parked": list(account.get("parked_domains", []))})
    for addon in account.get("addon_domains", []):
        backing = addon["servername"]
        names = [addon["domain"], f"www.{addon['domain']}", backing, f"www.{backing}"]
        hosts.append({"kind": "addon_domain", "domain": addon["domain"], "servername": backing,
                      "documentroot": addon["documentroot"], "names": names, "parked": [addon["domain"]]})
    for sub in account.get("sub_domains", []):
        names = [sub["domain"], f"www.{sub['domain']}"]
        hosts.append({"kind": "sub_domain", "domain": sub["domain"], "servername": sub["domain"],
                      "documentroot": sub["documentroot"], "names": names, "parked": []})
    return hosts


def vhost_for(account: dict, name: str) -> dict | None:
    """The vhost of C{account} that answers to C{name}, or C{None}."""
    name = name.lower().rstrip(".")
    for host in vhosts_of(account):
        if name in host["names"]:
            return host
    return None


def userdata(account: dict, host: dict) -> dict:
    """The keys cPanel keeps in C{/var/cpanel/userdata/USER/VHOST} for a vhost."""
    user, home = account["user"], account["home"]
    return {
        "servername": host["servername"],
        "serveralias": " ".join(n for n in host["names"] if n != host["servername"]),
        "documentroot": host["documentroot"],
        "homedir": home,
        "user": user,
        "group": user,
        "owner": account.get("owner", "root"),
        "ip": account.get("ip", "127.0.0.1"),
        "port": 80,
        "hascgi": 1,
        "phpopenbasedirprotect": 1,
        "usecanonicalname": "Off",
        "serveradmin": f"webmaster@{host['domain']}",
        "phpversion": "ea-php82",
        "customlog": [{"format": "combined", "target": f"/etc/apache2/logs/domlogs/{host['servername']}"}],
        "scriptalias": [{"path": f"{host['documentroot']}/cgi-bin", "url": "/cgi-bin/"}],
    }


class RemovingFolderOnStop:
    """A listening port that also removes a (socket) folder when it stops listening."""

    def __init__(self, port, folder: str):
        self.port, self.folder = port, folder

    def getHost(self):
        return self.port.getHost()

    def stopListening(self):
        import shutil

        d = self.port.stopListening()

        def remove(result):
            shutil.rmtree(self.folder, ignore_errors=True)
            return result

        return d.addBoth(remove) if d is not None else remove(None)


def write_userdatadomains(server: Server) -> None:
    """C{DIR/etc/userdatadomains.json}, as cPanel keeps C{/etc/userdatadomains.json} for root."""
    data = {}
    for user in server.users():
        account = server.account(user)
        for host in vhosts_of(account):
            kind = {"main_domain": "main", "addon_domain": "addon", "sub_domain": "sub"}[host["kind"]]
            base = host["servername"] if kind == "addon" else host["domain"]
            data[host["domain"]] = [user, account.get("owner", "root"), kind, base, host["documentroot"],
                                    f"{account.get('ip', '127.0.0.1')}:80", "", "", "0", "ea-php82"]
            if kind == "main":
                for parked in account.get("parked_domains", []):
                    data[parked] = [user, account.get("owner", "root"), "parked", host["domain"], host["documentroot"],
                                    f"{account.get('ip', '127.0.0.1')}:80", "", "", "0", "ea-php82"]
    os.makedirs(server.path("etc"), exist_ok=True)
    atomic_write(server.path("etc", "userdatadomains.json"), _dump(data), 0o600)
