"""
The daemon's renewal scan at scale: an emulated server with 10,000 accounts and 5 certificates
each (50,000, none due, every one installed), the real daemon as a process (python -m twisted
lecp), and from this process: start-up time to /alive, /alive latency every 25 ms during the
first pass, the scan's and the pass's wall time (the scan runs in a child process of the daemon:
its peak RSS is sampled too), the daemon's CPU time, peak and idle RSS.
Targets: scan <= 10 s, <= 200 MB RSS, /alive p99 <= 100 ms; idle <= 80 MB, start to /alive <= 2 s.

    python bench/renewal_scan.py [--accounts 10000] [--per-account 5]   (as root)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import summary, write_result  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(base: str, accounts: int, per_account: int, due: int = 0) -> dict:
    """
    The emulated server's files, written directly (create_server would fsync 60,000 times). The
    first C{due} accounts' certificates are due for renewal, with a document root their uid owns.
    """
    from lecp.keys import certificate_to_pem, generate_private_key, make_self_signed_certificate, private_key_to_pem
    from lecp.store import CertRecord, Document
    from lecp.testing.cpanel.cli import write_scripts

    key = generate_private_key("rsa:2048")
    cert = certificate_to_pem(make_self_signed_certificate(key, ["example.test", "www.example.test"], days=90))
    key_pem = private_key_to_pem(key).decode()
    now = int(time.time())
    root = os.path.join(base, "cpanel")
    tls = os.path.join(root, "var", "cpanel", "ssl", "apache_tls")
    for folder in ("accounts", "home", "etc", "bin"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    with open(os.path.join(root, "server.json"), "w") as f:
        json.dump({"hostname": "server.lecp.test", "ip": "127.0.0.1"}, f)
    write_scripts(root)
    passwd, userdatadomains = [], {}
    for i in range(accounts):
        user, uid = f"u{i:05d}", 200000 + i
        home = os.path.join(root, "home", user)
        main = f"{user}.test"
        subs = [f"s{j}.{main}" for j in range(per_account - 1)]
        record = {
            "user": user, "password": "x", "uid": uid, "gid": uid, "home": home, "contact_email": f"{user}@mail.test",
            "contact_email_2": "", "owner": "root", "plan": "default", "theme": "jupiter", "ip": "127.0.0.1",
            "suspended": False, "startdate": now, "features": {}, "quota": {"megabytes_used": 1, "megabyte_limit": None},
            "main_domain": {"domain": main, "documentroot": os.path.join(home, "public_html")},
            "addon_domains": [], "parked_domains": [],
            "sub_domains": [{"domain": s, "documentroot": os.path.join(home, "public_html", s)} for s in subs],
        }
        with open(os.path.join(root, "accounts", f"{user}.json"), "w") as f:
            json.dump(record, f)
        document = Document()
        life = (now + 2 * 86400, now - 88 * 86400) if i < due else (now + 60 * 86400, now - 30 * 86400)
        for vhost in [main] + subs:
            document.put_certificate(CertRecord(vhost, key_pem, cert, order_url="https://acme/order", cert_id=f"id-{vhost}",
                                                key_id="k", expiry=life[0], not_before=life[1],
                                                key_type="rsa:2048", issuer="R11", vhost_domains=(vhost,)))
            userdatadomains[vhost] = [user, "root", "main" if vhost == main else "sub", vhost, home, "127.0.0.1:80",
                                      "", "", "0", "ea-php82"]
            os.makedirs(os.path.join(tls, vhost), exist_ok=True)
            with open(os.path.join(tls, vhost, "certificates"), "w") as f:
                f.write(cert)
        nvdata = os.path.join(home, ".cpanel", "nvdata")
        os.makedirs(nvdata)
        with open(os.path.join(nvdata, "letsencrypt-cpanel"), "wb") as f:
            f.write(document.serialise())
        owned = [home, os.path.dirname(nvdata), nvdata, os.path.join(nvdata, "letsencrypt-cpanel")]
        if i < due:
            owned += [os.path.join(home, "public_html")] + [os.path.join(home, "public_html", s) for s in subs]
            for folder in owned[4:]:
                os.makedirs(folder, exist_ok=True)
        for path in owned:
            os.chown(path, uid, uid)
        passwd.append(f"{user}:x:{uid}:{uid}::{home}:/bin/bash\n")
    with open(os.path.join(root, "etc", "userdatadomains.json"), "w") as f:
        json.dump(userdatadomains, f)
    with open(os.path.join(base, "passwd"), "w") as f:
        f.writelines(passwd)
    port = free_port()
    config = os.path.join(base, "lecp.toml")
    with open(config, "w") as f:
        f.write(f'[renewal]\ninterval = 86400\nfirst_pass_delay = 0\n[mail]\nenabled = false\n[hostcert]\nenabled = false\n'
                f'[health]\nport = {port}\n[paths]\nstate_dir = "{base}/state"\ndaemon_socket = "{base}/run/lecp.sock"\n'
                f'whmapi1 = "{root}/bin/whmapi1"\nuapi = "{root}/bin/uapi"\napache_tls = "{tls}"\n'
                f'userdatadomains = "{root}/etc/userdatadomains.json"\npasswd = "{base}/passwd"\n')
    return {"config": config, "port": port, "bytes_per_store": len(document.serialise()), "root": root, "tls": tls}


def get(port: int, path: str, timeout: float = 5.0):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def proc_status(pid: int) -> dict:
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(value.split()[0]) / 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    values["cpu_seconds"] = (int(fields[11]) + int(fields[12])) / ticks
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--per-account", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("renewal_scan: run as root (it gives each emulated account its own uid)", file=sys.stderr)
        return 1
    base = tempfile.mkdtemp(prefix="lecp-scan-")
    try:
        t0 = time.perf_counter()
        facts = build(base, args.accounts, args.per_account)
        built = time.perf_counter() - t0
        print(f"built {args.accounts} accounts x {args.per_account} certificates in {built:.1f} s", flush=True)
        started = time.perf_counter()
        daemon = subprocess.Popen([sys.executable, "-m", "twisted", "lecp", "--config", facts["config"]],
                                  stdout=open(os.path.join(base, "daemon.log"), "wb"), stderr=subprocess.STDOUT, cwd=base)
        latencies, stop, child_peak = [], threading.Event(), [0.0]
        alive_at = None
        while time.perf_counter() - started < 30:
            try:
                if get(facts["port"], "/alive", 1)[0] == 200:
                    alive_at = time.perf_counter() - started
                    break
            except OSError:
                time.sleep(0.01)
        if alive_at is None:
            raise RuntimeError("the daemon never answered /alive; see " + os.path.join(base, "daemon.log"))

        def children_rss():
            try:
                with open(f"/proc/{daemon.pid}/task/{daemon.pid}/children") as f:
                    pids = f.read().split()
            except OSError:
                return
            for pid in pids:
                try:
                    child_peak[0] = max(child_peak[0], proc_status(int(pid))["VmHWM"])
                except (OSError, ValueError, KeyError):
                    pass

        def probe():
            while not stop.is_set():
                children_rss()
                t = time.perf_counter()
                try:
                    get(facts["port"], "/alive", 5)
                    latencies.append(time.perf_counter() - t)
                except OSError:
                    latencies.append(5.0)
                time.sleep(0.025)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        renewal = None
        while time.perf_counter() - started < 600:
            status, body = get(facts["port"], "/health", 10)
            renewal = json.loads(body)["services"]["renewal"]
            if renewal["runs"] >= 1 and renewal["state"] != "running":
                break
            time.sleep(0.2)
        stop.set()
        prober.join()
        peak = proc_status(daemon.pid)
        time.sleep(2)
        idle = proc_status(daemon.pid)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * (len(ordered) - 1)))]
    result = {
        "benchmark": "renewal_scan", "accounts": args.accounts, "certificates": args.accounts * args.per_account,
        "store_bytes_each": facts["bytes_per_store"], "counts": renewal["counts"],
        "scan_seconds": renewal["counts"].get("scan_seconds"), "pass_seconds": renewal["last_duration"],
        "daemon_cpu_seconds": peak["cpu_seconds"], "peak_rss_mb": round(peak["VmHWM"], 1),
        "scan_child_peak_rss_mb": round(child_peak[0], 1),
        "idle_rss_mb": round(idle["VmRSS"], 1), "start_to_alive_s": round(alive_at, 3),
        "alive_latency": {**summary(latencies), "p99": round(p99, 4)},
        "targets": {"scan_seconds": 10, "peak_rss_mb": 200, "alive_p99_s": 0.1, "idle_rss_mb": 80, "start_to_alive_s": 2},
    }
    path = write_result("renewal_scan", result)
    print(f"scan {result['scan_seconds']} s (whole pass {result['pass_seconds']:.2f} s, listaccts included), "
          f"daemon CPU {result['daemon_cpu_seconds']:.1f} s, peak RSS {result['peak_rss_mb']} MB (scan child "
          f"{result['scan_child_peak_rss_mb']} MB), idle RSS {result['idle_rss_mb']} MB")
    print(f"/alive during the pass: {len(latencies)} probes, median {result['alive_latency']['median'] * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms, max {result['alive_latency']['max'] * 1000:.1f} ms; start to /alive {alive_at:.2f} s")
    print(f"counts: {renewal['counts']}; written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
