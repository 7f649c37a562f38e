"""The cluster DNS server: queries per second and lookup latency (`nox -s bench -- dns`).

Throw-away network namespaces on this machine (root): the server
(`python3 -m generator.node.dns`, logging every query to a file as in a lab)
in one, a client joined to it by a veth pair, with a pod's resolv.conf
(`nameserver`, the search path, `ndots:5`), and a third whose /etc/hosts holds
the same names. `ip netns exec` binds /etc/netns/<ns>/{resolv.conf,hosts}
over /etc, as kgen's pods get theirs.

- Throughput: one client process keeps WINDOW UDP queries in flight for
  SECONDS and counts the replies; the server's own CPU time (from /proc) gives
  queries per CPU-second too, which a busy 2-core machine disturbs less.
- Latency: glibc's getaddrinfo (AF_INET) in a process inside the namespace,
  for a short name, a `svc.ns` name and a full name (ndots:5 sends that one
  through the whole search list first: 4 queries), against the same names
  answered from /etc/hosts, alternating in rounds; median and p99. Then the
  same lookups as `getent ahostsv4` processes (what a shell user times).
Nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from generator.node.dns.resolvconf import resolv_conf

ROOT = Path(__file__).resolve().parent.parent
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
SERVER, CLIENT, HOSTS_NS = "10.250.153.1", "10.250.153.2", "10.250.153.3"  # private, in the namespaces only
NAMES = ["web", "web.default", "web.default.svc.cluster.local"]
WEB_IP = "10.96.0.20"
ROUNDS, PER_ROUND, GETENT_RUNS = 5, 100, 20
SECONDS, WINDOW, CLIENTS = 3.0, 32, 2

LOOKUPS = """
import json, socket, sys, time
name, n = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(n):
    t = time.perf_counter()
    addr = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    times.append(time.perf_counter() - t)
assert addr == sys.argv[3], addr
print(json.dumps(times))
"""

LOAD = """
import json, select, socket, sys, time
from generator.node.dns.message import Message, Question, encode, A, SRV, PTR
kinds = {"A": [("web.default.svc.cluster.local", A)],
         "mix": [("web.default.svc.cluster.local", A), ("_http._tcp.web.default.svc.cluster.local", SRV),
                 ("20.0.96.10.in-addr.arpa", PTR), ("nope.default.svc.cluster.local", A),
                 ("example.com", A)]}[sys.argv[2]]
queries = [encode(Message(id=i, rd=True, questions=[Question(*kinds[i % len(kinds)])])) for i in range(65536)]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.connect((sys.argv[1], 53))
sock.setblocking(False)
seconds, window, sent, got, lost = float(sys.argv[3]), int(sys.argv[4]), 0, 0, 0
start = time.perf_counter()
for _ in range(window):
    sock.send(queries[sent % 65536]); sent += 1
while time.perf_counter() - start < seconds:
    if not select.select([sock], [], [], 0.2)[0]:
        lost += sent - got - lost  # nothing for 0.2 s: count what is out as lost, refill
        for _ in range(window):
            sock.send(queries[sent % 65536]); sent += 1
        continue
    while True:
        try:
            sock.recv(4096)
        except BlockingIOError:
            break
        got += 1
        sock.send(queries[sent % 65536]); sent += 1
print(json.dumps({"replies": got, "seconds": time.perf_counter() - start, "lost": lost}))
"""


def run(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, env=ENV, **kw)


def zone_doc() -> dict[str, Any]:
    """The demo's web service with 50 more beside it, so lookups are not in a toy zone."""
    http = [{"name": "http", "protocol": "TCP", "port": 80}]
    services = [{"name": "web", "namespace": "default", "clusterIP": WEB_IP, "ports": http,
                 "endpoints": [{"ip": "10.244.1.2", "pod": "pod-2"}, {"ip": "10.244.2.2", "pod": "pod-3"}]}]
    services += [{"name": f"svc-{i}", "namespace": "default", "clusterIP": f"10.96.1.{i}", "ports": http,
                  "endpoints": [{"ip": f"10.244.3.{i}", "pod": f"p-{i}"}]} for i in range(1, 51)]
    return {"domain": "cluster.local", "namespaces": ["default", "kube-system"], "services": services,
            "pods": [], "reverseCIDRs": ["10.96.0.0/16", "10.244.0.0/16"], "nameserver": "10.96.0.10"}


@contextmanager
def namespaces(tag: str) -> Iterator[tuple[str, str, str]]:
    server, client, hosts = f"{tag}s", f"{tag}c", f"{tag}h"
    steps = [["ip", "netns", "add", ns] for ns in (server, client, hosts)]
    steps += [["ip", "link", "add", f"{tag}x", "type", "veth", "peer", "name", f"{tag}y"],
              ["ip", "link", "set", f"{tag}x", "netns", server],
              ["ip", "link", "set", f"{tag}y", "netns", client],
              ["ip", "-n", server, "addr", "add", f"{SERVER}/24", "dev", f"{tag}x"],
              ["ip", "-n", client, "addr", "add", f"{CLIENT}/24", "dev", f"{tag}y"],
              ["ip", "-n", server, "link", "set", f"{tag}x", "up"],
              ["ip", "-n", client, "link", "set", f"{tag}y", "up"],
              # getent ahosts asks with AI_ADDRCONFIG: no IPv4 address but loopback, no IPv4 answers
              ["ip", "-n", hosts, "link", "add", "h0", "type", "veth", "peer", "name", "h1"],
              ["ip", "-n", hosts, "addr", "add", f"{HOSTS_NS}/32", "dev", "h0"],
              ["ip", "-n", hosts, "link", "set", "h0", "up"]]
    etc = {ns: Path("/etc/netns") / ns for ns in (client, hosts)}
    try:
        for step in steps:
            run(*step)
        for ns, path in etc.items():
            path.mkdir(parents=True)
            (path / "resolv.conf").write_text(resolv_conf(SERVER, "default", "cluster.local"))
            entries = f"{WEB_IP}\t{' '.join(NAMES)}\n" if ns == hosts else ""
            (path / "hosts").write_text(f"127.0.0.1\tlocalhost\n{entries}")
        yield server, client, hosts
    finally:
        for ns in (server, client, hosts):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        for path in etc.values():
            shutil.rmtree(path, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(client: str, server_pid: int, kind: str) -> dict[str, float]:
    """CLIENTS load processes at once (one Python client cannot keep the server busy)."""
    argv = ["ip", "netns", "exec", client, sys.executable, "-c", LOAD, SERVER, kind, str(SECONDS),
            str(WINDOW)]
    before = cpu_seconds(server_pid)
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=ENV) for _ in range(CLIENTS)]
    results = [json.loads(p.communicate(timeout=SECONDS + 30)[0]) for p in procs]
    used = cpu_seconds(server_pid) - before
    replies, seconds = sum(r["replies"] for r in results), max(r["seconds"] for r in results)
    return {"qps": replies / seconds, "per_cpu_s": replies / max(used, 1e-9), "server_cpu": used / seconds,
            "lost": sum(r["lost"] for r in results)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latencies(client: str, hosts: str) -> list[dict[str, Any]]:
    samples: dict[tuple[str, str], list[float]] = {(n, w): [] for n in NAMES for w in ("dns", "hosts")}
    for _ in range(ROUNDS):
        for name in NAMES:
            for way, ns in (("dns", client), ("hosts", hosts)):
                out = run("ip", "netns", "exec", ns, sys.executable, "-c", LOOKUPS, name, str(PER_ROUND),
                          WEB_IP)
                samples[(name, way)] += json.loads(out.stdout)
    rows = []
    for name in NAMES:
        dns, files = samples[(name, "dns")], samples[(name, "hosts")]
        rows.append({"name": name, "dns_median_us": statistics.median(dns) * 1e6,
                     "dns_p99_us": percentile(dns, 0.99) * 1e6,
                     "hosts_median_us": statistics.median(files) * 1e6,
                     "hosts_p99_us": percentile(files, 0.99) * 1e6,
                     "ratio": statistics.median(dns) / statistics.median(files)})
    return rows


def getent_times(client: str, hosts: str) -> list[dict[str, Any]]:
    rows = []
    for name in NAMES:
        walls: dict[str, list[float]] = {"dns": [], "hosts": []}
        for _ in range(GETENT_RUNS):
            for way, ns in (("dns", client), ("hosts", hosts)):
                started = time.perf_counter()
                out = run("ip", "netns", "exec", ns, "getent", "ahostsv4", name)
                walls[way].append(time.perf_counter() - started)
                assert out.stdout.startswith(WEB_IP), out.stdout
        dns, files = statistics.median(walls["dns"]), statistics.median(walls["hosts"])
        rows.append({"name": name, "dns_ms": dns * 1e3, "hosts_ms": files * 1e3, "ratio": dns / files})
    return rows


def measure(tmp: Path) -> dict[str, Any]:
    zone, log = tmp / "zone.json", tmp / "queries.log"
    zone.write_text(json.dumps(zone_doc()))
    tag = f"{os.environ.get('KGEN_TEST_LAB_PREFIX', 'dn')}-b{os.getpid() % 10000}"
    with namespaces(tag) as (server_ns, client, hosts):
        argv = ["ip", "netns", "exec", server_ns, sys.executable, "-m", "generator.node.dns",
                "--zone", str(zone), "--listen", SERVER, "--log", str(log)]
        server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=ENV)
        try:
            assert server.stdout is not None and "listening" in server.stdout.readline()
            load = {kind: throughput(client, server.pid, kind) for kind in ("A", "mix")}
            lookups, getent = latencies(client, hosts), getent_times(client, hosts)
        finally:
            server.terminate()
            server.wait(timeout=10)
        logged = sum(1 for _ in log.open())
    return {"load": load, "lookups": lookups, "getent": getent, "log_lines": logged,
            "settings": {"seconds": SECONDS, "window": WINDOW, "clients": CLIENTS, "rounds": ROUNDS,
                         "per_round": PER_ROUND, "getent_runs": GETENT_RUNS, "cpus": os.cpu_count(),
                         "loadavg": os.getloadavg()[0]}}


def report(result: dict[str, Any]) -> None:
    s = result["settings"]
    print(f"DNS server throughput: UDP, {s['clients']} client processes with {s['window']} queries in flight "
          f"each for {s['seconds']:.0f} s, from a client netns; every query logged")
    print(f"({s['cpus']} CPUs shared by clients, server and the rest of the machine: load average "
          f"{s['loadavg']:.1f}; the CPU-second column is what the server itself spends)")
    print(f"{'queries':<8} {'replies/s':>10} {'per server CPU-s':>17} {'server CPU':>11} {'lost':>5}")
    for kind, r in result["load"].items():
        print(f"{kind:<8} {r['qps']:>10.0f} {r['per_cpu_s']:>17.0f} {r['server_cpu'] * 100:>10.0f}% "
              f"{r['lost']:>5}")
    print("\n(mix: A, SRV, PTR, NXDOMAIN and REFUSED in turn)\n")
    print(f"getaddrinfo(AF_INET) in a process in the netns, {s['rounds']} rounds x {s['per_round']} lookups, "
          "alternating: cluster DNS (resolv.conf as a pod's) vs /etc/hosts")
    print(f"{'name':<31} {'DNS median us':>14} {'DNS p99 us':>11} {'hosts median us':>16} "
          f"{'hosts p99 us':>13} {'ratio':>6}")
    for r in result["lookups"]:
        print(f"{r['name']:<31} {r['dns_median_us']:>14.0f} {r['dns_p99_us']:>11.0f} "
              f"{r['hosts_median_us']:>16.1f} {r['hosts_p99_us']:>13.1f} {r['ratio']:>6.1f}")
    print(f"\n`ip netns exec NS getent ahostsv4 NAME`, median wall of {s['getent_runs']} runs each, "
          "alternating")
    print(f"{'name':<31} {'DNS ms':>8} {'hosts ms':>9} {'ratio':>6}")
    for r in result["getent"]:
        print(f"{r['name']:<31} {r['dns_ms']:>8.2f} {r['hosts_ms']:>9.2f} {r['ratio']:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("getent") is None:
        sys.exit("bench_dns: needs root, iproute2 and getent (throw-away network namespaces)")
    with tempfile.TemporaryDirectory(prefix="kgen-bench-dns-") as tmp:
        result = measure(Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
