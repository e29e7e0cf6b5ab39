"""
CSRF tokens: an HMAC of the cPanel session (C{cp_security_token}) and the user, keyed by a
secret kept in the user's store. A token from another session, another user or a forged page
does not verify.
"""

from __future__ import annotations

import hashlib
import hmac


def token(secret: str, user: str, session: str) -> str:
    return hmac.new(secret.encode(), f"{user}\n{session}".encode(), hashlib.sha256).hexdigest()


def valid(secret: str | None, user: str, session: str, given: str) -> bool:
    if not secret or not given or not session:
        return False
    return hmac.compare_digest(token(secret, user, session), given)
