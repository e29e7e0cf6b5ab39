"""lecp's ACME v2 client: see L{lecp.acme.client}, L{lecp.acme.transport} and L{lecp.acme.errors}."""

from lecp.acme.client import ACMEClient, IssuedCertificate, Order, PendingOrder, RenewalWindow
from lecp.acme.errors import (
    ACMEConnectionError,
    ACMEError,
    ACMEHTTPError,
    ACMEProblem,
    ACMEProtocolError,
    AuthorizationFailed,
    OrderFailed,
    RateLimited,
    ValidationFailed,
)

LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING_DIRECTORY = "https://acme-staging-v02.api.letsencrypt.org/directory"

__all__ = [
    "ACMEClient",
    "IssuedCertificate",
    "Order",
    "PendingOrder",
    "RenewalWindow",
    "ACMEConnectionError",
    "ACMEError",
    "ACMEHTTPError",
    "ACMEProblem",
    "ACMEProtocolError",
    "AuthorizationFailed",
    "OrderFailed",
    "RateLimited",
    "ValidationFailed",
    "LETSENCRYPT_DIRECTORY",
    "LETSENCRYPT_STAGING_DIRECTORY",
]
