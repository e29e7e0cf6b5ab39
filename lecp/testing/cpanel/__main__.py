"""
The emulated cPanel server from the command line:

    python -m lecp.testing.cpanel init DIR [--hostname H] [--spec FILE.json]
        [--user alice --domain alice.test [--password P] [--email E] [--addon D]... [--sub D]...
         [--parked D]... [--self-signed VHOST]...]...
    python -m lecp.testing.cpanel serve DIR [--web-port 80] [--cpsrvd-port 2083]

C{init} creates (or extends) the server; each C{--user} starts an account and the options after
it describe that account. C{serve} runs the vhost web server and the cpsrvd front until stopped.
"""

from __future__ import annotations

import argparse
import json
import sys


def _accounts_from_words(words: list[str]) -> list[dict]:
    accounts: list[dict] = []
    flags = {"--domain": "domain", "--password": "password", "--email": "email"}
    lists = {"--addon": "addon", "--sub": "sub", "--parked": "parked", "--self-signed": "self_signed"}
    it = iter(words)
    for word in it:
        try:
            value = next(it)
        except StopIteration:
            raise SystemExit(f"init: {word} needs a value") from None
        if word == "--user":
            accounts.append({"user": value})
        elif not accounts:
            raise SystemExit(f"init: {word} must come after --user")
        elif word in flags:
            accounts[-1][flags[word]] = value
        elif word in lists:
            accounts[-1].setdefault(lists[word], []).append(value)
        else:
            raise SystemExit(f"init: unknown option {word}")
    return accounts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lecp.testing.cpanel", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create an emulated server (accounts: --user NAME --domain D ...)")
    init.add_argument("dir")
    init.add_argument("--hostname", default=None)
    init.add_argument("--spec", help="a JSON description (see lecp.testing.cpanel.build)")
    serve = sub.add_parser("serve", help="run the vhost web server and the cpsrvd front")
    serve.add_argument("dir")
    serve.add_argument("--web-port", type=int, default=80)
    serve.add_argument("--cpsrvd-port", type=int, default=2083)
    args, rest = parser.parse_known_args(argv)
    if args.command == "init":
        from lecp.testing.cpanel.build import SpecError, create_server

        spec = {}
        if args.spec:
            with open(args.spec) as f:
                spec = json.load(f)
        if args.hostname:
            spec["hostname"] = args.hostname
        spec.setdefault("accounts", []).extend(_accounts_from_words(rest))
        try:
            server = create_server(args.dir, spec)
        except SpecError as e:
            print(f"init: {e}", file=sys.stderr)
            return 1
        print(json.dumps({"dir": server.root, "uapi": server.path("bin", "uapi"), "whmapi1": server.path("bin", "whmapi1"),
                          "users": server.users()}))
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from twisted.internet import reactor

    from lecp.testing.cpanel.adminbin import listen_adminbin
    from lecp.testing.cpanel.cpsrvd import listen_front
    from lecp.testing.cpanel.server import Server
    from lecp.testing.cpanel.web import listen_web

    server = Server(args.dir)
    web = listen_web(reactor, args.web_port, server)
    front = listen_front(reactor, args.cpsrvd_port, server)
    listen_adminbin(reactor, server)
    print(json.dumps({"web_port": web.getHost().port, "cpsrvd_port": front.getHost().port}), flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
