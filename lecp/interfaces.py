"""The seams of lecp, as zope interfaces: what the core needs from its collaborators."""

from zope.interface import Attribute, Interface


class IChallengeResponder(Interface):
    """Makes a challenge answerable while the CA validates it, and tidies up afterwards."""

    challenge_type = Attribute("The ACME challenge type answered, e.g. C{'http-01'}.")

    def start_responding(identifier, token, key_authorization):
        """
        Publish C{key_authorization} for C{token} of C{identifier}; may return a Deferred.

        Called before the challenge is answered; must be idempotent.
        """

    def stop_responding(identifier, token):
        """Withdraw what L{start_responding} published; may return a Deferred; never raises for a missing file."""
