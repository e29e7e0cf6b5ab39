"""
lecp's cPanel adapter: typed operations (L{adapter}) over LiveAPI, C{uapi} or C{whmapi1}
(L{transports}), or LiveAPI without Twisted for the page's read-only views (L{blocking}).

Names are imported on first use, so that importing L{lecp.cpanel.adapter} does not import Twisted.
"""

_LAZY = {
    "CPanel": "lecp.cpanel.adapter",
    "WHM": "lecp.cpanel.adapter",
    "CPanelError": "lecp.cpanel.envelope",
    "LiveAPI": "lecp.cpanel.transports",
    "UAPICommand": "lecp.cpanel.transports",
    "WHMAPICommand": "lecp.cpanel.transports",
    "BlockingLiveAPI": "lecp.cpanel.blocking",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lecp.cpanel' has no attribute {name!r}")
