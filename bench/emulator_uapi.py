"""
Wall time of one call through the emulated cPanel's C{uapi} command (process start to exit),
for the calls lecp makes most. Target: under 150 ms each (median).

    python bench/emulator_uapi.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import summary, write_result  # noqa: E402

CALLS = [
    ("DomainInfo", "domains_data", ["format=hash"]),
    ("SSL", "installed_hosts", []),
    ("SSL", "list_certs", []),
    ("Variables", "get_user_information", ["name=contact_email"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    from lecp.testing.cpanel.build import create_server

    with tempfile.TemporaryDirectory() as tmp:
        server = create_server(os.path.join(tmp, "cpanel"), {"accounts": [
            {"user": "alice", "domain": "alice.test", "addon": ["shop.test"], "sub": ["blog.alice.test"],
             "parked": ["alias.test"], "self_signed": ["alice.test", "shop.test"]}]})
        uapi = server.path("bin", "uapi")
        results = {}
        for module, function, words in CALLS:
            command = [uapi, "--output=json", "--user=alice", module, function, *words]
            subprocess.run(command, check=True, capture_output=True)  # warm the page cache
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True)
                times.append(time.perf_counter() - t0)
            results[f"{module}::{function}"] = {"runs": times, **summary(times)}
    path = write_result("emulator_uapi", {"benchmark": "emulator_uapi", "target_median_s": 0.150, "calls": results})
    print(f"{'call':38} {'median':>8} {'p90':>8} {'max':>8}")
    for name, r in results.items():
        print(f"{name:38} {r['median']:8.3f} {r['p90']:8.3f} {r['max']:8.3f}")
    worst = max(r["median"] for r in results.values())
    print(f"target median < 0.150 s: {'met' if worst < 0.150 else 'MISSED'}; written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
