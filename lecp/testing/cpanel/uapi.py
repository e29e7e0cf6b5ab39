"""
The UAPI functions of the emulated cPanel, answering with cPanel's envelope, field names, types
and messages (reference/cpanel-api.md §1 and §3). Every function runs as one account and sees
only that account's data, as cPanel enforces.
"""

from __future__ import annotations

import importlib
import os

from lecp.testing.cpanel.server import Server, userdata, vhost_for, vhosts_of


class APIFailure(Exception):
    """A function failed: its messages become C{errors}; C{data} may still be set (install_ssl)."""

    def __init__(self, *errors: str, data=None):
        super().__init__(*errors)
        self.errors = list(errors)
        self.data = data


def envelope(module: str, function: str, status: int, data=None, errors=None, messages=None, warnings=None) -> dict:
    """The UAPI envelope: C{null} for empty lists, C{transformed} for successful array data."""
    metadata = {"transformed": 1} if status and isinstance(data, list) else {}
    return {
        "apiversion": 3,
        "func": function,
        "module": module,
        "result": {
            "data": data,
            "errors": errors or None,
            "messages": messages or None,
            "metadata": metadata,
            "status": status,
            "warnings": warnings or None,
        },
    }


class Context:
    """One call: the server, the account it runs as, and what the function says besides data."""

    def __init__(self, server: Server, user: str):
        self.server = server
        self.user = user
        self.account = server.account(user)
        self.messages: list[str] = []
        self.warnings: list[str] = []

    def require_feature(self, feature: str) -> None:
        if not self.account.get("features", {}).get(feature, True):
            raise APIFailure(f"You do not have the feature “{feature}”.")

def _arg(args: dict, name: str, required_message: str | None = None) -> str:
    value = args.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or str(value).strip() == "":
        if required_message:
            raise APIFailure(required_message)
        return ""
    return str(value).strip()


def _domain_record(ctx: Context, host: dict) -> dict:
    record = userdata(ctx.account, host)
    record.update({"domain": host["domain"], "type": host["kind"], "status": "not redirected"})
    return record


# DomainInfo

def domaininfo_list_domains(ctx: Context, args: dict):
    account = ctx.account
    return {
        "main_domain": account["main_domain"]["domain"],
        "addon_domains": [a["domain"] for a in account.get("addon_domains", [])],
        "parked_domains": list(account.get("parked_domains", [])),
        "sub_domains": [s["domain"] for s in account.get("sub_domains", [])],
    }


def domaininfo_domains_data(ctx: Context, args: dict):
    hosts = vhosts_of(ctx.account)
    records = {h["domain"]: _domain_record(ctx, h) for h in hosts}
    main = records[ctx.account["main_domain"]["domain"]]
    addons = [records[h["domain"]] for h in hosts if h["kind"] == "addon_domain"]
    subs = [records[h["domain"]] for h in hosts if h["kind"] == "sub_domain"]
    if (_arg(args, "format") or "hash") == "list":
        return [main] + addons + subs
    data = {"main_domain": main, "addon_domains": addons, "sub_domains": subs,
            "parked_domains": list(ctx.account.get("parked_domains", []))}
    if _arg(args, "return_https_redirect_status") or _arg(args, "return_https_redirects_status"):
        data["parked_with_https_redirects"] = []
        data["parked_capable_of_https_redirects"] = list(ctx.account.get("parked_domains", []))
        for record in [main] + addons + subs:
            record.update({"is_https_redirecting": 0, "can_https_redirect": 1, "all_aliases_valid": 1})
    return data


def domaininfo_single_domain_data(ctx: Context, args: dict):
    domain = _arg(args, "domain", "Domain must be passed as a parameter.").lower()
    host = vhost_for(ctx.account, domain)
    if host is None or (domain != host["domain"] and domain != host["servername"]):
        raise APIFailure(f"Unable to locate the domain: {domain}")
    return _domain_record(ctx, host)


# Variables, Features, Quota, Chrome, NVData

_USER_INFORMATION = ("contact_email", "contact_email_2", "user", "domain", "home", "owner", "plan", "theme", "ip", "locale")


def variables_get_user_information(ctx: Context, args: dict):
    account = ctx.account
    everything = {
        "contact_email": account.get("contact_email"),
        "contact_email_2": account.get("contact_email_2"),
        "user": ctx.user,
        "domain": account["main_domain"]["domain"],
        "home": account["home"],
        "owner": account.get("owner", "root"),
        "plan": account.get("plan", "default"),
        "theme": account.get("theme", "jupiter"),
        "ip": account.get("ip", "127.0.0.1"),
        "locale": "en",
    }
    names = args.get("name")
    if not names:
        return everything
    names = names if isinstance(names, list) else [names]
    unknown = [n for n in names if n not in _USER_INFORMATION]
    if unknown:
        raise APIFailure(
            f"The name parameter has unknown value(s): {', '.join(unknown)}. "
            f"You must enter one of the following values: {', '.join(_USER_INFORMATION)}"
        )
    return {n: everything[n] for n in names}


def features_has_feature(ctx: Context, args: dict):
    name = _arg(args, "name", "You must specify the “name” parameter.")
    if ctx.account.get("features", {}).get(name, True):
        return None
    ctx.messages.append(f"The feature “{name}” is not enabled.")
    return None


def quota_get_quota_info(ctx: Context, args: dict):
    quota = ctx.account.get("quota", {})
    used = quota.get("megabytes_used", 0)
    limit = quota.get("megabyte_limit")
    return {
        "megabytes_used": used,
        "megabyte_limit": limit if limit is not None else 0,
        "megabytes_remain": (limit - used) if limit is not None else 0,
        "under_megabyte_limit": int(limit is None or used < limit),
        "under_quota_overall": int(limit is None or used < limit),
        "inodes_used": 10,
        "inode_limit": 0,
        "inodes_remain": 0,
        "under_inode_limit": 1,
    }


def chrome_get_dom(ctx: Context, args: dict):
    title = _arg(args, "page_title") or "cPanel"
    header = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width, initial-scale=1"><title>' + _escape(title) + " - cPanel</title></head><body>"
        '<header class="cp-emulated-header"><a href="../index.html">cPanel (emulated)</a> · '
        + _escape(ctx.user) + "</header><main id=\"content\">"
    )
    footer = '</main><footer class="cp-emulated-footer">cPanel emulator</footer></body></html>'
    return {"header": header, "footer": footer}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def nvdata_get(ctx: Context, args: dict):
    names = [n for n in _arg(args, "names").split("|") if n]
    folder = os.path.join(ctx.account["home"], ".cpanel", "nvdata")
    out = []
    for name in names:
        try:
            with open(os.path.join(folder, name.replace("/", ""))) as f:
                value = f.read() or None
        except FileNotFoundError:
            value = _arg(args, "default") or None
        out.append({"name": name, "value": value})
    return out


# The SSL functions need cryptography, which is slow to import: they live in uapi_ssl, loaded on use.
_SSL_FUNCTIONS = ("installed_hosts", "installed_host", "install_ssl", "delete_ssl", "list_certs", "list_keys",
                  "delete_cert", "delete_key")

FUNCTIONS = {
    ("DomainInfo", "list_domains"): domaininfo_list_domains,
    ("DomainInfo", "domains_data"): domaininfo_domains_data,
    ("DomainInfo", "single_domain_data"): domaininfo_single_domain_data,
    **{("SSL", name): f"lecp.testing.cpanel.uapi_ssl:ssl_{name}" for name in _SSL_FUNCTIONS},
    ("Variables", "get_user_information"): variables_get_user_information,
    ("Features", "has_feature"): features_has_feature,
    ("Quota", "get_quota_info"): quota_get_quota_info,
    ("Chrome", "get_dom"): chrome_get_dom,
    ("NVData", "get"): nvdata_get,
}
MODULES = {module for module, _ in FUNCTIONS}


def call(server: Server, user: str, module: str, function: str, args: dict) -> dict:
    """Run one UAPI function as C{user}; always returns an envelope."""
    if module not in MODULES:
        return envelope(module, function, 0, errors=[f"Failed to load module “{module}”: Can't locate Cpanel/API/{module}.pm"])
    if function.startswith("_") or not function.replace("_", "").isalnum():
        return envelope(module, function, 0, errors=[f"Illegal function name: {function}"])
    handler = FUNCTIONS.get((module, function))
    if handler is None:
        return envelope(module, function, 0, errors=[f"The system could not find the function “{function}” in the module “{module}”."])
    if isinstance(handler, str):
        module_name, _, attribute = handler.partition(":")
        handler = getattr(importlib.import_module(module_name), attribute)
    ctx = Context(server, user)
    try:
        data = handler(ctx, args)
    except APIFailure as failure:
        return envelope(module, function, 0, data=failure.data, errors=failure.errors, messages=ctx.messages, warnings=ctx.warnings)
    return envelope(module, function, 1, data=data, messages=ctx.messages, warnings=ctx.warnings)
