"""Proxy sync benchmark (`nox -s bench -- proxy`), in throw-away network namespaces.

- full sync for 1,000 / 5,000 / 10,000 ClusterIP services x 5 endpoints, split into
  generating the payload and `iptables-restore` itself;
- a partial sync after one service changed, at 10,000 services;
- for 500 services, one `iptables-restore` against the same rules applied one
  `iptables` call at a time (the first CALL_SAMPLE calls are timed and the rest
  extrapolated, so the run stays bounded; the table says so).
Numbers are printed side by side from one run; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from generator.node.proxy.proxier import Proxier
from generator.node.proxy.rules import write_ruleset

ENDPOINTS = 5
SIZES = (1000, 5000, 10000)
CALL_SAMPLE = 600
POD_NET = ipaddress.ip_network("10.128.0.0/10")
SERVICE_NET = ipaddress.ip_network("10.96.0.0/12")


def synthetic(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services, pods = [], []
    for i in range(n):
        services.append({"name": f"svc-{i}", "type": "ClusterIP",
                         "clusterIP": str(SERVICE_NET.network_address + 1 + i),
                         "selector": {"app": f"a{i}"}, "sessionAffinity": "None",
                         "sessionAffinityTimeout": 10800, "externalTrafficPolicy": "Cluster",
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


def make_proxier(ns: str) -> Proxier:
    exec_ns = ("ip", "netns", "exec", ns)
    return Proxier("node-0", "192.168.0.2", str(POD_NET),
                   iptables_restore=(*exec_ns, "iptables-restore"),
                   iptables=(*exec_ns, "iptables"))


def restore(ns: str, payload: str, tool: str = "iptables-restore") -> float:
    started = time.perf_counter()
    subprocess.run(["ip", "netns", "exec", ns, tool, "-w", "--noflush"],
                   input=payload, text=True, check=True)
    return time.perf_counter() - started


def legacy_restore(payload: str) -> float:
    """The same payload through iptables-legacy, for comparison (then flushed)."""
    with netns() as ns:
        seconds = restore(ns, payload, "iptables-legacy-restore")
        for table in ("nat", "filter"):
            for flag in ("-F", "-X"):
                subprocess.run(["ip", "netns", "exec", ns, "iptables-legacy", "-t", table, flag],
                               capture_output=True)
    return seconds


def full_and_partial(n: int) -> dict[str, Any]:
    services, pods = synthetic(n)
    with netns() as ns:
        p = make_proxier(ns)
        started = time.perf_counter()
        ports = p.port_rules(services, pods)
        payload = write_ruleset(ports)
        generate = time.perf_counter() - started
        apply = restore(ns, payload)
        row = {"services": n, "rules": payload.count("\n-A "), "generate_s": generate,
               "restore_s": apply, "legacy_restore_s": legacy_restore(payload)}
        if n == max(SIZES):
            row.update(partial(p, ns, services, pods))
    return row


def partial(p: Proxier, ns: str, services: list[dict[str, Any]],
            pods: list[dict[str, Any]]) -> dict[str, Any]:
    """Sync once fully through the proxier, drop one endpoint, and time the partial sync."""
    p.update(services, pods)
    p.sync_once(full=True)
    p.update(services, pods[1:])
    started = time.perf_counter()
    p.sync_once()
    return {"partial_s": time.perf_counter() - started}


def one_call_at_a_time(n: int = 500) -> dict[str, Any]:
    services, pods = synthetic(n)
    with netns() as ns:
        payload = write_ruleset(make_proxier(ns).port_rules(services, pods))
        calls = as_calls(payload)
        restore_s = restore(ns, payload)
    with netns() as ns:
        started = time.perf_counter()
        for call in calls[:CALL_SAMPLE]:
            subprocess.run(["ip", "netns", "exec", ns, "iptables", "-w", *call], check=True)
        sampled = time.perf_counter() - started
    estimate = sampled / min(CALL_SAMPLE, len(calls)) * len(calls)
    return {"services": n, "calls": len(calls), "timed_calls": min(CALL_SAMPLE, len(calls)),
            "restore_s": restore_s, "one_at_a_time_s": estimate, "ratio": estimate / restore_s}


def as_calls(payload: str) -> list[list[str]]:
    """The payload as separate iptables invocations: -N for chains, then each -A."""
    calls, table = [], "filter"
    for line in payload.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            calls.append(["-t", table, "-N", line[1:].split()[0]])
        elif line.startswith("-A "):
            calls.append(["-t", table, *shlex.split(line)])
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [full_and_partial(n) for n in SIZES]
    calls = one_call_at_a_time()
    if args.json:
        print(json.dumps({"full": rows, "one_call_at_a_time": calls}, indent=2))
        return
    print(f"{'services':>9} {'rules':>8} {'generate s':>11} {'restore s':>10} {'total s':>8} "
          f"{'legacy restore s':>17}")
    for r in rows:
        print(f"{r['services']:>9} {r['rules']:>8} {r['generate_s']:>11.3f} {r['restore_s']:>10.3f} "
              f"{r['generate_s'] + r['restore_s']:>8.3f} {r['legacy_restore_s']:>17.3f}")
    print("(restore: iptables-restore as in the node image, nft backend; legacy: the same "
          "payload through iptables-legacy-restore)")
    big = rows[-1]
    print(f"\npartial sync, one service changed at {big['services']} services: "
          f"{big['partial_s']:.3f} s (full: {big['generate_s'] + big['restore_s']:.3f} s)")
    print(f"\n{calls['services']} services, {calls['calls']} rules and chains: one iptables-restore "
          f"{calls['restore_s']:.3f} s; one iptables call each ~{calls['one_at_a_time_s']:.1f} s "
          f"(first {calls['timed_calls']} timed, rest extrapolated); ratio {calls['ratio']:.0f}x")


if __name__ == "__main__":
    main()
