# -*- test-case-name: tests.test_cpanel_models -*-
"""
What cPanel tells lecp, as typed values: virtual hosts and their names, installed certificates,
accounts, service certificates. Each C{from_api} reads cPanel's JSON leniently.
"""

from __future__ import annotations

import datetime

import attrs

from lecp.cpanel.envelope import as_bool, as_common_name, as_datetime, as_int, as_list, as_str

# The kinds of names a virtual host answers to (the original plugin's domain types).
MAIN, ADDON, SUB = "main", "addon", "sub"
ALIAS, ADDON_ALIAS, SUB_ALIAS, PARKED = "alias", "addon_alias", "sub_alias", "parked"


@attrs.frozen
class DomainName:
    """One name a virtual host answers to, and what kind of name it is."""

    name: str
    kind: str


@attrs.frozen
class VirtualHost:
    """
    A web virtual host of an account: the unit lecp issues a certificate for.

    @ivar name: the name cPanel installs SSL by (the main domain, the addon domain, the subdomain).
    @ivar servername: Apache's ServerName (an addon's backing subdomain).
    @ivar document_root: where HTTP-01 files go for every name of this host.
    @ivar names: every name, the vhost's own first.
    @ivar domains: the cPanel domains behind those names (main and parked, or the addon, or the
        subdomain): what C{/etc/userdatadomains} lists for this vhost.
    """

    name: str
    kind: str
    servername: str
    document_root: str
    names: tuple
    ip: str = ""
    user: str = ""
    domains: tuple = ()

    def owns(self, name: str) -> bool:
        """Whether C{name} is one of this host's names."""
        return any(n.name == name for n in self.names)

    @property
    def name_list(self) -> list[str]:
        return [n.name for n in self.names]


def _add(names: list, seen: set, name, kind: str) -> None:
    name = as_str(name).strip().lower().rstrip(".")
    if name and name not in seen:
        seen.add(name)
        names.append(DomainName(name, kind))


def virtual_hosts_from_domains_data(data: dict) -> list[VirtualHost]:
    """
    Group C{DomainInfo::domains_data} (hash format) into virtual hosts: the main domain with its
    aliases and parked domains, each addon with its aliases, each subdomain with its aliases.
    A name belongs to the first host that claims it.
    """
    hosts, seen = [], set()
    main = data.get("main_domain")
    if isinstance(main, dict) and main.get("domain"):
        names: list = []
        _add(names, seen, main.get("domain"), MAIN)
        for alias in as_str(main.get("serveralias")).split():
            _add(names, seen, alias, ALIAS)
        for parked in as_list(data.get("parked_domains")):
            _add(names, seen, parked, PARKED)
            _add(names, seen, f"www.{parked}", PARKED)
        domains = (names[0].name, *(as_str(p).strip().lower().rstrip(".") for p in as_list(data.get("parked_domains"))))
        hosts.append(_host(main, MAIN, names, domains))
    for entry, kind, alias_kind in [(e, ADDON, ADDON_ALIAS) for e in as_list(data.get("addon_domains"))] + [
        (e, SUB, SUB_ALIAS) for e in as_list(data.get("sub_domains"))
    ]:
        if not isinstance(entry, dict) or not entry.get("domain"):
            continue  # cPanel sends 0 for a subdomain whose userdata is missing
        names = []
        _add(names, seen, entry.get("domain"), kind)
        if not names:
            continue
        if kind == ADDON:
            _add(names, seen, entry.get("servername"), ADDON_ALIAS)
        for alias in as_str(entry.get("serveralias")).split():
            _add(names, seen, alias, alias_kind)
        hosts.append(_host(entry, kind, names, (names[0].name,)))
    return hosts


def _host(entry: dict, kind: str, names: list, domains: tuple) -> VirtualHost:
    return VirtualHost(
        name=names[0].name,
        kind=kind,
        servername=as_str(entry.get("servername"), names[0].name).lower(),
        document_root=as_str(entry.get("documentroot")).rstrip("/") or "/",
        names=tuple(names),
        ip=as_str(entry.get("ip")),
        user=as_str(entry.get("user")),
        domains=tuple(d for d in domains if d),
    )


@attrs.frozen
class CertificateInfo:
    """cPanel's description of a certificate (installed, stored or a service's)."""

    id: str
    domains: tuple
    subject_common_name: str | None
    issuer_common_name: str | None
    issuer_organization: str | None
    not_before: datetime.datetime | None
    not_after: datetime.datetime | None
    is_self_signed: bool
    key_algorithm: str
    modulus: str | None
    serial: str | None

    @classmethod
    def from_api(cls, data) -> "CertificateInfo | None":
        if not isinstance(data, dict):
            return None
        return cls(
            id=as_str(data.get("id")),
            domains=tuple(as_str(d).lower() for d in as_list(data.get("domains"))),
            subject_common_name=as_common_name(data.get("subject.commonName")),
            issuer_common_name=as_common_name(data.get("issuer.commonName")),
            issuer_organization=as_common_name(data.get("issuer.organizationName")),
            not_before=as_datetime(data.get("not_before")),
            not_after=as_datetime(data.get("not_after")),
            is_self_signed=as_bool(data.get("is_self_signed")),
            key_algorithm=as_str(data.get("key_algorithm")),
            modulus=data.get("modulus") or None,
            serial=(as_str(data.get("serial")).lower() or None),
        )


@attrs.frozen
class InstalledHost:
    """A virtual host with SSL installed, and the certificate on it."""

    servername: str
    domains: tuple
    fqdns: tuple
    document_root: str
    certificate: CertificateInfo | None
    certificate_pem: str

    @classmethod
    def from_api(cls, data: dict) -> "InstalledHost":
        return cls(
            servername=as_str(data.get("servername")).lower(),
            domains=tuple(as_str(d).lower() for d in as_list(data.get("domains"))),
            fqdns=tuple(as_str(d).lower() for d in as_list(data.get("fqdns"))),
            document_root=as_str(data.get("docroot")),
            certificate=CertificateInfo.from_api(data.get("certificate")),
            certificate_pem=as_str(data.get("certificate_text")),
        )


@attrs.frozen
class InstallResult:
    """What C{SSL::install_ssl} reported."""

    cert_id: str
    key_id: str
    domain: str
    message: str
    working_domains: tuple
    warning_domains: tuple

    @classmethod
    def from_api(cls, data, messages) -> "InstallResult":
        data = data if isinstance(data, dict) else {}
        message = as_str(data.get("message")) or "; ".join(as_str(m) for m in as_list(messages))
        return cls(
            cert_id=as_str(data.get("cert_id")),
            key_id=as_str(data.get("key_id")),
            domain=as_str(data.get("domain")).lower(),
            message=message,
            working_domains=tuple(as_str(d).lower() for d in as_list(data.get("working_domains"))),
            warning_domains=tuple(as_str(d).lower() for d in as_list(data.get("warning_domains"))),
        )


@attrs.frozen
class Quota:
    """Disk quota of an account (megabytes); C{limit} is C{None} when unlimited."""

    under_quota: bool
    used_mb: float
    limit_mb: float | None


@attrs.frozen
class Account:
    """A cPanel account as WHM lists it."""

    user: str
    domain: str
    emails: tuple
    owner: str
    suspended: bool
    uid: int | None
    theme: str = ""
    plan: str = ""

    @classmethod
    def from_api(cls, data: dict) -> "Account":
        raw = as_str(data.get("email"))
        emails = tuple(e.strip() for e in raw.split(",") if e.strip() and e.strip() != "*unknown*")
        return cls(
            user=as_str(data.get("user")),
            domain=as_str(data.get("domain")).lower(),
            emails=emails,
            owner=as_str(data.get("owner")),
            suspended=as_bool(data.get("suspended")),
            uid=as_int(data.get("uid")),
            theme=as_str(data.get("theme")),
            plan=as_str(data.get("plan")),
        )


@attrs.frozen
class ServiceCertificate:
    """The certificate a cPanel service (cpanel, exim, dovecot, ftp) presents."""

    service: str
    certificate_pem: str
    key_pem: str
    cabundle_pem: str
    info: CertificateInfo | None

    @classmethod
    def from_api(cls, data: dict) -> "ServiceCertificate":
        return cls(
            service=as_str(data.get("service")),
            certificate_pem=as_str(data.get("certificate")),
            key_pem=as_str(data.get("key")),
            cabundle_pem=as_str(data.get("cabundle")),
            info=CertificateInfo.from_api(data.get("certificate_info")),
        )


@attrs.frozen
class UserSession:
    """A one-time login to cPanel for a user (C{create_user_session})."""

    url: str
    security_token: str
    session: str
    expires: datetime.datetime | None
