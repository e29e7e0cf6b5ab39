# -*- test-case-name: tests.test_config -*-
"""
lecp's configuration: C{/etc/lecp/lecp.toml} (or C{$LECP_CONFIG}), every key optional with the
default below. A wrong value is refused with a message naming the key and what is allowed.
The file holds no secrets: the page reads it as the cPanel user.
"""

from __future__ import annotations

import os
import tomllib

import attrs

DEFAULT_PATH = "/etc/lecp/lecp.toml"
LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
KEY_TYPES = ("rsa:2048", "rsa:3072", "rsa:4096", "ecdsa:p-256", "ecdsa:p-384")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the file, the key and what is allowed."""


@attrs.frozen
class Config:
    """Every setting, with its default. See README.md, "Configuration"."""

    # [acme]
    directory: str = LETSENCRYPT
    staging: bool = False
    staging_directory: str = LETSENCRYPT_STAGING
    ca_bundle: str = ""
    profile: str = ""
    # [certificates]
    key_type: str = "rsa:4096"
    key_types: tuple = KEY_TYPES
    page_deadline: float = 20.0
    # [preflight]
    preflight: bool = True
    preflight_port: int = 80
    preflight_timeout: float = 10.0
    preflight_resolve: str = ""
    # [renewal]
    renewal_interval: float = 12 * 3600.0
    first_pass_delay: float = 480.0
    remaining_fraction: float = 1 / 3
    renew_within_days: float = 30.0
    concurrency: int = 4
    backoff: tuple = (60.0, 600.0, 6000.0, 86400.0)
    alert_days: float = 7.0
    worker_timeout: float = 600.0
    orders_interval: float = 300.0
    # [mail]
    mail: bool = True
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password_file: str = ""
    mail_from: str = ""
    admin_email: str = "root@localhost"
    failure_mail_interval: float = 48 * 3600.0
    summary_interval: float = 7 * 86400.0
    # [health]
    health_port: int = 8765
    # [hostcert]
    hostcert: bool = True
    hostcert_names: tuple = ()
    hostcert_docroot: str = "/var/www/html"
    hostcert_services: tuple = ("cpanel", "exim", "dovecot", "ftp")
    # [paths]
    daemon_socket: str = "/run/lecp/lecp.sock"
    state_dir: str = "/var/lib/lecp"
    uapi: str = "/usr/local/cpanel/bin/uapi"
    whmapi1: str = "/usr/local/cpanel/bin/whmapi1"
    apache_tls: str = "/var/cpanel/ssl/apache_tls"
    userdatadomains: str = "/etc/userdatadomains.json"
    passwd: str = "/etc/passwd"
    worker_python: str = ""
    source: str = ""

    @property
    def acme_directory(self) -> str:
        """The directory in use: staging when switched on."""
        return self.staging_directory if self.staging else self.directory


# (section, key) -> (attribute, checker)
def _text(value, where):
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a text value in quotes, got {value!r}")
    return value.strip()


def _url(value, where):
    value = _text(value, where)
    if not value.startswith(("https://", "http://")):
        raise ConfigError(f"{where}: must be an http(s):// URL, got {value!r}")
    return value


def _bool(value, where):
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    return value


def _number(low, high):
    def check(value, where):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ConfigError(f"{where}: must be a number from {low} to {high}, got {value!r}")
        return float(value)
    return check


def _port(value, where):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{where}: must be a port number from 1 to 65535, got {value!r}")
    return value


def _key_type(value, where):
    value = _text(value, where).lower()
    if value not in KEY_TYPES:
        raise ConfigError(f"{where}: must be one of {', '.join(KEY_TYPES)}, got {value!r}")
    return value


def _key_types(value, where):
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: must be a non-empty list such as {list(KEY_TYPES)!r}")
    return tuple(_key_type(v, where) for v in value)


def _resolve(value, where):
    import ipaddress

    value = _text(value, where)
    try:
        if value.startswith("dns:"):
            host, _, port = value[4:].rpartition(":")
            ipaddress.IPv4Address(host)
            if not 1 <= int(port) <= 65535:
                raise ValueError
        elif value:
            ipaddress.IPv4Address(value)
    except ValueError:
        raise ConfigError(f"{where}: must be empty (the system's DNS), an IPv4 address, or dns:ADDRESS:PORT; "
                          f"got {value!r}") from None
    return value


def _int(low, high):
    def check(value, where):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{where}: must be a whole number from {low} to {high}, got {value!r}")
        return value
    return check


def _backoff(value, where):
    if not isinstance(value, list) or not value or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0
                                                       for v in value):
        raise ConfigError(f"{where}: must be a list of positive seconds such as [60, 600, 6000, 86400], got {value!r}")
    return tuple(float(v) for v in value)


def _email(value, where):
    value = _text(value, where)
    if value and ("@" not in value or any(c in value for c in " \r\n<>,;")):
        raise ConfigError(f"{where}: must be one e-mail address, got {value!r}")
    return value


def _names(value, where):
    from lecp.names import BadName, normalise

    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list of domain names, got {value!r}")
    try:
        return tuple(normalise(v) for v in value)
    except BadName as e:
        raise ConfigError(f"{where}: {e}") from None


def _services(value, where):
    allowed = ("cpanel", "exim", "dovecot", "ftp")
    if not isinstance(value, list) or not value or any(v not in allowed for v in value):
        raise ConfigError(f"{where}: must be a non-empty list from {list(allowed)}, got {value!r}")
    return tuple(value)


def _path(value, where):
    value = _text(value, where)
    if value and not value.startswith("/"):
        raise ConfigError(f"{where}: must be an absolute path, got {value!r}")
    return value


_KEYS = {
    ("acme", "directory"): ("directory", _url),
    ("acme", "staging"): ("staging", _bool),
    ("acme", "staging_directory"): ("staging_directory", _url),
    ("acme", "ca_bundle"): ("ca_bundle", _path),
    ("acme", "profile"): ("profile", _text),
    ("certificates", "key_type"): ("key_type", _key_type),
    ("certificates", "key_types"): ("key_types", _key_types),
    ("certificates", "page_deadline"): ("page_deadline", _number(1, 300)),
    ("preflight", "enabled"): ("preflight", _bool),
    ("preflight", "port"): ("preflight_port", _port),
    ("preflight", "timeout"): ("preflight_timeout", _number(1, 120)),
    ("preflight", "resolve"): ("preflight_resolve", _resolve),
    ("renewal", "interval"): ("renewal_interval", _number(1, 7 * 86400)),
    ("renewal", "first_pass_delay"): ("first_pass_delay", _number(0, 86400)),
    ("renewal", "remaining_fraction"): ("remaining_fraction", _number(0.05, 0.9)),
    ("renewal", "renew_within_days"): ("renew_within_days", _number(0, 60)),
    ("renewal", "concurrency"): ("concurrency", _int(1, 64)),
    ("renewal", "backoff"): ("backoff", _backoff),
    ("renewal", "alert_days"): ("alert_days", _number(0, 60)),
    ("renewal", "worker_timeout"): ("worker_timeout", _number(10, 3600)),
    ("renewal", "orders_interval"): ("orders_interval", _number(1, 86400)),
    ("mail", "enabled"): ("mail", _bool),
    ("mail", "host"): ("smtp_host", _text),
    ("mail", "port"): ("smtp_port", _port),
    ("mail", "starttls"): ("smtp_starttls", _bool),
    ("mail", "username"): ("smtp_username", _text),
    ("mail", "password_file"): ("smtp_password_file", _path),
    ("mail", "from"): ("mail_from", _email),
    ("mail", "admin"): ("admin_email", _email),
    ("mail", "failure_interval"): ("failure_mail_interval", _number(0, 30 * 86400)),
    ("mail", "summary_interval"): ("summary_interval", _number(3600, 90 * 86400)),
    ("health", "port"): ("health_port", _port),
    ("hostcert", "enabled"): ("hostcert", _bool),
    ("hostcert", "extra_names"): ("hostcert_names", _names),
    ("hostcert", "docroot"): ("hostcert_docroot", _path),
    ("hostcert", "services"): ("hostcert_services", _services),
    ("paths", "daemon_socket"): ("daemon_socket", _path),
    ("paths", "apache_tls"): ("apache_tls", _path),
    ("paths", "userdatadomains"): ("userdatadomains", _path),
    ("paths", "passwd"): ("passwd", _path),
    ("paths", "worker_python"): ("worker_python", _path),
    ("paths", "state_dir"): ("state_dir", _path),
    ("paths", "uapi"): ("uapi", _path),
    ("paths", "whmapi1"): ("whmapi1", _path),
}


def parse(text: str, source: str = "lecp.toml") -> Config:
    """A Config from TOML text; raises L{ConfigError} naming the first wrong key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML ({e})") from None
    values = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: '{section}' must be a [section]; known sections: "
                              f"{', '.join(sorted({s for s, _ in _KEYS}))}")
        for key, value in table.items():
            known = _KEYS.get((section, key))
            if known is None:
                allowed = ", ".join(k for s, k in _KEYS if s == section)
                hint = f"known keys of [{section}]: {allowed}" if allowed else \
                    f"known sections: {', '.join(sorted({s for s, _ in _KEYS}))}"
                raise ConfigError(f"{source}: unknown key [{section}] {key}; {hint}")
            attribute, check = known
            values[attribute] = check(value, f"{source}: [{section}] {key}")
    config = Config(source=source, **values)
    if config.key_type not in config.key_types:
        raise ConfigError(f"{source}: [certificates] key_type {config.key_type} is not in key_types")
    return config


def load(path: str | None = None) -> Config:
    """
    The configuration from C{path}, C{$LECP_CONFIG} or C{/etc/lecp/lecp.toml}; the defaults when
    the default file does not exist (a named file must exist).
    """
    named = path or os.environ.get("LECP_CONFIG")
    target = named or DEFAULT_PATH
    try:
        with open(target, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if named:
            raise ConfigError(f"{target}: no such configuration file") from None
        return Config(source="(defaults)")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{target}: cannot be read ({e})") from None
    return parse(text, target)
