"""
Issue one certificate from the command line, through a webroot:

    python -m lecp.acme issue --directory URL [--ca-bundle PEM] --webroot DIR
        [--key-type rsa:2048] [--account-key FILE] [--email ADDR] [--timeout S] --out DIR NAME...

Writes C{privkey.pem} and C{fullchain.pem} (and C{account.key} when it made one) into C{--out}.
Exit status 0 only when a certificate was written; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys

from lecp.keys import DEFAULT_ACCOUNT_KEY_TYPE, DEFAULT_DOMAIN_KEY_TYPE

PROG = "python -m lecp.acme"


class CommandError(Exception):
    """A one-line error for the operator."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="lecp's ACME v2 client, for operators and benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    issue = sub.add_parser("issue", help="issue one certificate through a webroot")
    issue.add_argument("--directory", required=True, help="the ACME directory URL")
    issue.add_argument("--ca-bundle", help="PEM file of CAs to trust for the ACME server (default: the system's)")
    issue.add_argument("--webroot", required=True, help="document root served on port 80 for every NAME")
    issue.add_argument("--key-type", default=DEFAULT_DOMAIN_KEY_TYPE, help=f"certificate key (default {DEFAULT_DOMAIN_KEY_TYPE})")
    issue.add_argument("--account-key", help="PEM account key to use (made and saved there if missing)")
    issue.add_argument("--email", help="contact address for a new account")
    issue.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the CA (default 120)")
    issue.add_argument("--out", required=True, help="folder for privkey.pem and fullchain.pem")
    issue.add_argument("names", nargs="+", metavar="NAME")
    return parser


def _load_or_make_account_key(path: str | None, out: str):
    from lecp.fsutil import atomic_write
    from lecp.keys import generate_private_key, load_private_key, private_key_to_pem

    if path and os.path.exists(path):
        try:
            with open(path, "rb") as f:
                return load_private_key(f.read())
        except (OSError, ValueError) as e:
            raise CommandError(f"cannot use account key {path}: {e}") from None
    key = generate_private_key(DEFAULT_ACCOUNT_KEY_TYPE)
    atomic_write(path or os.path.join(out, "account.key"), private_key_to_pem(key), 0o600)
    return key


async def issue(reactor, args) -> None:
    from lecp.acme.client import ACMEClient, PendingOrder
    from lecp.acme.http import make_http_client
    from lecp.acme.webroot import WebrootResponder
    from lecp.fsutil import atomic_write
    from lecp.keys import generate_private_key, make_csr, parse_key_type, private_key_to_pem

    try:
        key_type = parse_key_type(args.key_type)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if not os.path.isdir(args.webroot):
        raise CommandError(f"--webroot {args.webroot} is not a folder")
    os.makedirs(args.out, mode=0o700, exist_ok=True)
    try:
        http = make_http_client(reactor, args.ca_bundle)
    except (OSError, ValueError) as e:
        raise CommandError(f"cannot read --ca-bundle: {e}") from None
    account_key = _load_or_make_account_key(args.account_key, args.out)
    client = ACMEClient.create(http, reactor, args.directory, account_key, contact_email=args.email)
    domain_key = generate_private_key(key_type)
    names = [n.strip().lower().rstrip(".") for n in args.names]
    responder = WebrootResponder(lambda name: args.webroot)
    outcome = await client.issue(names, make_csr(domain_key, names), responder, reactor.seconds() + args.timeout)
    if isinstance(outcome, PendingOrder):
        raise CommandError(f"the CA had not issued within {args.timeout:g} s; the order is {outcome.order_url}")
    atomic_write(os.path.join(args.out, "privkey.pem"), private_key_to_pem(domain_key), 0o600)
    atomic_write(os.path.join(args.out, "fullchain.pem"), outcome.fullchain_pem.encode("ascii"), 0o644)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from lecp.acme.errors import ACMEError
    from lecp.run import run_to_completion

    try:
        run_to_completion(lambda reactor: issue(reactor, args))
        return 0
    except (CommandError, ACMEError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
    except Exception as e:
        import traceback

        print(f"{PROG}: error: unexpected {e}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
