# -*- test-case-name: tests.integration.test_page -*-
"""The page's HTML: the list of websites with their status in words, forms, and outcomes."""

from __future__ import annotations

import time

import attrs

from lecp.frontend.html import Markup, el, render
from lecp.names import display

TITLE = "Let's Encrypt SSL"

STYLE = """
.lecp{font:15px/1.5 system-ui,sans-serif;color:#1d1d1f;max-width:72rem;margin:0 auto;padding:1rem}
.lecp h1{font-size:1.6rem;margin:.2rem 0 1rem}.lecp h2{font-size:1.2rem;margin:1.5rem 0 .5rem}
.lecp table{border-collapse:collapse;width:100%}.lecp th,.lecp td{text-align:left;padding:.5rem;border-bottom:1px solid #ccc;vertical-align:top}
.lecp .status{font-weight:600}.lecp .ok{color:#0a6b2b}.lecp .warn{color:#8a5300}.lecp .bad{color:#b00020}.lecp .muted{color:#555}
.lecp .button,.lecp button{display:inline-block;background:#0b5cad;color:#fff;border:0;border-radius:4px;padding:.45rem .9rem;
 text-decoration:none;font-size:1rem;cursor:pointer}.lecp .button.secondary,.lecp button.secondary{background:#e8e8ed;color:#1d1d1f}
.lecp button.danger{background:#b00020}.lecp .notice{border-left:4px solid #0b5cad;background:#eef4fb;padding:.7rem 1rem;margin:1rem 0}
.lecp .notice.bad{border-color:#b00020;background:#fbeef0}.lecp .notice.ok{border-color:#0a6b2b;background:#eef8f1}
.lecp fieldset{border:1px solid #ccc;border-radius:4px;margin:1rem 0;padding:.5rem 1rem}.lecp label{margin-right:1rem}
.lecp pre{white-space:pre-wrap;word-break:break-all;background:#f4f4f6;padding:.5rem;font-size:12px}
@media (max-width:640px){.lecp table,.lecp tbody,.lecp tr,.lecp td{display:block}.lecp thead{display:none}
 .lecp td{border:0;padding:.2rem 0}.lecp tr{border-bottom:1px solid #ccc;padding:.5rem 0}}
"""

SUBMIT_SCRIPT = """
document.querySelectorAll('form[data-progress]').forEach(function(form){
 form.addEventListener('submit',function(){
  form.querySelectorAll('button').forEach(function(b){b.disabled=true;});
  var p=form.querySelector('.progress'); if(p){p.hidden=false;}
 });
});
"""


def _date(epoch: float) -> str:
    return time.strftime("%d %b %Y", time.gmtime(epoch)) if epoch else "-"


@attrs.frozen
class SiteRow:
    """One website on the home page."""

    vhost: str
    names: tuple
    state: str  # secured, expiring, expired, not_installed, pending, reused, failed, not_secured
    words: str
    detail: str = ""
    expiry: int = 0
    issuer: str = ""
    reused_from: str = ""


def site_rows(vhosts, installed_hosts, document, now: float, remaining_fraction: float = 1 / 3) -> list[SiteRow]:
    """The status of every website, in words a person understands."""
    from lecp.daemon.policy import renewal_time

    installed = {h.servername: h for h in installed_hosts}
    certificates, pending, reuses = document.certificates(), document.pending(), document.reuses()
    rows = []
    for host in vhosts:
        record = certificates.get(host.name)
        failure = document.failure(host.name)
        on_host = installed.get(host.servername) or installed.get(host.name)
        if host.name in pending:
            order = pending[host.name]
            words = "Being issued: Let's Encrypt is finishing this certificate; it is installed automatically."
            if order.last_error:
                words += f" The last attempt said: {order.last_error}"
            rows.append(SiteRow(host.name, host.name_list and tuple(host.name_list), "pending", "Pending", words))
        elif record is not None:
            is_ours = on_host is not None and on_host.certificate_pem.strip() == record.cert_pem.strip()
            renews = renewal_time(record.not_before or record.expiry - 90 * 86400, record.expiry, remaining_fraction)
            if not is_ours and now < record.expiry:
                state, words = "not_installed", "Not installed: this website is not using the certificate lecp keeps for it."
                detail = "Use Reinstall to put it back."
            elif now >= record.expiry:
                state, words, detail = "expired", f"Expired on {_date(record.expiry)}.", "Issue it again."
            elif now >= renews:
                state, words = "expiring", f"Expiring on {_date(record.expiry)}."
                detail = "It is due for renewal and has not been renewed yet; lecp keeps trying automatically."
            else:
                issuer = f" (issued by {record.issuer})" if record.issuer else ""
                state, words = "secured", f"Secured until {_date(record.expiry)}{issuer}."
                detail = f"Renews automatically around {_date(renews)}."
            if failure and state != "not_installed":
                detail = f"The last attempt failed: {failure['message']} {failure.get('advice', '')}".strip()
            rows.append(SiteRow(host.name, tuple(record.names), state, words, detail, record.expiry, record.issuer))
        elif failure is not None and host.name not in reuses:
            rows.append(SiteRow(host.name, tuple(host.name_list), "failed", f"Failed: {failure['message']}",
                                failure.get("advice", "")))
        elif host.name in reuses:
            source = reuses[host.name]
            rows.append(SiteRow(host.name, tuple(host.name_list), "reused", f"Covered by the certificate of {source}.",
                                reused_from=source))
        else:
            rows.append(SiteRow(host.name, tuple(host.name_list), "not_secured", "Not secured",
                                "Visitors see a warning or no HTTPS at all."))
    return rows


_STATE_CLASS = {"secured": "ok", "expiring": "warn", "pending": "warn", "reused": "ok", "expired": "bad",
                "not_installed": "bad", "not_secured": "muted", "failed": "bad"}


@attrs.define
class Page:
    """Renders pages for one request: the script's URL, the CSRF token, cPanel's chrome."""

    script: str
    token: str
    header: str = ""
    footer: str = ""

    def link(self, **params) -> str:
        from urllib.parse import urlencode

        return f"{self.script}?{urlencode(params)}" if params else self.script

    def document(self, title: str, *body) -> str:
        content = el("div", {"class": "lecp"}, el("style", {}, Markup(STYLE)), el("h1", {}, title), *body,
                     el("script", {}, Markup(SUBMIT_SCRIPT)))
        if self.header:
            return self.header + content + self.footer
        return ("<!DOCTYPE html>" + el("html", {"lang": "en"}, el("head", {}, el("meta", {"charset": "utf-8"}),
                el("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
                el("title", {}, f"{title} - cPanel")), el("body", {}, content)))

    def form(self, action: str, *fields, progress: str = "", **attributes) -> Markup:
        return el("form", {"method": "post", "action": self.script, "data-progress": bool(progress) or None, **attributes},
                  el("input", {"type": "hidden", "name": "action", "value": action}),
                  el("input", {"type": "hidden", "name": "csrf_token", "value": self.token}), *fields,
                  el("p", {"class": "progress notice", "hidden": True, "role": "status"}, progress) if progress else None)

    def home(self, rows: list[SiteRow], message: str = "") -> str:
        body = [el("p", {}, "Free certificates from Let's Encrypt for your websites, installed in one click and "
                            "renewed automatically before they expire.")]
        if message:
            body.append(el("div", {"class": "notice", "role": "status"}, message))
        table_rows = []
        for row in rows:
            actions = []
            if row.state in ("not_secured", "failed"):
                actions.append(el("a", {"class": "button", "href": self.link(action="issue", vhost=row.vhost)},
                                  "Secure this site" if row.state == "not_secured" else "Try again"))
            elif row.state == "reused":
                actions.append(self.form("remove-reuse", el("input", {"type": "hidden", "name": "vhost", "value": row.vhost}),
                                         el("button", {"class": "secondary", "type": "submit"}, "Stop re-using")))
            elif row.state != "pending":
                actions += [el("a", {"class": "button secondary", "href": self.link(action="view", vhost=row.vhost)}, "View"),
                            " ", el("a", {"class": "button secondary", "href": self.link(action="issue", vhost=row.vhost)},
                                    "Issue again"),
                            " ", el("a", {"class": "button secondary", "href": self.link(action="remove", vhost=row.vhost)},
                                    "Remove")]
                if row.state == "not_installed":
                    actions.insert(0, self.form("reinstall", el("input", {"type": "hidden", "name": "vhost", "value": row.vhost}),
                                                el("button", {"type": "submit"}, "Reinstall")))
            table_rows.append(el("tr", {"id": f"site-{row.vhost}"},
                                 el("td", {}, el("strong", {}, display(row.vhost)),
                                    el("div", {"class": "muted"}, ", ".join(display(n) for n in row.names[1:]))),
                                 el("td", {}, el("span", {"class": f"status {_STATE_CLASS[row.state]}"}, row.words),
                                    el("div", {"class": "muted"}, row.detail) if row.detail else None),
                                 el("td", {}, actions)))
        body.append(el("table", {}, el("caption", {"class": "muted"}, "Your websites"),
                       el("thead", {}, el("tr", {}, el("th", {"scope": "col"}, "Website"),
                                         el("th", {"scope": "col"}, "Status"), el("th", {"scope": "col"}, "Actions"))),
                       el("tbody", {}, table_rows)))
        body.append(el("p", {}, el("a", {"href": self.link(action="settings")}, "Settings: renewal e-mails")))
        return self.document(TITLE, body)

    def issue(self, host, key_types, default_key_type: str, existing, sources) -> str:
        checked = {host.name} | {n for n in host.name_list if n.startswith(("www.", "mail."))} | set(existing or ())
        boxes = []
        for name in host.name_list:
            ident = f"name-{name}"
            attributes = {"type": "checkbox", "name": "names", "value": name, "id": ident, "checked": name in checked}
            if name == host.name:
                attributes["disabled"] = True
            boxes.append(el("div", {}, el("input", attributes), " ", el("label", {"for": ident}, display(name))))
        options = [el("option", {"value": k, "selected": k == default_key_type}, k) for k in key_types]
        form = self.form(
            "issue",
            el("input", {"type": "hidden", "name": "vhost", "value": host.name}),
            el("input", {"type": "hidden", "name": "names", "value": host.name}),
            el("fieldset", {}, el("legend", {}, "Names in the certificate"), boxes),
            el("p", {}, el("label", {"for": "key_type"}, "Key type"), el("select", {"name": "key_type", "id": "key_type"}, options)),
            el("p", {}, el("input", {"type": "checkbox", "name": "dry_run", "value": "1", "id": "dry_run"}), " ",
               el("label", {"for": "dry_run"}, "Dry run: test with Let's Encrypt's staging service; nothing is installed")),
            el("p", {}, el("button", {"type": "submit", "id": "issue-submit"}, "Issue and install"), " ",
               el("a", {"class": "button secondary", "href": self.script}, "Cancel")),
            progress="Securing your website: checking each name, then asking Let's Encrypt. This takes a few seconds.",
        )
        body = [el("p", {}, "lecp first checks that each name reaches this server, then asks Let's Encrypt, then "
                            "installs the certificate."), form]
        if sources:
            body.append(el("h2", {}, "Or re-use another website's certificate"))
            body.append(self.form("reuse", el("input", {"type": "hidden", "name": "target", "value": host.name}),
                                  el("label", {"for": "source"}, "Certificate of"),
                                  el("select", {"name": "source", "id": "source"},
                                     [el("option", {"value": s}, s) for s in sources]),
                                  " ", el("button", {"class": "secondary", "type": "submit"}, "Re-use")))
        return self.document(f"Secure {display(host.name)}", body)

    def outcome(self, outcome, retry_form=None) -> str:
        ok = outcome.ok
        problems = [el("li", {}, el("strong", {}, display(p.name)), ": ", p.reason,
                       el("div", {"class": "muted"}, p.advice) if p.advice else None) for p in outcome.problems]
        body = [el("div", {"class": f"notice {'ok' if ok else 'bad'}", "role": "status" if ok else "alert"},
                   el("p", {}, outcome.message), el("p", {}, outcome.advice) if outcome.advice else None),
                el("ul", {}, problems) if problems else None, retry_form,
                el("p", {}, el("a", {"class": "button", "href": self.script}, "Back to your websites"))]
        titles = {"issued": "Secured", "deferred": "Almost there", "preflight_failed": "Some names need attention",
                  "failed": "That did not work", "removed": "Removed", "reinstalled": "Reinstalled", "reused": "Re-used",
                  "reuse_removed": "Re-use stopped"}
        return self.document(titles.get(outcome.kind, "Done"), body)

    def refused(self, message: str) -> str:
        return self.document("That cannot be done", el("div", {"class": "notice bad", "role": "alert"}, message),
                             el("p", {}, el("a", {"class": "button", "href": self.script}, "Back to your websites")))

    def view(self, view) -> str:
        chains = [el("option", {"value": c, "selected": c == view.preferred_issuer}, c or "(the CA's default)")
                  for c in ("",) + view.chains]
        rows = [("Names", ", ".join(display(n) for n in view.names)), ("Issuer", view.issuer),
                ("Valid from", _date(view.not_before)), ("Valid until", _date(view.not_after)),
                ("Key type", view.key_type), ("Serial", view.serial), ("Installed", "yes" if view.installed else "no"),
                ("Re-used by", ", ".join(view.reused_by) or "-"), ("Order", view.order_url)]
        body = [el("table", {}, el("tbody", {}, [el("tr", {}, el("th", {"scope": "row"}, k), el("td", {}, v)) for k, v in rows])),
                el("h2", {}, "Chain"),
                self.form("reinstall", el("input", {"type": "hidden", "name": "vhost", "value": view.vhost}),
                          el("label", {"for": "preferred_issuer"}, "Chain to "),
                          el("select", {"name": "preferred_issuer", "id": "preferred_issuer"}, chains),
                          " ", el("button", {"type": "submit"}, "Reinstall with this chain")),
                el("h2", {}, "Certificate"), el("pre", {}, view.certificate_pem),
                el("h2", {}, "Chain (PEM)"), el("pre", {}, view.chain_pem),
                el("p", {}, el("a", {"class": "button secondary", "href": self.script}, "Back"))]
        return self.document(f"Certificate of {display(view.vhost)}", body)

    def remove(self, vhost: str, names) -> str:
        return self.document(f"Remove the certificate of {display(vhost)}?", el("p", {}, "It will be uninstalled and deleted, "
                             "and no longer renewed: " + ", ".join(display(n) for n in names) + "."),
                             self.form("remove", el("input", {"type": "hidden", "name": "vhost", "value": vhost}),
                                       el("p", {}, el("input", {"type": "checkbox", "name": "revoke", "value": "1", "id": "revoke"}),
                                          " ", el("label", {"for": "revoke"}, "Also revoke it (only if its key was exposed)")),
                                       el("button", {"class": "danger", "type": "submit"}, "Remove"), " ",
                                       el("a", {"class": "button secondary", "href": self.script}, "Cancel")))

    def settings(self, mail_enabled: bool, message: str = "") -> str:
        return self.document("Settings", el("div", {"class": "notice ok", "role": "status"}, message) if message else None,
                             self.form("settings", el("p", {}, el("input", {"type": "checkbox", "name": "mail", "value": "1",
                                                                            "id": "mail", "checked": mail_enabled}), " ",
                                                         el("label", {"for": "mail"}, "E-mail me when a certificate is renewed or "
                                                                                      "cannot be renewed")),
                                       el("button", {"type": "submit"}, "Save"), " ",
                                       el("a", {"class": "button secondary", "href": self.script}, "Back")))


__all__ = ["Page", "SiteRow", "site_rows", "render"]
