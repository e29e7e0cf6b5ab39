"""
The emulated C{uapi} and C{whmapi1} commands, as cPanel's own: C{--output=json|jsonpretty|yaml},
C{--user} (required for C{uapi} as root, refused for anyone else's account), URI-escaped
C{key=value} words, C{--input=json} from stdin, exit status 0 even when the call fails.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import socket
import sys
from urllib.parse import unquote

from lecp.testing.cpanel.server import NoSuchAccount, Server


def parse_words(words: list[str]) -> dict:
    """C{key=value} words, percent-decoded; repeated and numbered (C{name-0}) keys become lists."""
    args: dict = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"argument {word!r} is not key=value")
        key, value = unquote(key), unquote(value)
        numbered = re.fullmatch(r"(.+)-\d+", key)
        if numbered:
            key = numbered.group(1)
        if key in args:
            existing = args[key]
            args[key] = (existing if isinstance(existing, list) else [existing]) + [value]
        else:
            args[key] = [value] if numbered else value
    return args


def _yaml(value, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}\n"
        out = "\n"
        for k, v in value.items():
            out += f"{pad}{k}:" + (" " + _yaml(v, indent + 1) if not isinstance(v, (dict, list)) or not v else _yaml(v, indent + 1))
        return out
    if isinstance(value, list):
        if not value:
            return "[]\n"
        out = "\n"
        for v in value:
            out += f"{pad}-" + (" " + _yaml(v, indent + 1) if not isinstance(v, (dict, list)) or not v else _yaml(v, indent + 1))
        return out
    if value is None:
        return "~\n"
    return json.dumps(value, ensure_ascii=False) + "\n" if isinstance(value, str) else f"{value}\n"


def _print(answer: dict, output: str) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")
    elif output == "jsonpretty":
        sys.stdout.write(json.dumps(answer, ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write("---" + _yaml(answer))


def _split(argv: list[str], program: str):
    options, rest = {}, []
    for i, word in enumerate(argv):
        if word.startswith("--"):
            name, _, value = word[2:].partition("=")
            if name not in ("output", "user", "input"):
                raise SystemExit(f"{program}: unknown option --{name}")
            options[name] = value
        else:
            rest = argv[i:]
            break
    output = options.get("output", "yaml")
    if output not in ("json", "jsonpretty", "yaml"):
        raise SystemExit(f"{program}: unsupported --output={output} (use json, jsonpretty or yaml)")
    return options, output, rest


def _arguments(options: dict, words: list[str], program: str) -> dict:
    if options.get("input") == "json":
        try:
            args = json.load(sys.stdin)
        except ValueError as e:
            raise SystemExit(f"{program}: --input=json needs a JSON object on standard input ({e})")
        if not isinstance(args, dict):
            raise SystemExit(f"{program}: --input=json needs a JSON object on standard input")
        return args
    try:
        return parse_words(words)
    except ValueError as e:
        raise SystemExit(f"{program}: {e}")


def call_as_user(server: Server, module: str, function: str, args: dict) -> dict:
    """
    C{uapi}'s side when run by an ordinary user: ask the admin service (blocking; standard
    library only, as this runs in every emulated C{uapi} process).
    """
    path = server.settings.get("adminbin_socket")
    if not path or not os.path.exists(path):
        raise SystemExit("uapi: the emulated cPanel service is not running (python -m lecp.testing.cpanel serve)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(120)
        connection.connect(path)
        connection.sendall(json.dumps({"module": module, "function": function, "args": args}).encode() + b"\n")
        chunks = []
        while True:
            chunk = connection.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    answer = json.loads(b"".join(chunks) or b"{}")
    if "cli_error" in answer:
        raise SystemExit(answer["cli_error"])
    return answer


def uapi_main(argv: list[str], root: str) -> int:
    """C{uapi [--output=F] [--user=U] [--input=json] Module function [key=value ...]}."""
    options, output, rest = _split(argv, "uapi")
    if len(rest) < 2:
        raise SystemExit("usage: uapi [--output=json|jsonpretty|yaml] [--user=USER] Module function [key=value ...]")
    server = Server(root)
    euid = os.geteuid()
    args = _arguments(options, rest[2:], "uapi")
    if euid != 0:
        # As on cPanel, an ordinary user's call is run by the privileged side, which knows the
        # caller from the socket, not from anything the caller says.
        try:
            user = pwd.getpwuid(euid).pw_name
        except KeyError:
            user = server.user_for_uid(euid)
            if user is None:
                raise SystemExit("uapi: your Unix user is unknown to this server") from None
        if options.get("user") not in (None, user):
            raise SystemExit("uapi: only root may act as another user with --user")
        _print(call_as_user(server, rest[0], rest[1], args), output)
        return 0
    from lecp.testing.cpanel import uapi

    user = options.get("user")
    if not user:
        raise SystemExit("uapi: --user is required when running as root")
    try:
        server.account(user)
    except NoSuchAccount:
        raise SystemExit(f"uapi: “{user}” is not a cPanel user on this server") from None
    _print(uapi.call(server, user, rest[0], rest[1], args), output)
    return 0


def whmapi1_main(argv: list[str], root: str) -> int:
    """C{whmapi1 [--output=F] function [key=value ...]} (root only)."""
    from lecp.testing.cpanel import whm

    options, output, rest = _split(argv, "whmapi1")
    if os.geteuid() != 0:
        raise SystemExit("whmapi1: this program must be run as root")
    if not rest:
        raise SystemExit("usage: whmapi1 [--output=json|jsonpretty|yaml] function [key=value ...]")
    _print(whm.call(Server(root), rest[0], _arguments(options, rest[1:], "whmapi1")), output)
    return 0


SCRIPT = """#!{python}
# The emulated cPanel's {name} for the server in {root}; made by python -m lecp.testing.cpanel init.
import sys
sys.path[:0] = {paths!r}
from lecp.testing.cpanel.cli import {function}
sys.exit({function}(sys.argv[1:], {root!r}))
"""


def write_scripts(root: str, python: str | None = None, paths: tuple = ()) -> None:
    """
    Write C{ROOT/bin/uapi} and C{ROOT/bin/whmapi1}, run by C{python} (this one by default) with
    C{paths} put first on C{sys.path} (for an interpreter every Unix user can run).
    """
    folder = os.path.join(root, "bin")
    os.makedirs(folder, exist_ok=True)
    for name, function in (("uapi", "uapi_main"), ("whmapi1", "whmapi1_main")):
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write(SCRIPT.format(python=python or sys.executable, name=name, root=os.path.abspath(root),
                                  function=function, paths=list(paths)))
        os.chmod(path, 0o755)
