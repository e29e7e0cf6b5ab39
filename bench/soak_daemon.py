"""
The daemon under load for a long time: an emulated server with 10,000 accounts (the renewal
scan's), some of whose certificates keep falling due (Pebble issues short-lived ones) and are
renewed through a CA that answers slowly (a proxy delays every request), a renewal pass every
minute over all of them, and from this process: /alive every 50 ms, the daemon's RSS every 2 s
(and its children's peak), the jobs run and how they ended. Run as root.

    python bench/soak_daemon.py [--accounts 10000] [--due 40] [--seconds 600] [--ca-delay 0.5]

Memory is "flat" when the RSS over the last third of the run is no higher than over the middle
third plus a few MB; the figures are written to bench/results/soak_daemon.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import summary, write_result  # noqa: E402
from bench.renewal_scan import build, get, proc_status  # noqa: E402


def metrics(port: int) -> dict:
    """Jobs run by (job, outcome), from the daemon's /metrics."""
    status, body = get(port, "/metrics", 10)
    jobs = {}
    for line in body.decode().splitlines():
        if line.startswith("lecp_jobs_total{"):
            labels, value = line[len("lecp_jobs_total{"):].split("} ")
            parts = dict(item.split("=") for item in labels.split(","))
            jobs[f"{parts['job'].strip(chr(34))}:{parts['outcome'].strip(chr(34))}"] = int(float(value))
    return jobs


def run(args) -> dict:
    from twisted.internet import reactor

    from lecp.testing.acmeproxy import Fault, start_proxy
    from lecp.testing.cpanel.adminbin import listen_adminbin
    from lecp.testing.cpanel.cli import write_scripts
    from lecp.testing.cpanel.server import Server
    from lecp.testing.cpanel.web import listen_web
    from lecp.testing.pebble import Pebble, PebbleSettings
    from lecp.testing.python import world_readable_python, write_launcher

    base = tempfile.mkdtemp(prefix="lecp-soak-")
    os.chmod(base, 0o755)
    result: dict = {}
    created: list[str] = []
    try:
        t0 = time.perf_counter()
        facts = build(base, args.accounts, 1, due=args.due)
        # Workers are started as the accounts' users (Twisted's spawnProcess calls initgroups, which
        # needs a passwd entry): the accounts whose certificates fall due become real, throwaway users.
        for i in range(args.due):
            user = f"u{i:05d}"
            subprocess.run(["useradd", "-M", "-N", "-g", "100", "-u", str(200000 + i), "-d",
                            os.path.join(facts["root"], "home", user), "-s", "/usr/sbin/nologin", user], check=True)
            created.append(user)
        python, paths = world_readable_python(os.path.join(base, "python"))
        launcher = write_launcher(os.path.join(base, "python"), python, paths)
        write_scripts(facts["root"], python, paths)
        for folder in (facts["root"], os.path.join(facts["root"], "bin"), os.path.join(facts["root"], "home")):
            os.chmod(folder, 0o755)
        print(f"built {args.accounts} accounts ({args.due} due) in {time.perf_counter() - t0:.1f} s", flush=True)
        pebble = Pebble(os.path.join(base, "pebble"), PebbleSettings(nosleep=True, certificate_validity=args.validity)).start()
        server = Server(facts["root"])
        done = threading.Event()
        listening = []

        def start_services():
            proxy = start_proxy(reactor, pebble)
            proxy.controls.inject(Fault("delay", "", count=10 ** 9, seconds=args.ca_delay))
            listening.extend([proxy, listen_web(reactor, pebble.http_port, server), listen_adminbin(reactor, server)])
            with open(facts["config"], "w") as f:
                f.write(f'[acme]\ndirectory = "{proxy.directory_url}"\nca_bundle = "{pebble.ca_bundle}"\n'
                        f'[certificates]\nkey_type = "rsa:2048"\n'
                        f'[preflight]\nport = {pebble.http_port}\nresolve = "dns:127.0.0.1:{pebble.dns_port}"\n'
                        f'[renewal]\ninterval = {args.interval}\nfirst_pass_delay = 0\nconcurrency = 4\n'
                        f'[mail]\nenabled = false\n[hostcert]\nenabled = false\n[health]\nport = {facts["port"]}\n'
                        f'[paths]\nstate_dir = "{base}/state"\ndaemon_socket = "{base}/run/lecp.sock"\n'
                        f'whmapi1 = "{facts["root"]}/bin/whmapi1"\nuapi = "{facts["root"]}/bin/uapi"\n'
                        f'apache_tls = "{facts["tls"]}"\nuserdatadomains = "{facts["root"]}/etc/userdatadomains.json"\n'
                        f'passwd = "{base}/passwd"\nworker_python = "{launcher}"\n')
            os.chmod(facts["config"], 0o644)
            done.set()

        reactor.callWhenRunning(start_services)
        services = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True)
        services.start()
        done.wait(30)
        result = soak(args, facts, base)
        reactor.callFromThread(reactor.stop)
        services.join(10)
        pebble.stop()
    finally:
        for user in created:
            subprocess.run(["userdel", user], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    return result


def soak(args, facts: dict, base: str) -> dict:
    started = time.perf_counter()
    daemon = subprocess.Popen([sys.executable, "-m", "twisted", "--log-format=text", "lecp", "--config", facts["config"]],
                              stdout=open(os.path.join(base, "daemon.log"), "wb"), stderr=subprocess.STDOUT, cwd=base)
    latencies, failures, rss, children = [], [0], [], [0.0]
    stop = threading.Event()
    while time.perf_counter() - started < 30:
        try:
            if get(facts["port"], "/alive", 1)[0] == 200:
                break
        except OSError:
            time.sleep(0.05)

    def probe():
        while not stop.is_set():
            t = time.perf_counter()
            try:
                if get(facts["port"], "/alive", 5)[0] != 200:
                    failures[0] += 1
                latencies.append(time.perf_counter() - t)
            except OSError:
                failures[0] += 1
            time.sleep(0.05)

    def sample():
        while not stop.is_set():
            try:
                rss.append((time.perf_counter() - started, proc_status(daemon.pid)["VmRSS"]))
                with open(f"/proc/{daemon.pid}/task/{daemon.pid}/children") as f:
                    for pid in f.read().split():
                        try:
                            children[0] = max(children[0], proc_status(int(pid))["VmHWM"])
                        except (OSError, KeyError, ValueError):
                            pass
            except OSError:
                pass
            stop.wait(2)

    threads = [threading.Thread(target=probe, daemon=True), threading.Thread(target=sample, daemon=True)]
    for thread in threads:
        thread.start()
    stop.wait(args.seconds)
    stop.set()
    for thread in threads:
        thread.join()
    jobs = metrics(facts["port"])
    status, body = get(facts["port"], "/health", 10)
    health = json.loads(body)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(15)
    with open(os.path.join(base, "daemon.log"), "rb") as f:
        log_tail = f.read()[-3000:].decode("utf-8", "replace")
    third = [v for t, v in rss if t >= args.seconds * 2 / 3]
    middle = [v for t, v in rss if args.seconds / 3 <= t < args.seconds * 2 / 3]
    ordered = sorted(latencies)
    pick = (lambda q: ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))]) if ordered else (lambda q: None)
    return {
        "accounts": args.accounts, "due_accounts": args.due, "seconds": args.seconds, "ca_delay": args.ca_delay,
        "certificate_validity": args.validity, "renewal_interval": args.interval,
        "alive": {"probes": len(latencies), "failed": failures[0], "p50": pick(0.5), "p99": pick(0.99),
                  "max": ordered[-1] if ordered else None, **({"summary": summary(latencies)} if latencies else {})},
        "rss_mb": {"first": rss[0][1] if rss else None, "middle_max": max(middle) if middle else None,
                   "last_third_max": max(third) if third else None, "peak": max(v for _, v in rss) if rss else None,
                   "samples": [(round(t, 1), round(v, 1)) for t, v in rss]},
        "children_peak_rss_mb": round(children[0], 1),
        "jobs": jobs, "renewal": health["services"]["renewal"], "log_tail": log_tail,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--due", type=int, default=40, help="accounts whose certificate keeps falling due")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--ca-delay", type=float, default=0.5, help="seconds the proxy holds every CA request")
    parser.add_argument("--validity", type=int, default=180, help="lifetime of Pebble's certificates, seconds")
    parser.add_argument("--interval", type=float, default=60, help="seconds between renewal passes")
    parser.add_argument("--output", help="write the result here instead of bench/results/soak_daemon.json")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("soak_daemon: run as root (accounts have their own uids)", file=sys.stderr)
        return 1
    result = run(args)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=1)
    else:
        print("wrote", write_result("soak_daemon", {"benchmark": "soak_daemon", **result}))
    alive, memory = result["alive"], result["rss_mb"]
    print(f"{args.seconds:g} s, {args.accounts} accounts, CA delay {args.ca_delay:g} s per request")
    print(f"/alive: {alive['probes']} probes, {alive['failed']} failed, p50 {alive['p50'] or 0:.4f} s, "
          f"p99 {alive['p99'] or 0:.4f} s, max {alive['max'] or 0:.4f} s")
    print(f"daemon RSS: first {memory['first']} MB, middle third max {memory['middle_max']} MB, "
          f"last third max {memory['last_third_max']} MB; scan child peak {result['children_peak_rss_mb']} MB")
    print(f"jobs: {result['jobs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
