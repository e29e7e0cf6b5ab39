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


class IUAPITransport(Interface):
    """Carries UAPI calls to cPanel as one user (LiveAPI socket, or the C{uapi} command)."""

    def call(module, function, arguments):
        """
        Call C{Module::function} with C{arguments} (a dict of strings or lists of strings).

        @return: a Deferred firing with the decoded JSON envelope (not yet checked for success).
        """


class IWHMTransport(Interface):
    """Carries WHM API 1 calls (root only: the C{whmapi1} command)."""

    def call(function, arguments):
        """
        Call C{function} with C{arguments}.

        @return: a Deferred firing with the decoded JSON envelope (not yet checked for success).
        """
