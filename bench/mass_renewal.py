"""
Mass renewal: 500 due certificates across 100 accounts (5 websites each), renewed by the real
daemon (its workers run as the accounts' users, through the emulated cPanel) against Pebble with
PEBBLE_VA_NOSLEEP=1 and no bad nonces (certbot gives up a renewal on its first badNonce); then the same number of certificates renewed by `certbot renew` over as many
lineages (webroot, one name each, the same Pebble). Reported: certificates per second for both,
the ratio, the daemon's peak RSS and its workers' peak total. Run as root (the accounts are
throwaway Unix users, removed afterwards).

    python bench/mass_renewal.py [--accounts 100] [--per-account 5] [--certbot-lineages 500]
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

from bench.common import write_result  # noqa: E402
from bench.renewal_scan import build, get, proc_status  # noqa: E402
from bench.soak_daemon import metrics  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CERTBOT = os.path.join(HERE, ".certbot", "bin", "certbot")


def lecp_renewal(args, base: str, facts: dict, pebble, launcher: str, concurrency: int, directory: str) -> dict:
    """Start the daemon; time from its start until every due certificate is renewed (or failed)."""
    total = args.accounts * args.per_account
    with open(facts["config"], "w") as f:
        f.write(f'[acme]\ndirectory = "{directory}"\nca_bundle = "{pebble.ca_bundle}"\n'
                f'[certificates]\nkey_type = "rsa:2048"\n'
                f'[preflight]\nport = {pebble.http_port}\nresolve = "dns:127.0.0.1:{pebble.dns_port}"\n'
                f'[renewal]\ninterval = 86400\nfirst_pass_delay = 0\nconcurrency = {concurrency}\n'
                f'[mail]\nenabled = false\n[hostcert]\nenabled = false\n[health]\nport = {facts["port"]}\n'
                f'[paths]\nstate_dir = "{base}/state-{concurrency}"\ndaemon_socket = "{base}/run/lecp.sock"\n'
                f'whmapi1 = "{facts["root"]}/bin/whmapi1"\nuapi = "{facts["root"]}/bin/uapi"\n'
                f'apache_tls = "{facts["tls"]}"\nuserdatadomains = "{facts["root"]}/etc/userdatadomains.json"\n'
                f'passwd = "{base}/passwd"\nworker_python = "{launcher}"\n')
    os.chmod(facts["config"], 0o644)
    cpu_before = cpu_seconds(pebble.pids)
    started = time.perf_counter()
    daemon = subprocess.Popen([sys.executable, "-m", "twisted", "--log-format=text", "lecp", "--config", facts["config"]],
                              stdout=open(os.path.join(base, f"daemon-{concurrency}.log"), "wb"), stderr=subprocess.STDOUT,
                              cwd=base)
    peak_workers, stop = [0.0], threading.Event()

    def sample():
        while not stop.is_set():
            try:
                with open(f"/proc/{daemon.pid}/task/{daemon.pid}/children") as f:
                    pids = f.read().split()
                used = 0.0
                for pid in pids:
                    try:
                        used += proc_status(int(pid))["VmRSS"]
                    except (OSError, KeyError, ValueError):
                        pass
                peak_workers[0] = max(peak_workers[0], used)
            except OSError:
                pass
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    jobs, first_job = {}, None
    while time.perf_counter() - started < 3600:
        try:
            jobs = metrics(facts["port"])
        except OSError:
            jobs = {}
        done = sum(v for k, v in jobs.items() if k.startswith("renew:"))
        if done and first_job is None:
            first_job = time.perf_counter()
        if done >= total:
            break
        time.sleep(0.5)
    finished = time.perf_counter()
    stop.set()
    sampler.join()
    status, body = get(facts["port"], "/health", 10)
    scan_seconds = json.loads(body)["services"]["renewal"]["counts"].get("scan_seconds")
    peak = proc_status(daemon.pid)["VmHWM"]
    cpu = {k: round(v - cpu_before.get(k, 0.0), 1) for k, v in cpu_seconds(pebble.pids, daemon.pid).items()}
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(20)
    renewed = jobs.get("renew:issued", 0)
    elapsed = finished - started
    return {"concurrency": concurrency, "certificates": total, "renewed": renewed, "jobs": jobs,
            "seconds_from_start": round(elapsed, 2), "certificates_per_second": round(renewed / elapsed, 2),
            "scan_seconds": scan_seconds, "daemon_peak_rss_mb": round(peak, 1),
            "workers_peak_total_rss_mb": round(peak_workers[0], 1), "cpu_seconds": cpu,
            "cpu_seconds_per_certificate": round(sum(cpu.values()) / max(renewed, 1), 3)}


def profiling_launcher(launcher: str, folder: str) -> str:
    """A launcher beside C{launcher} that runs each worker under cProfile into C{folder}."""
    os.makedirs(folder, exist_ok=True)
    os.chmod(folder, 0o1777)
    path = launcher + "-profiled"
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\nexec {launcher} -m cProfile -o "{os.path.abspath(folder)}/$$.prof" "$@"\n')
    os.chmod(path, 0o755)
    return path


def cpu_seconds(pebble_pids: list[int], daemon_pid: int | None = None) -> dict:
    """
    CPU seconds used so far by Pebble (with its challenge server), by this process (the emulated
    cPanel: its web server and the service behind every `uapi` call), and, given the daemon, by
    the daemon itself and by its finished descendants (the scan child, the workers and their
    `uapi` processes).
    """
    import resource

    ticks = os.sysconf("SC_CLK_TCK")

    def stat(pid: int) -> list[str]:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()

    own = resource.getrusage(resource.RUSAGE_SELF)
    figures = {"pebble": sum(int(stat(p)[11]) + int(stat(p)[12]) for p in pebble_pids) / ticks,
               "emulated_cpanel": own.ru_utime + own.ru_stime}
    if daemon_pid is not None:
        fields = stat(daemon_pid)
        figures["daemon"] = (int(fields[11]) + int(fields[12])) / ticks
        figures["daemon_children"] = (int(fields[13]) + int(fields[14])) / ticks
    return figures


def certbot_lineages(base: str, pebble, facts: dict, count: int) -> tuple[str, list[str]]:
    """A certbot configuration with C{count} due lineages (one name each, webroot), and its account registered."""
    from lecp.keys import certificate_to_pem, generate_private_key, make_self_signed_certificate, private_key_to_pem
    import datetime

    folder = os.path.join(base, "certbot")
    env = {**os.environ, "REQUESTS_CA_BUNDLE": pebble.ca_bundle}
    dirs = ["--config-dir", f"{folder}/etc", "--work-dir", f"{folder}/work", "--logs-dir", f"{folder}/logs"]
    subprocess.run([CERTBOT, "register", "-n", "--agree-tos", "--register-unsafely-without-email", "--server",
                    pebble.directory_url, *dirs], check=True, capture_output=True, env=env)
    accounts = [d for root, dirs_, files in os.walk(f"{folder}/etc/accounts") for d in dirs_ if len(d) == 32]
    account = accounts[0]
    key = generate_private_key("rsa:2048")
    key_pem = private_key_to_pem(key).decode()
    now = datetime.datetime.now(datetime.timezone.utc)
    userdatadomains = json.load(open(os.path.join(facts["root"], "etc", "userdatadomains.json")))
    names = sorted(userdatadomains)[:count]
    for name in names:
        cert = certificate_to_pem(make_self_signed_certificate(key, [name], days=90, now=now - datetime.timedelta(days=85)))
        docroot = userdatadomains[name][4]
        account_record = json.load(open(os.path.join(facts["root"], "accounts", f"{userdatadomains[name][0]}.json")))
        for sub in account_record["sub_domains"]:
            if sub["domain"] == name:
                docroot = sub["documentroot"]
        if account_record["main_domain"]["domain"] == name:
            docroot = account_record["main_domain"]["documentroot"]
        archive, live = f"{folder}/etc/archive/{name}", f"{folder}/etc/live/{name}"
        os.makedirs(archive)
        os.makedirs(live)
        for part, pem in (("cert", cert), ("chain", cert), ("fullchain", cert), ("privkey", key_pem)):
            with open(f"{archive}/{part}1.pem", "w") as f:
                f.write(pem)
            os.symlink(f"../../archive/{name}/{part}1.pem", f"{live}/{part}.pem")
        os.makedirs(f"{folder}/etc/renewal", exist_ok=True)
        with open(f"{folder}/etc/renewal/{name}.conf", "w") as f:
            f.write(f"archive_dir = {archive}\ncert = {live}/cert.pem\nprivkey = {live}/privkey.pem\n"
                    f"chain = {live}/chain.pem\nfullchain = {live}/fullchain.pem\nversion = 5.8.0\n\n"
                    f"[renewalparams]\naccount = {account}\nauthenticator = webroot\nserver = {pebble.directory_url}\n"
                    f"key_type = rsa\nrsa_key_size = 2048\nwebroot_path = {docroot},\n[[webroot_map]]\n{name} = {docroot}\n")
    return folder, dirs


def certbot_renewal(base: str, pebble, facts: dict, count: int) -> dict:
    folder, dirs = certbot_lineages(base, pebble, facts, count)
    started = time.perf_counter()
    done = subprocess.run([CERTBOT, "renew", "-n", "--no-random-sleep-on-renew", *dirs], capture_output=True, text=True,
                          env={**os.environ, "REQUESTS_CA_BUNDLE": pebble.ca_bundle})
    elapsed = time.perf_counter() - started
    renewed = sum(1 for name in os.listdir(f"{folder}/etc/archive") if os.path.exists(f"{folder}/etc/archive/{name}/cert2.pem"))
    return {"lineages": count, "renewed": renewed, "seconds": round(elapsed, 2), "exit_status": done.returncode,
            "certificates_per_second": round(renewed / elapsed, 3), "output_tail": (done.stdout + done.stderr)[-1500:]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--per-account", type=int, default=5)
    parser.add_argument("--concurrency", default="4", help="daemon worker limits to measure, comma-separated")
    parser.add_argument("--ca-delay", type=float, default=0.0,
                        help="seconds a proxy holds every request to the CA, as a distant CA would (lecp only)")
    parser.add_argument("--profile-workers", metavar="DIR", default="",
                        help="run every worker under cProfile, writing DIR/PID.prof (to see where a renewal's time goes)")
    parser.add_argument("--certbot-lineages", type=int, default=500,
                        help="0 measures lecp alone and prints its figures without writing the results file")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("mass_renewal: run as root (the accounts are Unix users)", file=sys.stderr)
        return 1
    if args.certbot_lineages and not os.access(CERTBOT, os.X_OK):
        print(f"mass_renewal: {CERTBOT} is missing; run `make bench-deps`", file=sys.stderr)
        return 1
    from twisted.internet import reactor

    from lecp.testing.acmeproxy import Fault, start_proxy
    from lecp.testing.cpanel.adminbin import listen_adminbin
    from lecp.testing.cpanel.cli import write_scripts
    from lecp.testing.cpanel.server import Server
    from lecp.testing.cpanel.web import listen_web
    from lecp.testing.pebble import Pebble, PebbleSettings
    from lecp.testing.python import world_readable_python, write_launcher

    base = tempfile.mkdtemp(prefix="lecp-mass-")
    os.chmod(base, 0o755)
    created, result = [], {}
    try:
        pebble = Pebble(os.path.join(base, "pebble"), PebbleSettings(nosleep=True, nonce_reject=0)).start()
        python, paths = world_readable_python(os.path.join(base, "python"))
        launcher = write_launcher(os.path.join(base, "python"), python, paths)
        if args.profile_workers:
            launcher = profiling_launcher(launcher, args.profile_workers)
        runs, proxies = [], []
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            # A fresh server for each run: every certificate due again.
            run_base = os.path.join(base, f"c{concurrency}")
            os.makedirs(run_base)
            os.chmod(run_base, 0o755)
            facts = build(run_base, args.accounts, args.per_account, due=args.accounts)
            write_scripts(facts["root"], python, paths)
            for folder in (facts["root"], os.path.join(facts["root"], "bin"), os.path.join(facts["root"], "home")):
                os.chmod(folder, 0o755)
            for i in range(args.accounts):
                user = f"u{i:05d}"
                if user not in created:
                    subprocess.run(["useradd", "-M", "-N", "-g", "100", "-u", str(200000 + i), "-d",
                                    os.path.join(facts["root"], "home", user), "-s", "/usr/sbin/nologin", user], check=True, capture_output=True)
                    created.append(user)
                else:
                    subprocess.run(["usermod", "-d", os.path.join(facts["root"], "home", user), user], check=True)
            server = Server(facts["root"])
            ready = threading.Event()
            ports = []

            def listen():
                if args.ca_delay and not proxies:
                    proxies.append(start_proxy(reactor, pebble))
                    proxies[0].controls.inject(Fault("delay", "", count=10 ** 9, seconds=args.ca_delay))
                ports.extend([listen_web(reactor, pebble.http_port, server), listen_adminbin(reactor, server)])
                ready.set()

            if not reactor.running:
                reactor.callWhenRunning(listen)
                threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True).start()
            else:
                reactor.callFromThread(listen)
            ready.wait(30)
            print(f"lecp: {args.accounts * args.per_account} due certificates, concurrency {concurrency}...", flush=True)
            directory = proxies[0].directory_url if proxies else pebble.directory_url
            runs.append(lecp_renewal(args, run_base, facts, pebble, launcher, concurrency, directory))
            print(f"  {runs[-1]['renewed']} renewed in {runs[-1]['seconds_from_start']} s: "
                  f"{runs[-1]['certificates_per_second']} certificates/s", flush=True)
            done = threading.Event()
            reactor.callFromThread(lambda: __import__("twisted.internet.defer", fromlist=["x"]).gatherResults(
                [p.stopListening() for p in ports]).addBoth(lambda _: done.set()))
            done.wait(30)
            last_facts = facts
        if not args.certbot_lineages:
            for run in runs:
                print(json.dumps(run, indent=1))
            pebble.stop()
            reactor.callFromThread(reactor.stop)
            return 0
        server = Server(last_facts["root"])
        ready = threading.Event()
        reactor.callFromThread(lambda: (ports.append(listen_web(reactor, pebble.http_port, server)), ready.set()))
        ready.wait(30)
        print(f"certbot renew over {args.certbot_lineages} lineages...", flush=True)
        certbot = certbot_renewal(base, pebble, last_facts, args.certbot_lineages)
        print(f"  {certbot['renewed']} renewed in {certbot['seconds']} s: {certbot['certificates_per_second']} certificates/s")
        best = max(runs, key=lambda r: r["certificates_per_second"])
        result = {"benchmark": "mass_renewal", "accounts": args.accounts, "per_account": args.per_account,
                  "pebble": "PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0", "ca_delay": args.ca_delay, "lecp": runs, "certbot": certbot,
                  "ratio_lecp_to_certbot": round(best["certificates_per_second"] / max(certbot["certificates_per_second"], 1e-9), 1),
                  "targets": {"certificates_per_second": 5, "ratio_lecp_to_certbot": 10}}
        pebble.stop()
        reactor.callFromThread(reactor.stop)
    finally:
        for user in created:
            subprocess.run(["userdel", user], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    path = write_result("mass_renewal", result)
    for run in result["lecp"]:
        print(f"lecp (concurrency {run['concurrency']}): {run['certificates_per_second']} certificates/s, daemon peak "
              f"{run['daemon_peak_rss_mb']} MB, workers peak total {run['workers_peak_total_rss_mb']} MB")
    print(f"certbot renew: {result['certbot']['certificates_per_second']} certificates/s; "
          f"lecp/certbot {result['ratio_lecp_to_certbot']}x; written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
