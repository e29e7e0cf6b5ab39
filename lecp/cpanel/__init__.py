"""lecp's cPanel adapter: typed operations (L{adapter}) over LiveAPI, C{uapi} or C{whmapi1} (L{transports})."""

from lecp.cpanel.adapter import CPanel, WHM
from lecp.cpanel.envelope import CPanelError
from lecp.cpanel.transports import LiveAPI, UAPICommand, WHMAPICommand

__all__ = ["CPanel", "WHM", "CPanelError", "LiveAPI", "UAPICommand", "WHMAPICommand"]
