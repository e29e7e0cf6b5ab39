"""
Import cost of what the page needs to render the list of certificates: the store, the
configuration, names, the cPanel adapter and its blocking LiveAPI transport (python -X importtime,
summed over top-level imports, in a fresh process each run). Target: under 150 ms.

    python bench/page_imports.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import summary, write_result  # noqa: E402

LIST_MODULES = ["lecp.store", "lecp.config", "lecp.names", "lecp.cpanel.adapter", "lecp.cpanel.blocking"]


def import_cost(modules: list[str]) -> tuple[float, float, list[tuple[str, float]]]:
    """(seconds spent importing, wall seconds of the process, the 8 costliest modules)."""
    code = "import " + ", ".join(modules)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    top, costs = 0.0, []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            cumulative, depth, name = int(match.group(2)), len(match.group(3)), match.group(4)
            if depth == 1:
                top += cumulative
                costs.append((name, cumulative / 1e6))
    return top / 1e6, wall, sorted(costs, key=lambda c: -c[1])[:8]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    import_cost(LIST_MODULES)  # warm the page cache and the bytecode
    imports, walls, heaviest = [], [], None
    for _ in range(args.runs):
        seconds, wall, heaviest = import_cost(LIST_MODULES)
        imports.append(seconds)
        walls.append(wall)
    twisted_cost = [import_cost(["twisted.internet.defer"])[0] for _ in range(5)]
    result = {"benchmark": "page_imports", "modules": LIST_MODULES, "target_median_s": 0.150,
              "imports": {"runs": imports, **summary(imports)}, "process_wall": {"runs": walls, **summary(walls)},
              "heaviest_last_run": heaviest, "twisted_internet_defer_import": summary(twisted_cost)}
    path = write_result("page_imports", result)
    print(f"list-view imports: median {result['imports']['median'] * 1000:.0f} ms (p90 {result['imports']['p90'] * 1000:.0f} ms); "
          f"whole process {result['process_wall']['median'] * 1000:.0f} ms")
    print("heaviest: " + ", ".join(f"{n} {s * 1000:.0f} ms" for n, s in heaviest))
    print(f"for comparison, twisted.internet.defer alone: {result['twisted_internet_defer_import']['median'] * 1000:.0f} ms")
    print(f"target median < 150 ms: {'met' if result['imports']['median'] < 0.150 else 'MISSED'}; written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
