"""C{python -m lecp.admin}: the same as the C{lecp} command."""

import sys

from lecp.admin.cli import main

sys.exit(main())
