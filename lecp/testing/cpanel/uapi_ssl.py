"""
The emulated cPanel's UAPI C{SSL} module: installing, listing and removing certificates as one
account, with cPanel's checks (the key matches, the certificate covers the vhost, the vhost is
the account's own) and messages. Loaded only when an SSL function is called.
"""

from __future__ import annotations

import json
import os
import time

from lecp.fsutil import atomic_write
from lecp.testing.cpanel import sslstore
from lecp.testing.cpanel.server import PROXY_LABELS, vhost_for, vhosts_of
from lecp.testing.cpanel.uapi import APIFailure, Context, _arg


def _store(ctx: Context) -> sslstore.UserSSLStore:
    return sslstore.UserSSLStore(ctx.account["home"], ctx.account.get("uid"), ctx.account.get("gid"))


def _installed_entry(ctx: Context, host: dict) -> dict | None:
    installed = ctx.server.installed(host["servername"])
    if installed is None:
        return None
    domains = sorted({host["servername"], *host["parked"]})
    fqdns = set(host["names"])
    if host["kind"] == "main_domain":
        fqdns |= {f"{label}.{host['domain']}" for label in PROXY_LABELS}
    certificate = {k: v for k, v in installed["certificate"].items() if k != "serial"}
    return {
        "servername": host["servername"],
        "domains": domains,
        "fqdns": sorted(fqdns),
        "docroot": host["documentroot"],
        "ip": ctx.account.get("ip", "127.0.0.1"),
        "is_primary_on_ip": 0,
        "needs_sni": 1,
        "mail_sni_status": 1,
        "certificate_text": installed["leaf"],
        "certificate": certificate,
    }


def ssl_installed_hosts(ctx: Context, args: dict):
    ctx.require_feature("sslinstall")
    return [e for e in (_installed_entry(ctx, h) for h in vhosts_of(ctx.account)) if e is not None]


def _requested_vhost(ctx: Context, args: dict, failure_prefix: str = "") -> dict:
    """The vhost named by the C{domain} argument (default: the main domain), or cPanel's error."""
    domain = (_arg(args, "domain") or ctx.account["main_domain"]["domain"]).lower()
    host = vhost_for(ctx.account, domain)
    if host is None:
        raise APIFailure(f"{failure_prefix}No web vhost for domain “{domain}”!")
    return host


def ssl_installed_host(ctx: Context, args: dict):
    ctx.require_feature("sslinstall")
    host = _requested_vhost(ctx, args)
    entry = _installed_entry(ctx, host)
    if entry is None:
        return None
    return {"host": host["servername"], "certificate": entry["certificate"],
            "aliases": sorted(set(host["names"]) - {host["servername"]})}


def ssl_install_ssl(ctx: Context, args: dict):
    from lecp.keys import (
        certificate_facts,
        join_pem_chain,
        key_matches_certificate,
        load_certificate,
        load_private_key,
        private_key_to_pem,
        split_pem_chain,
    )

    ctx.require_feature("sslinstall")
    cert_text = _arg(args, "cert", "You must specify a certificate (the “cert” parameter).")
    try:
        cert = load_certificate(cert_text)
    except ValueError as e:
        raise APIFailure(f"The system could not parse the certificate because of an error: {e}")
    leaf = split_pem_chain(cert_text)[0]
    facts = certificate_facts(cert)
    domain = (_arg(args, "domain") or (facts.names[0] if facts.names else "")).lower()
    if domain.startswith("www."):
        domain = domain[4:]
    key_text = _arg(args, "key")
    store = _store(ctx)
    if key_text:
        try:
            key = load_private_key(key_text)
        except ValueError as e:
            raise APIFailure(f"The system could not parse the private key because of an error: {e}")
        if not key_matches_certificate(key, cert):
            raise APIFailure("Certificate and key do not match.")
    else:
        key = store.find_key_for(cert)
        if key is None:
            raise APIFailure("No key in your account matches the given certificate.")
        key_text = private_key_to_pem(key).decode()
    cabundle = join_pem_chain(split_pem_chain(_arg(args, "cabundle")))
    now = int(time.time())
    key_id = store.save_key(key_text, domain, now)
    cert_id, described = store.save_certificate(leaf, domain, now)
    ids = {"cert_id": cert_id, "key_id": key_id}
    failed = f"The certificate could not be installed on the domain “{domain}”."
    host = vhost_for(ctx.account, domain)
    if host is None or domain not in (host["domain"], host["servername"], *host["parked"]):
        owner = ctx.server.owner_of_domain(domain)
        detail = (f"You do not control the domain “{domain}”." if owner and owner != ctx.user
                  else f"No web vhost for domain “{domain}”!")
        raise APIFailure(failed, detail, data=ids)
    working = [n for n in host["names"] if sslstore.covers(facts.names, n)]
    if not working:
        raise APIFailure(failed, f"The certificate does not cover any domain of the virtual host “{host['servername']}”.", data=ids)
    with ctx.server.locked():
        folder = ctx.server.installed_dir(host["servername"])
        previous = os.path.exists(os.path.join(folder, "combined"))
        os.makedirs(folder, mode=0o755, exist_ok=True)
        atomic_write(os.path.join(folder, "combined"), (key_text.strip() + "\n" + leaf + cabundle).encode(), 0o600)
        atomic_write(os.path.join(folder, "certificates"), (leaf + cabundle).encode(), 0o644)
        meta = {"user": ctx.user, **ids, "leaf": leaf, "certificate": described}
        atomic_write(os.path.join(folder, "meta.json"), json.dumps(meta).encode(), 0o600)
    ip = ctx.account.get("ip", "127.0.0.1")
    message = f"The SSL certificate is now installed onto the domain “{host['domain']}” using the IP address “{ip}”."
    ctx.messages.append(f"The certificate was successfully installed on the domain “{host['domain']}”.")
    return {
        "status": 1,
        "action": "update" if previous else "install",
        **ids,
        "domain": host["domain"],
        "ip": ip,
        "user": ctx.user,
        "message": message,
        "statusmsg": message,
        "html": message,
        "working_domains": working,
        "warning_domains": [n for n in host["names"] if n not in working],
        "extra_certificate_domains": [],
    }


def ssl_delete_ssl(ctx: Context, args: dict):
    ctx.require_feature("sslinstall")
    domain = (_arg(args, "domain") or ctx.account["main_domain"]["domain"]).lower()
    host = _requested_vhost(ctx, args, f"Failed to remove SSL host for “{domain}”: ")
    folder = ctx.server.installed_dir(host["servername"])
    if not os.path.exists(os.path.join(folder, "combined")):
        raise APIFailure(f"Failed to remove SSL host for “{domain}”: The virtual host “{host['servername']}” does not have SSL.")
    with ctx.server.locked():
        for name in ("combined", "certificates", "meta.json"):
            try:
                os.unlink(os.path.join(folder, name))
            except FileNotFoundError:
                pass
        os.rmdir(folder)
    ctx.messages.append("The SSL host was successfully removed.")
    return None


def ssl_list_certs(ctx: Context, args: dict):
    ctx.require_feature("sslmanager")
    configured = set()
    for host in vhosts_of(ctx.account):
        installed = ctx.server.installed(host["servername"])
        if installed:
            configured.add(installed.get("cert_id"))
    out = []
    for ident, entry in sorted(_store(ctx).index()["certs"].items()):
        record = {k: v for k, v in entry.items() if k not in ("is_autossl", "auto_ssl_provider", "auto_ssl_provider_display_name")}
        record["domain_is_configured"] = int(ident in configured)
        out.append(record)
    return out


def ssl_list_keys(ctx: Context, args: dict):
    ctx.require_feature("sslmanager")
    return [entry for _, entry in sorted(_store(ctx).index()["keys"].items())]


def _delete(ctx: Context, args: dict, kind: str):
    ctx.require_feature("sslmanager")
    ident = _arg(args, "id") or _arg(args, "friendly_name")
    if not ident:
        raise APIFailure("You must specify the “id” or the “friendly_name” parameter.")
    store = _store(ctx)
    matches = [i for i, e in store.index()[kind].items() if ident in (i, e.get("friendly_name"))]
    if not matches:
        raise APIFailure(f"The {'certificate' if kind == 'certs' else 'key'} “{ident}” does not exist.")
    return [store.delete(kind, i) for i in matches]


def ssl_delete_cert(ctx: Context, args: dict):
    return _delete(ctx, args, "certs")


def ssl_delete_key(ctx: Context, args: dict):
    return _delete(ctx, args, "keys")
