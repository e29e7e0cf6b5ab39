#!/usr/bin/env python3
"""lecp's cPanel page. Everything is in lecp.frontend.app; the installer points the first line at lecp's Python."""
import sys

from lecp.frontend.app import main

sys.exit(main())
