"""
Page views as cPanel serves them: each a fresh CGI process (cgi/lecp.live.cgi) with a LiveAPI
socket, for an account with 100 websites (half of them secured): the home page and the JSON
list-certificates call, 15 runs each after a warm-up. Target: home page median <= 300 ms.

    python bench/page_views.py [--runs 15] [--vhosts 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import summary, write_result  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--vhosts", type=int, default=100)
    args = parser.parse_args()
    from twisted.internet import reactor

    from lecp.keys import certificate_to_pem, generate_private_key, make_self_signed_certificate, private_key_to_pem
    from lecp.store import CertRecord, Store
    from lecp.testing.cpanel.build import create_server
    from lecp.testing.cpanel.liveapi import listen_liveapi

    base = tempfile.mkdtemp(prefix="lecp-pages-")
    subs = [f"site{i:03d}.alice.test" for i in range(args.vhosts - 1)]
    server = create_server(os.path.join(base, "cpanel"), {"self_signed_key_type": "ecdsa:p-256", "accounts": [
        {"user": "alice", "domain": "alice.test", "sub": subs}]})
    home = server.account("alice")["home"]
    key = generate_private_key("ecdsa:p-256")
    now = int(time.time())
    with Store(home).update() as document:
        for name in (["alice.test"] + subs)[::2]:
            cert = certificate_to_pem(make_self_signed_certificate(key, [name, f"www.{name}"], days=90))
            document.put_certificate(CertRecord(name, private_key_to_pem(key).decode(), cert, expiry=now + 60 * 86400,
                                                not_before=now - 30 * 86400, issuer="R11", cert_id=f"id-{name}"))
    socket_path = os.path.join(base, "live.sock")
    listen_liveapi(reactor, socket_path, server, "alice")
    thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True)
    thread.start()
    config = os.path.join(base, "lecp.toml")
    with open(config, "w") as f:
        f.write("[acme]\nstaging = false\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "REMOTE_USER": "alice", "cp_security_token": "/cpsess0123456789",
           "CPANEL_CONNECT_SOCKET": socket_path, "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/cpsess0123456789/frontend/jupiter/lecp/lecp.live.cgi",
           "LECP_CONFIG": config, "LANG": "C.UTF-8"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    cgi = [sys.executable, os.path.join(ROOT, "cgi", "lecp.live.cgi")]
    views = {"home page": {"QUERY_STRING": "", "HTTP_ACCEPT": "text/html"},
             "list-certificates (JSON)": {"QUERY_STRING": "api_version=1&api_function=list-certificates",
                                          "HTTP_ACCEPT": "application/json"}}
    results = {}
    try:
        for name, extra in views.items():
            times, size = [], 0
            for run in range(args.runs + 1):
                t0 = time.perf_counter()
                done = subprocess.run(cgi, env={**env, **extra}, capture_output=True, stdin=subprocess.DEVNULL)
                elapsed = time.perf_counter() - t0
                if done.returncode != 0 or b"Status: 200" not in done.stdout[:40]:
                    raise RuntimeError(f"{name}: {done.stdout[:300]!r} {done.stderr[-1000:]!r}")
                size = len(done.stdout)
                if run:
                    times.append(elapsed)
            results[name] = {"runs": times, "bytes": size, **summary(times)}
        imports = subprocess.run([sys.executable, "-X", "importtime", cgi[1]], env={**env, **views["home page"]},
                                 capture_output=True, text=True).stderr.splitlines()
    finally:
        reactor.callFromThread(reactor.stop)
        thread.join(5)
    heaviest = sorted(((int(line.split("|")[1]), line.split("|")[2].strip()) for line in imports
                       if line.startswith("import time:") and line.split("|")[1].strip().isdigit()
                       and len(line.split("|")[2]) - len(line.split("|")[2].lstrip()) == 1), reverse=True)[:8]
    result = {"benchmark": "page_views", "vhosts": args.vhosts, "target_home_median_s": 0.300, "views": results,
              "import_breakdown_us": heaviest}
    path = write_result("page_views", result)
    print(f"{'view':28} {'median':>8} {'p95':>8} {'max':>8}  bytes")
    for name, r in results.items():
        print(f"{name:28} {r['median']:8.3f} {r['p95']:8.3f} {r['max']:8.3f}  {r['bytes']}")
    print("heaviest imports: " + ", ".join(f"{n} {us / 1000:.0f} ms" for us, n in heaviest))
    met = results["home page"]["median"] <= 0.300
    print(f"target home page median <= 300 ms: {'met' if met else 'MISSED'}; written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
