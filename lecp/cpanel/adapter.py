# -*- test-case-name: tests.test_cpanel_adapter -*-
"""
The cPanel operations lecp uses, as typed calls over any transport: L{CPanel} for one user's
UAPI, L{WHM} for root's WHM API 1. Failures raise L{lecp.cpanel.envelope.CPanelError}.
"""

from __future__ import annotations

import attrs

from lecp.cpanel.envelope import CPanelError, as_bool, as_int, as_list, as_str, uapi_result, whm_data
from lecp.cpanel.models import (
    Account,
    CertificateInfo,
    InstalledHost,
    InstallResult,
    Quota,
    ServiceCertificate,
    UserSession,
    VirtualHost,
    virtual_hosts_from_domains_data,
)
from lecp.cpanel.envelope import as_datetime

# The services the hostname certificate is installed for (WHM install_service_ssl_certificate).
HOSTNAME_SERVICES = ("cpanel", "exim", "dovecot", "ftp")


@attrs.define
class CPanel:
    """One cPanel user's view of the server, through an L{lecp.interfaces.IUAPITransport}."""

    transport: object

    async def _uapi(self, module: str, function: str, **arguments) -> dict:
        envelope = await self.transport.call(module, function, arguments)
        return uapi_result(envelope, module, function)

    async def virtual_hosts(self) -> list[VirtualHost]:
        """Every web virtual host of the account with all its names and its document root."""
        result = await self._uapi("DomainInfo", "domains_data", format="hash")
        data = result.get("data")
        if not isinstance(data, dict):
            raise CPanelError("UAPI", "domains_data", ("data is not an object",), "DomainInfo")
        return virtual_hosts_from_domains_data(data)

    async def installed_hosts(self) -> list[InstalledHost]:
        """The account's virtual hosts that have SSL installed, with their certificates."""
        result = await self._uapi("SSL", "installed_hosts")
        return [InstalledHost.from_api(h) for h in as_list(result.get("data")) if isinstance(h, dict)]

    async def install_ssl(self, vhost: str, certificate: str, key: str, cabundle: str = "") -> InstallResult:
        """
        Install a certificate, its key and chain on a virtual host.

        cPanel can report an error although the certificate went in (a known quirk); then the
        installed hosts are checked, and an install that really happened counts as success.
        """
        arguments = {"domain": vhost, "cert": certificate.strip(), "key": key.strip()}
        if cabundle.strip():
            arguments["cabundle"] = cabundle.strip()
        envelope = await self.transport.call("SSL", "install_ssl", arguments)
        try:
            result = uapi_result(envelope, "SSL", "install_ssl")
        except CPanelError as error:
            if await self._installed_anyway(vhost, certificate):
                data = (envelope.get("result") or {}).get("data")
                return InstallResult.from_api(data, [f"The certificate is installed on “{vhost}” (cPanel reported: {error})"])
            raise
        return InstallResult.from_api(result.get("data"), result.get("messages"))

    async def _installed_anyway(self, vhost: str, certificate: str) -> bool:
        try:
            hosts = await self.installed_hosts()
        except CPanelError:
            return False
        wanted = certificate.strip()
        return any(h.certificate_pem.strip() == wanted and (vhost in h.domains or h.servername == vhost) for h in hosts)

    async def delete_ssl(self, vhost: str) -> None:
        """Remove SSL from a virtual host (the stored certificate and key stay in SSL/TLS Manager)."""
        await self._uapi("SSL", "delete_ssl", domain=vhost)

    async def stored_certificates(self) -> list[CertificateInfo]:
        """Certificates in the account's SSL/TLS Manager store."""
        result = await self._uapi("SSL", "list_certs")
        return [c for c in (CertificateInfo.from_api(d) for d in as_list(result.get("data"))) if c]

    async def delete_certificate(self, certificate_id: str) -> None:
        """Delete a stored certificate by id."""
        await self._uapi("SSL", "delete_cert", id=certificate_id)

    async def delete_key(self, key_id: str) -> None:
        """Delete a stored private key by id."""
        await self._uapi("SSL", "delete_key", id=key_id)

    async def contact_emails(self) -> list[str]:
        """The account's contact addresses (none, one or two)."""
        result = await self._uapi("Variables", "get_user_information", name=["contact_email", "contact_email_2"])
        data = result.get("data") or {}
        return [as_str(data.get(k)).strip() for k in ("contact_email", "contact_email_2") if as_str(data.get(k)).strip()]

    async def has_feature(self, feature: str) -> bool:
        """Whether the account's feature list grants C{feature}."""
        result = await self._uapi("Features", "has_feature", name=feature)
        if isinstance(result.get("data"), (int, str)) and str(result.get("data")) in ("0", "1"):
            return as_bool(result.get("data"))
        return not as_list(result.get("messages"))

    async def quota(self) -> Quota:
        """The account's disk usage and limit."""
        result = await self._uapi("Quota", "get_quota_info")
        data = result.get("data") or {}
        limit = data.get("megabyte_limit")
        limit_mb = None if limit in (None, "", "unlimited", 0, "0") else float(as_int(limit, 0))
        return Quota(
            under_quota=as_bool(data.get("under_quota_overall", 1)),
            used_mb=float(as_int(data.get("megabytes_used"), 0)),
            limit_mb=limit_mb,
        )

    async def page_chrome(self, title: str) -> tuple[str, str]:
        """cPanel's header and footer HTML for a plugin page (empty strings when not offered)."""
        try:
            result = await self._uapi("Chrome", "get_dom", page_title=title)
        except CPanelError:
            return "", ""
        data = result.get("data") or {}
        return as_str(data.get("header")), as_str(data.get("footer"))


@attrs.define
class WHM:
    """Root's view of the server, through an L{lecp.interfaces.IWHMTransport}."""

    transport: object

    async def _whm(self, function: str, **arguments) -> dict:
        envelope = await self.transport.call(function, arguments)
        return whm_data(envelope, function)

    async def accounts(self) -> list[Account]:
        """Every cPanel account on the server."""
        data = await self._whm("listaccts", want="user,domain,email,owner,suspended,uid,theme,plan")
        return [Account.from_api(a) for a in as_list(data.get("acct")) if isinstance(a, dict)]

    async def account(self, user: str) -> Account:
        """One account's summary."""
        data = await self._whm("accountsummary", user=user)
        accounts = [a for a in as_list(data.get("acct")) if isinstance(a, dict)]
        if not accounts:
            raise CPanelError("WHM API 1", "accountsummary", (f"no account named {user}",))
        return Account.from_api(accounts[0])

    async def hostname(self) -> str:
        """The server's hostname."""
        data = await self._whm("gethostname")
        name = as_str(data.get("hostname")).strip().lower()
        if not name:
            raise CPanelError("WHM API 1", "gethostname", ("cPanel returned an empty hostname",))
        return name

    async def service_certificates(self) -> list[ServiceCertificate]:
        """The certificates cPanel's services present (private keys included: root only)."""
        data = await self._whm("fetch_service_ssl_components")
        return [ServiceCertificate.from_api(s) for s in as_list(data.get("services")) if isinstance(s, dict)]

    async def install_service_certificate(self, service: str, certificate: str, key: str, cabundle: str) -> CertificateInfo | None:
        """Install a certificate for one service; cPanel restarts the service itself."""
        data = await self._whm(
            "install_service_ssl_certificate", service=service, crt=certificate.strip(), key=key.strip(),
            cabundle=cabundle.strip(),
        )
        return CertificateInfo.from_api(data.get("certificate_info"))

    async def create_user_session(self, user: str, service: str = "cpaneld") -> UserSession:
        """A one-time login URL for a user's cPanel."""
        data = await self._whm("create_user_session", user=user, service=service)
        return UserSession(
            url=as_str(data.get("url")),
            security_token=as_str(data.get("cp_security_token")),
            session=as_str(data.get("session")),
            expires=as_datetime(data.get("expires")),
        )
