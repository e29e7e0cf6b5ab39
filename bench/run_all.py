"""Run every benchmark in this folder, one after the other (`make bench`)."""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = ["acme_issuance.py", "emulator_uapi.py", "page_imports.py", "page_views.py", "renewal_scan.py",
              "peers_issuance.py", "mass_renewal.py"]


def main() -> int:
    failed = []
    for script in BENCHMARKS:
        print(f"== {script}", flush=True)
        if subprocess.call([sys.executable, os.path.join(HERE, script)]) != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
