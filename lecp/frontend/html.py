"""
HTML built from nested calls, everything escaped: C{el("p", {"class": "x"}, "text", el("b", {}, name))}.
A page view is a fresh CGI process, and C{twisted.web.template} costs 0.3-0.5 s to import on the
target machines (bench/README.md); this is the same idea (no string templating of user data) in
a few lines.
"""

from __future__ import annotations

from html import escape

VOID = {"br", "hr", "input", "meta", "link", "img"}


class Markup(str):
    """Text that is already HTML."""


def el(tag: str, attributes: dict | None = None, *children) -> Markup:
    attrs_text = "".join(
        f' {name}' if value is True else f' {name}="{escape(str(value), quote=True)}"'
        for name, value in (attributes or {}).items() if value is not None and value is not False
    )
    if tag in VOID:
        return Markup(f"<{tag}{attrs_text}>")
    return Markup(f"<{tag}{attrs_text}>{render(children)}</{tag}>")


def render(children) -> str:
    out = []
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, Markup):
            out.append(child)
        elif isinstance(child, (list, tuple)):
            out.append(render(child))
        else:
            out.append(escape(str(child), quote=False))
    return Markup("".join(out))
