"""
C{lecp}, the admin's command (run as root): what lecp holds across the server (C{status},
C{list}), work done on demand through the same workers the daemon uses (C{renew}, C{issue},
C{remove}), the hostname certificate, a self-test, and adopting the original plugin's data.
"""
