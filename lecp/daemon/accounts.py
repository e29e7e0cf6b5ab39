# -*- test-case-name: tests.test_daemon_services -*-
"""
The Unix side of cPanel accounts, read from the passwd file (C{/etc/passwd}: cPanel accounts
are local users) once per pass: name, uid, gid, home.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class UnixAccount:
    """One passwd entry (the fields lecp needs, named as C{pwd} names them)."""

    pw_name: str
    pw_uid: int
    pw_gid: int
    pw_dir: str


def read_passwd(path: str = "/etc/passwd") -> dict[str, UnixAccount]:
    """Every entry of a passwd file by name; malformed lines are skipped."""
    accounts = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if len(fields) < 7 or not fields[0] or fields[0].startswith(("#", "+", "-")):
                continue
            try:
                accounts[fields[0]] = UnixAccount(fields[0], int(fields[2]), int(fields[3]), fields[5])
            except ValueError:
                continue
    return accounts
