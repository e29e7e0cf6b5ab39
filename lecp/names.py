# -*- test-case-name: tests.test_names -*-
"""
Domain names as users type them, made into what the CA and cPanel expect: lower case, no
trailing dot, internationalised names as their A-label (IDNA 2008). Anything else is refused
with the reason.
"""

from __future__ import annotations

import re

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class BadName(ValueError):
    """A name that cannot be in a certificate; says which and why."""


def normalise(name: str) -> str:
    """
    The canonical form of C{name}: C{"WWW.Bücher.Example."} becomes C{"www.xn--bcher-kva.example"}.

    @raise BadName: for empty names, wildcards (HTTP-01 cannot validate them), IP addresses,
        labels that are too long or hold other characters, and IDNs that do not encode.
    """
    if not isinstance(name, str):
        raise BadName(f"{name!r} is not a domain name")
    original = name
    name = name.strip().rstrip(".").lower()
    if not name:
        raise BadName("an empty name is not a domain name")
    if len(original) > 300 or "\x00" in name:
        raise BadName(f"{original[:60]!r}… is not a domain name")
    if name.startswith("*."):
        raise BadName(f"{original}: wildcard names need DNS validation, which lecp does not offer; add the names one by one")
    if not name.isascii():
        try:
            import idna

            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as e:
            raise BadName(f"{original}: not a valid internationalised domain name ({e})") from None
    if re.fullmatch(r"[0-9.]+", name) or (":" in name and re.fullmatch(r"[0-9a-f:.]+", name)):
        raise BadName(f"{original}: IP addresses cannot be secured here; use a domain name")
    labels = name.split(".")
    if len(labels) < 2:
        raise BadName(f"{original}: a certificate needs a full domain name such as example.com")
    if len(name) > 253:
        raise BadName(f"{original[:60]}…: a domain name has at most 253 characters")
    for label in labels:
        if not _LABEL.match(label):
            raise BadName(f"{original}: “{label}” is not a valid part of a domain name (letters, digits and inner hyphens only, at most 63)")
    return name


def display(name: str) -> str:
    """The Unicode form of an A-label name, for people (falls back to the name itself)."""
    if "xn--" not in name:
        return name
    try:
        import idna

        return idna.decode(name)
    except (idna.IDNAError, UnicodeError):
        return name
