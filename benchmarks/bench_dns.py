"""The cluster DNS from a pod of a running lab: queries per second and lookup latency
(`nox -s bench -- dns`).

For each proxy mode it brings up a small lab of its own (two nodes, `dns.replicas: 1`,
so one DNS pod, `coredns-0` on node-0; the querying pod `client` on node-1; `web` and
twenty more services in the zone), measures, and takes the lab down:

- Throughput: from `client`'s network namespace, CLIENTS processes keep WINDOW UDP
  queries in flight for SECONDS each and count the replies; once to the kube-dns
  cluster IP (every query DNAT'ed by kube-proxy on node-1 to coredns-0 across the
  overlay, as a pod's lookups go) and once to coredns-0's pod IP (no DNAT), side by
  side, RUNS runs each, alternating, after a warm-up; the median run is shown (the
  first packets after `kgen up` wait for neighbour entries). The DNS pod's own CPU
  time (its /proc stat on node-0) gives replies per server CPU-second, which a busy
  machine disturbs less.
- Latency: glibc's getaddrinfo (AF_INET) in a process in `client`'s netns, through
  the pod's own resolv.conf (ndots:5, the search path: the full name walks the whole
  search list first), against the same names answered from /etc/hosts in the same
  netns (a private mount namespace binds a hosts file holding them over /etc/hosts),
  alternating in ROUNDS; median and p99, and the ratio.

Bounded: SECONDS per load run (RUNS per target), ROUNDS × PER_ROUND lookups per name and way, every
`docker exec` with a timeout. Lab traffic only: queries go to the lab's addresses.
Nothing here asserts a number. Lab names start with KGEN_TEST_LAB_PREFIX (default
`bench`); `--node-network` picks the node network (default: a free /24).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

DNS_IP = "10.96.0.10"
WEB_IP = "10.96.0.20"
NAMES = ["web", "web.default", "web.default.svc.cluster.local"]
ROUNDS, PER_ROUND = 5, 100
SECONDS, WINDOW, CLIENTS, RUNS = 3.0, 32, 2, 3
EXEC_TIMEOUT = 120

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

# CLIENTS processes (one Python client cannot keep the server busy), each WINDOW in flight.
LOAD = """
import json, select, socket, subprocess, sys, time
server, seconds, window, clients = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if clients > 1:
    procs = [subprocess.Popen([sys.executable, "-c", sys.argv[5], server, sys.argv[2], sys.argv[3], "1"],
                              stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    results = [json.loads(p.communicate(timeout=seconds + 30)[0]) for p in procs]
    print(json.dumps({"replies": sum(r["replies"] for r in results), "lost": sum(r["lost"] for r in results),
                      "seconds": max(r["seconds"] for r in results)}))
    sys.exit(0)
from generator.node.dns.message import Message, Question, encode, A
queries = [encode(Message(id=i, rd=True, questions=[Question("web.default.svc.cluster.local", A)]))
           for i in range(65536)]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.connect((server, 53))
sock.setblocking(False)
sent = got = lost = 0
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


def lab_doc(name: str, mode: str, network: str | None) -> dict[str, Any]:
    http = [{"name": "http", "port": 80, "targetPort": 8080}]
    services = [{"name": "web", "clusterIP": WEB_IP, "selector": {"app": "web"}, "ports": http}]
    services += [{"name": f"svc-{i}", "selector": {"app": "web"}, "ports": http} for i in range(1, 21)]
    doc: dict[str, Any] = {
        "name": name, "proxyMode": mode, "nodes": ["node-0", "node-1"],
        "dns": {"replicas": 1},
        "pods": [{"name": "web-0", "node": "node-0", "labels": {"app": "web"}},
                 {"name": "client", "node": "node-1", "labels": {"app": "client"}}],
        "services": services}
    if network:
        doc["nodeNetwork"] = network
    return doc


def kgen(workdir: Path, *args: str) -> str:
    done = subprocess.run(["kgen", *args], cwd=workdir, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"kgen {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def docker_exec(container: str, *argv: str) -> str:
    done = subprocess.run(["docker", "exec", container, *argv], capture_output=True, text=True,
                          timeout=EXEC_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{container}: {' '.join(argv[:4])}…: {done.stderr.strip()}")
    return done.stdout


def in_pod(node: str, pod: str, *argv: str, hosts: bool = False) -> str:
    """argv in the pod's netns (`ip netns exec` binds its resolv.conf and hosts); with
    `hosts`, in a private mount namespace whose /etc/hosts holds the benchmark's names."""
    if not hosts:
        return docker_exec(node, "ip", "netns", "exec", pod, *argv)
    script = 'mount --bind /tmp/kgen-bench-hosts /etc/hosts && exec "$@"'
    return docker_exec(node, "ip", "netns", "exec", pod, "unshare", "-m", "sh", "-c", script,
                       "sh", *argv)


def cpu_seconds(node: str, pid: str) -> float:
    stat = docker_exec(node, "cat", f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    ticks = int(docker_exec(node, "getconf", "CLK_TCK").strip())
    return (int(stat[11]) + int(stat[12])) / ticks


def throughput(lab: dict[str, Any], target: str) -> dict[str, float]:
    before = cpu_seconds(lab["dns_node"], lab["dns_pid"])
    out = in_pod(lab["client_node"], "client", "python3", "-c", LOAD, target, str(SECONDS),
                 str(WINDOW), str(CLIENTS), LOAD)
    used = cpu_seconds(lab["dns_node"], lab["dns_pid"]) - before
    r = json.loads(out)
    return {"qps": r["replies"] / r["seconds"], "per_cpu_s": r["replies"] / max(used, 1e-9),
            "server_cpu": used / r["seconds"], "lost": r["lost"]}


def loads(lab: dict[str, Any]) -> dict[str, dict[str, float]]:
    """RUNS runs per target, alternating, after a short warm-up of each (neighbour entries,
    the first conntrack entry): the median run of each target by replies/s."""
    targets = {"kube-dns cluster IP (DNAT)": DNS_IP, "coredns-0 pod IP (direct)": lab["dns_pod_ip"]}
    for target in targets.values():
        in_pod(lab["client_node"], "client", "python3", "-c", LOAD, target, "0.5", "4", "1", LOAD)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for _ in range(RUNS):
        for name, target in targets.items():
            runs[name].append(throughput(lab, target))
    return {name: sorted(found, key=lambda r: r["qps"])[len(found) // 2]
            for name, found in runs.items()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latencies(lab: dict[str, Any]) -> list[dict[str, Any]]:
    node = lab["client_node"]
    docker_exec(node, "sh", "-c", "printf '127.0.0.1\\tlocalhost\\n%s\\t%s\\n' "
                f"{WEB_IP} '{' '.join(NAMES)}' > /tmp/kgen-bench-hosts")
    samples: dict[tuple[str, bool], list[float]] = {(n, h): [] for n in NAMES for h in (False, True)}
    for _ in range(ROUNDS):
        for name in NAMES:
            for hosts in (False, True):
                out = in_pod(node, "client", "python3", "-c", LOOKUPS, name, str(PER_ROUND), WEB_IP,
                             hosts=hosts)
                samples[(name, hosts)] += json.loads(out)
    rows = []
    for name in NAMES:
        dns, files = samples[(name, False)], samples[(name, True)]
        rows.append({"name": name, "dns_median_us": statistics.median(dns) * 1e6,
                     "dns_p99_us": percentile(dns, 0.99) * 1e6,
                     "hosts_median_us": statistics.median(files) * 1e6,
                     "hosts_p99_us": percentile(files, 0.99) * 1e6,
                     "ratio": statistics.median(dns) / statistics.median(files)})
    return rows


def running(workdir: Path, lab_file: Path) -> dict[str, Any]:
    status = json.loads(kgen(workdir, "status", "-l", str(lab_file), "--json"))
    container = {n["name"]: n["container"] for n in status["nodes"]}
    pods = {p["name"]: p for p in status["pods"]}
    dns_node = container[pods["coredns-0"]["node"]]
    pid = docker_exec(dns_node, "pgrep", "-f", "pods/coredns-0/queries.log").split()[0]
    return {"client_node": container[pods["client"]["node"]], "dns_node": dns_node,
            "dns_pid": pid, "dns_pod_ip": pods["coredns-0"]["ip"]}


def measure(mode: str, network: str | None, workdir: Path) -> dict[str, Any]:
    prefix = os.environ.get("KGEN_TEST_LAB_PREFIX", "bench")
    name = f"{prefix}-bdns-{mode[:3]}"
    lab_file = workdir / f"{name}.yaml"
    lab_file.write_text(yaml.safe_dump(lab_doc(name, mode, network), sort_keys=False))
    started = time.monotonic()
    kgen(workdir, "up", "-l", str(lab_file))
    up_s = time.monotonic() - started
    try:
        lab = running(workdir, lab_file)
        load = loads(lab)
        lookups = latencies(lab)
    finally:
        kgen(workdir, "down", "-l", str(lab_file))
    return {"mode": mode, "lab": name, "up_s": up_s, "load": load, "lookups": lookups,
            "loadavg": os.getloadavg()[0]}


def report(results: list[dict[str, Any]]) -> None:
    print(f"DNS from a pod: `client` (node-1) to the lab's one DNS pod `coredns-0` (node-0); "
          f"UDP load: {CLIENTS} processes × {WINDOW} queries in flight for {SECONDS:.0f} s, "
          f"the median of {RUNS} runs per target, alternating; "
          f"{os.cpu_count()} CPUs shared with the rest of the machine")
    print(f"{'mode':<9} {'target':<28} {'replies/s':>10} {'per server CPU-s':>17} "
          f"{'server CPU':>11} {'lost':>5}")
    for r in results:
        for target, t in r["load"].items():
            print(f"{r['mode']:<9} {target:<28} {t['qps']:>10.0f} {t['per_cpu_s']:>17.0f} "
                  f"{t['server_cpu'] * 100:>10.0f}% {t['lost']:>5}")
    print(f"\ngetaddrinfo(AF_INET) in `client`'s netns, {ROUNDS} rounds × {PER_ROUND} lookups per "
          "name and way, alternating: cluster DNS (the pod's resolv.conf) vs /etc/hosts")
    print(f"{'mode':<9} {'name':<31} {'DNS median us':>14} {'DNS p99 us':>11} "
          f"{'hosts median us':>16} {'hosts p99 us':>13} {'ratio':>6}")
    for r in results:
        for row in r["lookups"]:
            print(f"{r['mode']:<9} {row['name']:<31} {row['dns_median_us']:>14.0f} "
                  f"{row['dns_p99_us']:>11.0f} {row['hosts_median_us']:>16.1f} "
                  f"{row['hosts_p99_us']:>13.1f} {row['ratio']:>6.1f}")
    print("\n" + ", ".join(f"{r['mode']}: lab up in {r['up_s']:.0f} s, load average "
                           f"{r['loadavg']:.1f}" for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="iptables,nftables")
    parser.add_argument("--node-network", action="append", default=[],
                        help="a node network per mode, in order (default: a free /24)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = args.modes.split(",")
    networks = args.node_network + [None] * len(modes)
    with tempfile.TemporaryDirectory(prefix="kgen-bench-dns-") as tmp:
        results = [measure(mode, networks[i], Path(tmp)) for i, mode in enumerate(modes)]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)


if __name__ == "__main__":
    main()
