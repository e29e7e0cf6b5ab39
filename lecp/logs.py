"""Log observers for C{twistd --logger=...}: C{lecp.logs.json_stdout} writes one JSON event per line."""

import sys

from twisted.logger import jsonFileLogObserver


def json_stdout():
    """For log shippers: C{twistd -n --logger=lecp.logs.json_stdout lecp}."""
    return jsonFileLogObserver(sys.stdout)
