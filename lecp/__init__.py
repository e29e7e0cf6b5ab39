"""lecp: free, automatic Let's Encrypt certificates for every user of a cPanel server."""

__version__ = "0.1.0"
