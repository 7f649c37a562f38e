"""Proxy sync benchmark (`nox -s bench -- proxy`), in throw-away network namespaces (root).

For 1,000 / 5,000 / 10,000 ClusterIP services x 5 endpoints, in each mode:
- the full sync of a fresh node and then a one-service sync (one endpoint gone),
  end to end through the proxier (`update` + `sync_once`), split into Python and
  kernel-load time (the iptables-restore / nft processes);
- the floor, measured in the same run in a fresh namespace with no Python: iptables
  mode, the same ruleset as one iptables-legacy-restore payload, then the proxier's
  own one-service payload; nftables mode, the proxier's own transactions with `nft -f`;
- the ratio of the proxier's time to the floor.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from generator.node.proxy.loop import BaseProxier
from generator.node.proxy.nftables import NFTablesProxier
from generator.node.proxy.proxier import Proxier
from generator.node.proxy.rules import write_ruleset

ENDPOINTS = 5
SIZES = (1000, 5000, 10000)
NODE, NODE_IP = "node-0", "192.168.0.2"
POD_NET = ipaddress.ip_network("10.128.0.0/10")
SERVICE_NET = ipaddress.ip_network("10.96.0.0/12")


def synthetic(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services, pods = [], []
    for i in range(n):
        services.append({"name": f"svc-{i}", "type": "ClusterIP",
                         "clusterIP": str(SERVICE_NET.network_address + 1 + i),
                         "selector": {"app": f"a{i}"}, "sessionAffinity": "None",
                         "sessionAffinityTimeout": 10800, "externalTrafficPolicy": "Cluster",
                         "internalTrafficPolicy": "Cluster",
                         "ports": [{"name": "", "port": 80, "targetPort": 8080,
                                    "protocol": "TCP", "nodePort": None}]})
        for j in range(ENDPOINTS):
            pods.append({"name": f"p-{i}-{j}", "node": f"node-{j}", "state": "Running",
                         "ip": str(POD_NET.network_address + 1 + i * ENDPOINTS + j),
                         "labels": {"app": f"a{i}"}})
    return services, pods


@contextmanager
def netns() -> Iterator[str]:
    name = f"kgt-bench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


class Recording:
    """A runner that runs each command and keeps every payload (`nft -f` transaction or
    iptables-restore input)."""

    def __init__(self) -> None:
        self.transactions: list[str] = []

    def __call__(self, cmd: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
        if input is not None:
            self.transactions.append(input)
        return subprocess.run(cmd, input=input, capture_output=True, text=True)


def timed_sync(p: BaseProxier, services: list[dict[str, Any]],
               pods: list[dict[str, Any]]) -> dict[str, float]:
    started = time.perf_counter()
    p.update(services, pods)
    if not p.sync_once():
        raise RuntimeError(p.error)
    total = time.perf_counter() - started
    return {"total": total, "kernel": p.timing["kernel"], "python": total - p.timing["kernel"]}


def run(cmd: list[str], payload: str) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, input=payload, text=True, check=True, capture_output=True)
    return time.perf_counter() - started


def iptables_row(n: int) -> dict[str, Any]:
    services, pods = synthetic(n)
    changed = pods[1:]  # svc-0 loses one endpoint
    recording = Recording()
    with netns() as ns:
        ex = ("ip", "netns", "exec", ns)
        p = Proxier(NODE, NODE_IP, str(POD_NET), iptables_restore=(*ex, "iptables-restore"),
                    iptables=(*ex, "iptables"), iptables_save=(*ex, "iptables-save"),
                    runner=recording)
        full = timed_sync(p, services, pods)
        ruleset = write_ruleset(list(p.cache.values()))
        first = len(recording.transactions)
        one = timed_sync(p, services, changed)
    # The floor: the same ruleset as one iptables-legacy-restore payload (legacy rewrites
    # the whole table per restore, so the proxier's stages would cost it the square), then
    # the proxier's own one-service payload on top.
    with netns() as ns:
        legacy = ["ip", "netns", "exec", ns, "iptables-legacy-restore", "-w", "--noflush"]
        floor_full = run(legacy, ruleset)
        floor_one = sum(run(legacy, t) for t in recording.transactions[first:])
        for table in ("nat", "filter"):
            for flag in ("-F", "-X"):
                subprocess.run(["ip", "netns", "exec", ns, "iptables-legacy", "-t", table, flag],
                               capture_output=True)
    return {"mode": "iptables", "services": n, "full": full, "one": one,
            "floor_full": floor_full, "floor_one": floor_one}


def nftables_row(n: int) -> dict[str, Any]:
    services, pods = synthetic(n)
    changed = pods[1:]
    recording = Recording()
    with netns() as ns:
        p = NFTablesProxier(NODE, NODE_IP, str(POD_NET), str(SERVICE_NET),
                            nft=("ip", "netns", "exec", ns, "nft"), runner=recording)
        full = timed_sync(p, services, pods)
        first = len(recording.transactions)
        one = timed_sync(p, services, changed)
    # The floor: the proxier's own transactions, replayed by nft alone.
    with netns() as ns:
        nft = ["ip", "netns", "exec", ns, "nft", "-f", "-"]
        floor_full = sum(run(nft, t) for t in recording.transactions[:first])
        floor_one = sum(run(nft, t) for t in recording.transactions[first:])
    return {"mode": "nftables", "services": n, "full": full, "one": one,
            "floor_full": floor_full, "floor_one": floor_one,
            "transactions": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--modes", nargs="*", default=["iptables", "nftables"])
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for n in args.sizes:
        for mode in args.modes:
            rows.append(iptables_row(n) if mode == "iptables" else nftables_row(n))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'mode':<9} {'services':>8} {'sync':<8} {'python s':>9} {'kernel s':>9} "
          f"{'total s':>8} {'floor s':>8} {'ratio':>6}")
    for r in rows:
        for kind, floor in (("full", r["floor_full"]), ("one", r["floor_one"])):
            t = r[kind]
            print(f"{r['mode']:<9} {r['services']:>8} {kind:<8} {t['python']:>9.3f} "
                  f"{t['kernel']:>9.3f} {t['total']:>8.3f} {floor:>8.3f} "
                  f"{t['total'] / floor:>6.1f}")
    print("(ClusterIP services x 5 endpoints, fresh network namespace per mode and size; "
          "one = one endpoint of one service gone. kernel: time in iptables-restore / nft "
          "processes. floor, same run, no Python: iptables-legacy-restore of the same ruleset "
          "in one payload (one: the proxier's payload), or nft -f of the proxier's own "
          "transactions. ratio: total / floor.)")
    print(f"benchmark time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
