# -*- test-case-name: tests.integration.test_admin -*-
"""
The C{lecp} command, for the server's admin (root):

    lecp status                                   daemon health, certificates by state, next pass
    lecp list [--user U] [--expiring DAYS]        every certificate lecp holds
    lecp renew [--user U] [--vhost V] [--force] [--dry-run]
    lecp issue --user U NAME...                   issue for the websites serving NAMEs
    lecp remove --user U --vhost V [--revoke]
    lecp hostcert status|run                      the hostname certificate of cPanel's services
    lecp self-test [--domain D]                   is this server set up for lecp?
    lecp import                                   adopt the original plugin's certificates

Every subcommand takes C{--json} (one JSON document on standard output) and C{--config}.
Exit status: 0 done, 1 something failed (the output says what), 2 the request was wrong.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

from lecp.admin.inventory import AdminError


def _date(epoch: float | None, now: float | None = None) -> str:
    if not epoch:
        return "-"
    now = time.time() if now is None else now
    seconds = epoch - now
    span = abs(seconds)
    amount = f"{span / 86400:.0f} d" if span >= 2 * 86400 else f"{span / 3600:.0f} h" if span >= 3600 else f"{span / 60:.0f} min"
    when = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{when} (in {amount})" if seconds >= 0 else f"{when} ({amount} ago)"


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [headers, *rows])


def _print_json(value) -> None:
    json.dump(value, sys.stdout, indent=1, sort_keys=True, default=str)
    sys.stdout.write("\n")


def _progress(args):
    """Progress lines on standard error (so --json output stays clean)."""
    def report(done, total, task, outcome):
        sys.stderr.write(f"[{done}/{total}] {task.user} {task.vhost}: {outcome.kind}: {outcome.message}\n")
        sys.stderr.flush()
    return report


def _run(make):
    from lecp.run import run_to_completion

    return run_to_completion(make)


# Subcommands


def cmd_status(args, config) -> int:
    from lecp.admin.inventory import read_inventory
    from lecp.admin.selftest import fetch_health

    try:
        health, daemon_error = fetch_health(config), ""
    except OSError as e:
        health, daemon_error = None, str(e)
    inventory = read_inventory(config)
    counts = inventory.counts()
    renewal = (health or {}).get("services", {}).get("renewal", {})
    if args.json:
        _print_json({"daemon": health, "daemon_error": daemon_error, "accounts": inventory.accounts,
                     "certificates": len(inventory.entries), "by_state": counts,
                     "errors": [list(e) for e in inventory.errors], "next_pass": renewal.get("next_run")})
    else:
        if health is None:
            print(f"daemon: NOT RUNNING: {daemon_error}; start it with: systemctl start lecp")
        else:
            print(f"daemon: {health['status']}, up {health['uptime'] / 3600:.1f} h")
            for name, service in sorted(health.get("services", {}).items()):
                line = f"  {name}: {service.get('state')}"
                if service.get("last_run"):
                    line += f", last run {_date(service['last_run'])}"
                if service.get("next_run"):
                    line += f", next {_date(service['next_run'])}"
                if service.get("last_error"):
                    line += f", error: {service['last_error']}"
                print(line)
        by_state = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
        print(f"accounts: {inventory.accounts}; certificates: {len(inventory.entries)} ({by_state})")
        if renewal.get("next_run"):
            print(f"next renewal pass: {_date(renewal['next_run'])}")
        for user, error in inventory.errors:
            print(f"warning: {user}: {error}")
    return 0 if health is not None and health.get("status") == "ok" else 1


def cmd_list(args, config) -> int:
    from lecp.admin.inventory import read_inventory

    now = time.time()
    inventory = read_inventory(config, [args.user] if args.user else ())
    entries = inventory.entries
    if args.expiring is not None:
        entries = [e for e in entries if e.not_after and e.not_after - now <= args.expiring * 86400]
    entries.sort(key=lambda e: (e.user, e.vhost))
    if args.json:
        _print_json({"certificates": [e.to_json() for e in entries], "errors": [list(e) for e in inventory.errors]})
        return 0
    if not entries:
        print("No certificates" + (f" expiring within {args.expiring:g} days." if args.expiring is not None else "."))
    else:
        print(_table([[e.user, e.vhost, e.state, _date(e.not_after, now), "yes" if e.installed else "no",
                       " ".join(e.names[1:]) or "-"] for e in entries],
                     ["USER", "WEBSITE", "STATE", "EXPIRES", "INSTALLED", "OTHER NAMES"]))
    for user, error in inventory.errors:
        print(f"warning: {user}: {error}", file=sys.stderr)
    return 0


def cmd_renew(args, config) -> int:
    from lecp.admin.actions import renewal_task, run_tasks
    from lecp.admin.inventory import read_inventory

    if args.vhost and not args.user:
        raise AdminError("--vhost needs --user: say whose website it is")
    inventory = read_inventory(config, [args.user] if args.user else ())
    entries = [e for e in inventory.entries if not args.vhost or e.vhost == args.vhost]
    if args.vhost and not entries:
        raise AdminError(f"{args.user} has no certificate from lecp for {args.vhost} (see: lecp list --user {args.user})")
    plan = []
    for e in entries:
        if e.state == "removed":
            continue
        if e.action:
            plan.append((e, e.action, e.reason))
        elif args.force and e.state != "pending":
            plan.append((e, "renew", "forced by the admin"))
    if args.dry_run or not plan:
        if args.json:
            _print_json({"dry_run": args.dry_run, "plan": [{"user": e.user, "vhost": e.vhost, "action": a, "reason": r}
                                                            for e, a, r in plan]})
        elif not plan:
            print("Nothing is due" + ("" if args.force else "; --force renews anyway") + ".")
        else:
            for e, action, reason in plan:
                print(f"would {action} {e.user} {e.vhost}: {reason}")
        return 0
    tasks = [renewal_task(e.user, e.vhost, action, reason, e.not_after, e.added_names) for e, action, reason in plan]
    if not args.json:
        print(f"Renewing {len(tasks)} certificate(s), {config.concurrency} at a time...", file=sys.stderr)
    results = _run(lambda reactor: run_tasks(reactor, config, tasks, _progress(args)))
    return _report_outcomes(args, results)


def _report_outcomes(args, results) -> int:
    failed = [(t, o) for t, o in results if not o.ok]
    if args.json:
        _print_json({"results": [{"user": t.user, **o.to_json()} for t, o in results]})
    else:
        for task, outcome in results:
            print(f"{task.user} {task.vhost}: {outcome.kind}: {outcome.message}"
                  + (f" ({outcome.advice})" if outcome.advice and not outcome.ok else ""))
            for problem in outcome.problems:
                print(f"  {problem.name}: {problem.reason}")
        print(f"{len(results) - len(failed)} done, {len(failed)} failed.")
    return 1 if failed else 0


def _websites_for(config, user: str, names) -> dict[str, list[str]]:
    """The names grouped by the website of C{user} serving each; L{AdminError} for a name no website serves."""
    from lecp.daemon.scan import read_userdatadomains, vhost_domains
    from lecp.names import BadName, normalise

    hosts = {v: d for (u, v), (d, _) in vhost_domains(read_userdatadomains(config.userdatadomains)).items() if u == user}
    grouped: dict[str, list[str]] = {}
    for raw in names:
        try:
            name = normalise(raw)
        except BadName as e:
            raise AdminError(str(e)) from None
        bare = name[4:] if name.startswith("www.") else name
        vhost = next((v for v, domains in hosts.items() if name in domains or bare in domains), None)
        if vhost is None:
            raise AdminError(f"{name} is not a domain of {user}'s websites (see: lecp list --user {user}, or cPanel's Domains)")
        grouped.setdefault(vhost, [])
        if name != vhost and name not in grouped[vhost]:
            grouped[vhost].append(name)
    return grouped


def cmd_issue(args, config) -> int:
    from lecp.admin.actions import Task, run_tasks
    from lecp.admin.inventory import account_users
    from lecp.daemon.scan import Work

    account_users(config, [args.user])
    grouped = _websites_for(config, args.user, args.names)
    tasks = []
    for vhost, names in grouped.items():
        job = {"job": "issue", "vhost": vhost, "names": names, "deadline": args.deadline}
        if args.key_type:
            job["key_type"] = args.key_type
        tasks.append(Task(args.user, job, Work(args.user, vhost, "issue", "asked by the admin", disable_mail=True)))
    if not args.json:
        print(f"Issuing for {len(tasks)} website(s) of {args.user}...", file=sys.stderr)
    return _report_outcomes(args, _run(lambda reactor: run_tasks(reactor, config, tasks, _progress(args))))


def cmd_remove(args, config) -> int:
    from lecp.admin.actions import Task, run_tasks
    from lecp.admin.inventory import account_users
    from lecp.daemon.scan import Work

    account_users(config, [args.user])
    job = {"job": "remove", "vhost": args.vhost, "revoke": args.revoke}
    tasks = [Task(args.user, job, Work(args.user, args.vhost, "remove", "asked by the admin", disable_mail=True))]
    results = _run(lambda reactor: run_tasks(reactor, config, tasks))
    [(task, outcome)] = results
    if outcome.error_type == "refused":
        raise AdminError(outcome.message)
    return _report_outcomes(args, results)


def cmd_hostcert(args, config) -> int:
    from lecp.admin.hostcert import hostcert_run, hostcert_status

    if args.action == "run":
        try:
            result = _run(lambda reactor: hostcert_run(reactor, config))
        except RuntimeError as e:
            raise AdminError(str(e)) from None
        status = result["status"]
    else:
        result = status = _run(lambda reactor: hostcert_status(reactor, config))
    if args.json:
        _print_json(result)
    else:
        print(f"hostname: {status['hostname']}; names: {', '.join(status['names'])}"
              + ("" if status["enabled"] else " (managing it is turned off: [hostcert] enabled = false)"))
        rows = [[s["service"], "self-signed" if s["self_signed"] else (s["issuer"] or "-"), _date(s["not_after"]),
                 s["needs_replacing"] or "ok"] for s in status["services"]]
        print(_table(rows, ["SERVICE", "ISSUER", "EXPIRES", "STATE"]))
        if args.action == "run":
            print(f"replaced on: {', '.join(result['replaced'])}" if result["replaced"] else "Nothing needed replacing.")
    if args.action == "run":
        return 1 if any(s["needs_replacing"] for s in status["services"]) else 0
    return 0


def cmd_self_test(args, config) -> int:
    from lecp.admin.selftest import self_test

    checks = _run(lambda reactor: self_test(reactor, config, args.domain))
    if args.json:
        _print_json({"ok": all(c.ok for c in checks), "checks": [c.to_json() for c in checks]})
    else:
        for check in checks:
            print(f"[{'PASS' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
            if not check.ok and check.hint:
                print(f"       what to do: {check.hint}")
    return 0 if all(c.ok for c in checks) else 1


def cmd_import(args, config) -> int:
    from lecp.admin.fleetssl import import_report

    report = import_report(config, [args.user] if args.user else (), args.original_config, args.root)
    if args.json:
        _print_json(report)
        return 0
    certs = report["certificates"]
    print(f"Found {len(certs)} certificate(s) in {report['documents']} account document(s); "
          f"{report['original_format']} written by the original plugin. Its format is lecp's own: nothing to convert.")
    for cert in certs:
        state = cert["problem"] or ("installed" if cert["installed"] else "stored, not installed")
        print(f"  {cert['user']} {cert['vhost']} ({cert['format']}): expires {_date(cert['not_after'])}: {state}")
    if certs:
        print("lecp renews these certificates from its next pass, with the same keys.")
    for user, error in report["errors"]:
        print(f"warning: {user}: {error}")
    if report["settings_error"]:
        print(f"warning: the original configuration was not read: {report['settings_error']}")
    if report["settings"] is not None:
        print(f"\nThe original plugin's settings ({args.original_config}) in lecp's configuration, "
              f"to merge into {config.source if config.source != '(defaults)' else '/etc/lecp/lecp.toml'}:\n")
        print(report["settings_toml"] or "(nothing to carry over)")
        for note in report["settings_notes"]:
            print(f"note: {note}")
    if report["original_files"]:
        print("\nwarning: the original plugin is still installed (" + ", ".join(report["original_files"]) + "); "
              "uninstall it so that two programs do not renew the same certificates.")
    return 0


# The parser


def build_parser() -> argparse.ArgumentParser:
    def common_options(default):
        # Accepted before and after the subcommand; the subcommand's copy must not reset the other's value.
        options = argparse.ArgumentParser(add_help=False)
        options.add_argument("--config", "-c", default=default(None),
                             help="the configuration file (default: $LECP_CONFIG or /etc/lecp/lecp.toml)")
        options.add_argument("--json", action="store_true", default=default(False),
                             help="print one JSON document, for scripts")
        return options

    common = common_options(lambda value: argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="lecp", description="Let's Encrypt for every cPanel account: the admin's command.",
                                     parents=[common_options(lambda value: value)])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, handler, help_text):
        command = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    add("status", cmd_status, "the daemon's health, certificates by state, the next renewal pass")
    listing = add("list", cmd_list, "every certificate lecp holds")
    listing.add_argument("--user", help="only this account's")
    listing.add_argument("--expiring", type=_days, metavar="DAYS", help="only those expiring within DAYS days")
    renew = add("renew", cmd_renew, "renew what is due now (or everything selected, with --force)")
    renew.add_argument("--user", help="only this account's certificates")
    renew.add_argument("--vhost", help="only this website's certificate (with --user)")
    renew.add_argument("--force", action="store_true", help="renew even certificates that are not due")
    renew.add_argument("--dry-run", action="store_true", help="say what would be renewed and why; change nothing")
    issue = add("issue", cmd_issue, "issue a certificate for the websites of an account serving NAMEs")
    issue.add_argument("--user", required=True, help="the account")
    issue.add_argument("names", nargs="+", metavar="NAME", help="domain names (www. names included)")
    issue.add_argument("--key-type", help="e.g. rsa:2048, ecdsa:p-256 (default: the configured one)")
    issue.add_argument("--deadline", type=_seconds, default=90.0,
                       help="seconds to wait for the CA before the daemon finishes the order (default 90)")
    remove = add("remove", cmd_remove, "remove lecp's certificate from a website")
    remove.add_argument("--user", required=True, help="the account")
    remove.add_argument("--vhost", required=True, help="the website")
    remove.add_argument("--revoke", action="store_true", help="also revoke the certificate")
    hostcert = add("hostcert", cmd_hostcert, "the hostname certificate of cPanel's services")
    hostcert.add_argument("action", choices=("status", "run"), help="status: look; run: replace what needs it now")
    selftest = add("self-test", cmd_self_test, "check that this server is set up for lecp")
    selftest.add_argument("--domain", help="also run the HTTP-01 pre-flight of this domain, as its account")
    importing = add("import", cmd_import, "report the original plugin's certificates and settings that lecp adopts")
    importing.add_argument("--user", help="only this account")
    importing.add_argument("--original-config", default="/etc/letsencrypt-cpanel.conf",
                           help="the original plugin's configuration (default: %(default)s)")
    importing.add_argument("--root", default="/", help=argparse.SUPPRESS)
    return parser


def _bounded(unit: str, low: float, high: float):
    """An argparse type: a number of C{unit} between C{low} and C{high}."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g} {unit}")
        return value
    return parse


_days = _bounded("days", 0, 3650)
_seconds = _bounded("seconds", 1, 600)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from lecp.config import ConfigError, load
    from lecp.cpanel.envelope import CPanelError

    try:
        config = load(args.config)
    except ConfigError as e:
        return _fail(args, f"configuration: {e}", 2)
    if os.geteuid() != 0 and args.command not in ("self-test",):
        return _fail(args, "lecp must be run as root: it reads every account's certificates and runs jobs as their users", 2)
    try:
        return args.handler(args, config)
    except AdminError as e:
        return _fail(args, str(e), 2)
    except (CPanelError, OSError) as e:
        return _fail(args, f"{e}", 1)
    except KeyboardInterrupt:
        return _fail(args, "interrupted; work already started finishes in the background or is resumed by the daemon", 1)


def _fail(args, message: str, code: int) -> int:
    if getattr(args, "json", False):
        _print_json({"error": message})
    print(f"lecp: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
