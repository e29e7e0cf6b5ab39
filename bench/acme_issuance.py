"""
In-process cost of one ACME issuance with lecp.acme against Pebble (PEBBLE_VA_NOSLEEP=1, a reused
account): a 2-name RSA-2048 certificate, key generation included. Target: median under 0.4 s.

    python bench/acme_issuance.py [--runs 15] [--key-type rsa:2048]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import summary, write_result  # noqa: E402


async def measure(reactor, args, pebble, webroot):
    from lecp.acme.client import ACMEClient, IssuedCertificate
    from lecp.acme.http import make_http_client, make_http_pool
    from lecp.acme.webroot import WebrootResponder
    from lecp.keys import generate_private_key, make_csr
    from lecp.testing.webserver import listen_webroot

    port = listen_webroot(reactor, pebble.http_port, webroot)
    pool = make_http_pool(reactor)
    client = ACMEClient.create(
        make_http_client(reactor, pebble.ca_bundle, pool), reactor, pebble.directory_url,
        generate_private_key("ecdsa:p-256"),
    )
    responder = WebrootResponder(lambda name: webroot)
    runs = []
    try:
        for i in range(args.runs + 1):  # the first run registers the account: the warm-up
            base = f"b{uuid.uuid4().hex[:10]}.example.com"
            names = [base, f"www.{base}"]
            before_requests = client.requests_sent
            t0 = time.perf_counter()
            key = generate_private_key(args.key_type)
            t_key = time.perf_counter()
            result = await client.issue(names, make_csr(key, names), responder, reactor.seconds() + 60)
            t1 = time.perf_counter()
            assert isinstance(result, IssuedCertificate), result
            if i:
                runs.append({"total": t1 - t0, "keygen": t_key - t0, "acme": t1 - t_key,
                             "requests": client.requests_sent - before_requests})
    finally:
        await port.stopListening()
        await pool.closeCachedConnections()
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--key-type", default="rsa:2048")
    args = parser.parse_args()
    from twisted.internet import defer, task

    from lecp.testing.pebble import Pebble, PebbleSettings

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        webroot = os.path.join(tmp, "webroot")
        os.makedirs(webroot)
        with Pebble(os.path.join(tmp, "pebble"), PebbleSettings(nosleep=True)) as pebble:
            def run(reactor):
                d = defer.Deferred.fromCoroutine(measure(reactor, args, pebble, webroot))
                return d.addCallback(lambda runs: out.update(runs=runs))

            try:
                task.react(run)
            except SystemExit as e:
                if e.code:
                    raise
    runs = out["runs"]
    result = {
        "benchmark": "acme_issuance",
        "description": "in-process 2-name issuance, PEBBLE_VA_NOSLEEP=1, reused account, key generation included",
        "key_type": args.key_type,
        "target_median_s": 0.4,
        "runs": runs,
        "total": summary([r["total"] for r in runs]),
        "keygen": summary([r["keygen"] for r in runs]),
        "acme": summary([r["acme"] for r in runs]),
        "requests_per_issuance": sorted(r["requests"] for r in runs)[len(runs) // 2],
    }
    path = write_result("acme_issuance", result)
    print(f"{'':10} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}")
    for part in ("total", "keygen", "acme"):
        s = result[part]
        print(f"{part:10} {s['median']:8.3f} {s['p90']:8.3f} {s['min']:8.3f} {s['max']:8.3f}")
    print(f"HTTP requests per issuance (median): {result['requests_per_issuance']}; target median < 0.4 s: "
          f"{'met' if result['total']['median'] < 0.4 else 'MISSED'}; written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
