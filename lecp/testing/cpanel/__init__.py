"""
A faithful cPanel emulator for tests and the sandbox: the C{uapi}/C{whmapi1} commands, the
LiveAPI socket, a vhost web server and a cpsrvd-like front, over a server kept in a directory.
See L{lecp.testing.cpanel.server} for the layout and C{python -m lecp.testing.cpanel --help}.
"""
