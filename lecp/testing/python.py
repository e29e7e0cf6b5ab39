"""
A Python every Unix user can run, with lecp and its dependencies from a world-readable copy: the
worker, the page and the emulated C{uapi} run as cPanel users, and a development checkout or its
virtualenv may sit below folders only root can enter (a pyenv under /root, say), as a real install
(/opt/lecp) never does. Used by the system tests and the sandbox.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig

SYSTEM_PYTHON = "/usr/bin/python3"


def _link_or_copy(source, destination):
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def world_readable_python(folder: str) -> tuple[str, list[str]]:
    """
    Copy this environment's packages and lecp into C{folder} (replacing what was there), with
    their bytecode, and return Debian's python3 and the C{sys.path} entries to give it.

    The bytecode is compiled here, as root, as pip compiles a real install's: the users who run
    the copy cannot write C{__pycache__}, and without it every worker would compile Twisted and
    its other imports from source again (a second of CPU per process).
    """
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        raise RuntimeError(f"{SYSTEM_PYTHON} is missing: install Debian's python3")
    import lecp

    shutil.rmtree(folder, ignore_errors=True)
    site = os.path.join(folder, "site")
    shutil.copytree(sysconfig.get_paths()["purelib"], site, copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns("*.pth", "_pytest", "pip", "lecp*"))
    source = os.path.dirname(lecp.__file__)
    shutil.copytree(source, os.path.join(folder, "src", "lecp"), ignore=shutil.ignore_patterns("__pycache__"))
    plugins = os.path.join(folder, "src", "twisted", "plugins")
    os.makedirs(plugins)
    shutil.copy(os.path.join(os.path.dirname(source), "twisted", "plugins", "lecp_plugin.py"), plugins)
    # The venv's bytecode came along (hard links: valid for the same sources); compile what it
    # lacks. A file that does not compile (a package's test data, say) is compiled, or not, on import.
    subprocess.run([SYSTEM_PYTHON, "-m", "compileall", "-q", "-j", "0", folder], stdout=subprocess.DEVNULL)
    for path, dirs, files in os.walk(folder):
        os.chmod(path, 0o755)
        for name in files:
            child = os.path.join(path, name)
            os.chmod(child, os.stat(child).st_mode | 0o444)
    return SYSTEM_PYTHON, [os.path.join(folder, "src"), site]


def write_launcher(folder: str, python: str, paths: list[str]) -> str:
    """
    A world-executable C{folder/bin/python} that runs C{python} with C{paths} on its path: what
    C{[paths] worker_python} names, so workers started by any root process (the daemon, the
    C{lecp} command) find lecp without an inherited PYTHONPATH.
    """
    bin_folder = os.path.join(folder, "bin")
    os.makedirs(bin_folder, mode=0o755, exist_ok=True)
    path = os.path.join(bin_folder, "python")
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\nPYTHONPATH="{":".join(paths)}" exec {python} "$@"\n')
    os.chmod(path, 0o755)
    return path
