# -*- test-case-name: tests.integration.test_admin -*-
"""
C{lecp hostcert status|run}: the hostname certificate of cPanel's services, looked at or renewed
on demand by the very service the daemon runs (L{lecp.daemon.hostcert.HostCertService}).
"""

from __future__ import annotations


def hostcert_service(reactor, config):
    """The daemon's hostname-certificate service, wired for a one-off run from the command line."""
    from lecp.acme.http import make_http_client
    from lecp.cpanel import WHM, WHMAPICommand
    from lecp.daemon.hostcert import HostCertService
    from lecp.daemon.mail import Mailer
    from lecp.tap import Settings

    settings = Settings(config)
    return HostCertService(reactor, settings, whm=WHM(WHMAPICommand(reactor, executable=config.whmapi1)),
                           mailer=Mailer(reactor, settings), http=make_http_client(reactor, config.ca_bundle or None))


def _when(moment) -> float | None:
    return moment.timestamp() if moment is not None else None


async def hostcert_status(reactor, config) -> dict:
    """The hostname, the names wanted, each managed service's certificate and whether it needs replacing."""
    from lecp.keys import certificate_facts

    service = hostcert_service(reactor, config)
    hostname, names, services, reasons = await service.survey()
    stored = service.stored()
    kept = None
    if stored.get("cert"):
        facts = certificate_facts(stored["cert"])
        kept = {"names": list(facts.names), "not_after": facts.not_after.timestamp(),
                "issuer": facts.issuer_organization or facts.issuer_common_name or ""}
    return {
        "enabled": config.hostcert, "hostname": hostname, "names": names, "stored": kept,
        "services": [{
            "service": s.service, "self_signed": bool(s.info and s.info.is_self_signed),
            "issuer": (s.info.issuer_organization or s.info.issuer_common_name or "") if s.info else "",
            "names": list(s.info.domains) if s.info else [], "not_after": _when(s.info.not_after) if s.info else None,
            "needs_replacing": reasons.get(s.service) or "",
        } for s in services],
    }


async def hostcert_run(reactor, config) -> dict:
    """One pass of the service now; what it found and did (raises with the reason when it failed)."""
    service = hostcert_service(reactor, config)
    if not config.hostcert:
        raise RuntimeError("the hostname certificate is turned off ([hostcert] enabled = false in the configuration)")
    before = await hostcert_status(reactor, config)
    await service.run_once()
    after = await hostcert_status(reactor, config)
    replaced = [s["service"] for s in before["services"] if s["needs_replacing"]]
    return {"replaced": replaced, "reasons": {s["service"]: s["needs_replacing"] for s in before["services"]
                                              if s["needs_replacing"]}, "status": after}
