"""The package list of pyproject.toml names every package of the tree (an editable install hides omissions)."""

import os
import tomllib

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PackagingTests(SynchronousTestCase):
    """What a wheel of lecp contains."""

    def test_every_package_listed(self):
        """Each folder of lecp/ with an __init__.py, and twisted.plugins, is listed."""
        with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
            listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
        found = {"twisted.plugins"}
        for folder, dirs, files in os.walk(os.path.join(ROOT, "lecp")):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            if "__init__.py" in files:
                found.add(os.path.relpath(folder, ROOT).replace(os.sep, "."))
        self.assertEqual(listed, found)
        self.assertFalse(os.path.exists(os.path.join(ROOT, "twisted", "__init__.py")))
        self.assertFalse(os.path.exists(os.path.join(ROOT, "twisted", "plugins", "__init__.py")))
