"""NetworkPolicy sync benchmark (`nox -s bench -- netpol`), in throw-away network namespaces (root).

1,000 policies over 500 pods (10 namespaces of 50; every pod on the measured
node, the worst case: every pod gets a firewall chain). Policies mix what users
write: pod selectors, namespace selectors, both in one peer, ipBlocks with
except, numeric, ranged and named ports, ingress and egress. In each mode:
- sync: the node's whole path, parse + plan + render (Python) and the load
  (iptables-restore --noflush / nft -f), into a fresh namespace, then a resync
  with one policy changed on top of it;
- floor, measured in the same run in another fresh namespace: the same payloads
  loaded by iptables-restore / nft -f alone;
- the ratio of sync to floor; each figure the median of --repeat runs (default 3).
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from generator.node.netpol import iptables, nftables
from generator.node.netpol.plan import node_plan
from generator.node.netpol.policy import parse_cluster

NAMESPACES, PODS_PER_NAMESPACE = 10, 50
NODE = "node-0"


def synthetic(policies: int = 1000) -> dict[str, Any]:
    namespaces = [{"name": f"ns-{n}", "labels": {"team": f"t{n % 3}"}} for n in range(NAMESPACES)]
    pods = [{"name": f"p-{i}", "namespace": f"ns-{n}", "node": NODE,
             "ip": f"10.{128 + n}.{i // 200}.{i % 200 + 2}",
             "labels": {"app": f"a{i % 10}", "role": "client" if i % 3 == 0 else "server"},
             "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                       {"name": "udp", "containerPort": 8081, "protocol": "UDP"}]}
            for n in range(NAMESPACES) for i in range(PODS_PER_NAMESPACE)]
    return {"namespaces": namespaces, "pods": pods,
            "networkPolicies": [_policy(k) for k in range(policies)]}


def _policy(k: int) -> dict[str, Any]:
    ns, app, kind = f"ns-{k % NAMESPACES}", f"a{k % 10}", k % 5
    peers: list[dict[str, Any]] = [
        [{"podSelector": {"matchLabels": {"role": "client"}}}],
        [{"namespaceSelector": {"matchLabels": {"team": f"t{k % 3}"}}}],
        [{"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                                                      "operator": "In", "values": [ns]}]},
          "podSelector": {"matchLabels": {"app": f"a{(k + 1) % 10}"}}}],
        [{"ipBlock": {"cidr": "10.128.0.0/9", "except": [f"10.{128 + k % NAMESPACES}.0.0/24"]}}],
        [{"podSelector": {"matchExpressions": [{"key": "role", "operator": "NotIn",
                                                "values": ["client"]}]}}],
    ][kind]
    ports = [[{"port": 8080}], [{"port": "http"}], [{"port": 30000, "endPort": 30100,
                                                      "protocol": "UDP"}], [], [{"port": "udp",
                                                                                 "protocol": "UDP"}]][kind]
    rule: dict[str, Any] = {"ports": ports} if ports else {}
    direction = "egress" if k % 4 == 3 else "ingress"
    rule["to" if direction == "egress" else "from"] = peers
    return {"metadata": {"name": f"np-{k}", "namespace": ns},
            "spec": {"podSelector": {"matchLabels": {"app": app}},
                     "policyTypes": ["Egress" if direction == "egress" else "Ingress"],
                     direction: [rule]}}


@contextmanager
def netns() -> Iterator[str]:
    name = f"np-bench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def load(cmd: list[str], payload: str) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, input=payload, text=True, check=True, capture_output=True)
    return time.perf_counter() - started


def loader(ns: str, mode: str) -> list[str]:
    tool = ["nft", "-f", "-"] if mode == "nftables" else ["iptables-restore", "--noflush"]
    return ["ip", "netns", "exec", ns, *tool]


Held = dict[str, list[str]]


def sync(doc: dict[str, Any], ns: str, mode: str,
         held: Held) -> tuple[dict[str, float], str, Held]:
    """One sync as the agent will run it: plan, render (iptables: only the chains that
    differ from what it loaded last), load."""
    started = time.perf_counter()
    plan = node_plan(parse_cluster(doc), NODE)
    now = iptables.chain_rules(plan) if mode == "iptables" else {}
    payload = nftables.render(plan) if mode == "nftables" else iptables.restore_input(now, held)
    python = time.perf_counter() - started
    kernel = load(loader(ns, mode), payload)
    return {"python": python, "kernel": kernel, "total": python + kernel}, payload, now


def once(mode: str, doc: dict[str, Any], changed: dict[str, Any]) -> dict[str, Any]:
    with netns() as ns:
        full, payload, held = sync(doc, ns, mode, {})
        resync, again, _ = sync(changed, ns, mode, held)
    with netns() as ns:  # the floor: the same payloads, the tool alone, on the same state
        floor_full = load(loader(ns, mode), payload)
        floor_resync = load(loader(ns, mode), again)
    return {"rules": sum(1 for line in payload.splitlines() if line.strip().startswith(
                ("-A", "ip ", "meta ", "jump", "ct "))),
            "full": full, "resync": resync, "floor_full": floor_full,
            "floor_resync": floor_resync}


def row(mode: str, doc: dict[str, Any], repeat: int) -> dict[str, Any]:
    """Each figure the median of `repeat` runs, sync and floor taking turns (a shared
    machine's load then weighs on both alike)."""
    changed = copy.deepcopy(doc)
    changed["networkPolicies"][0]["spec"]["podSelector"] = {"matchLabels": {"app": "a1"}}
    runs = [once(mode, doc, changed) for _ in range(repeat)]
    out: dict[str, Any] = {"mode": mode, "policies": len(doc["networkPolicies"]),
                           "pods": len(doc["pods"]), "rules": runs[0]["rules"], "runs": repeat}
    for key in ("full", "resync"):
        out[key] = {part: statistics.median(r[key][part] for r in runs)
                    for part in ("python", "kernel", "total")}
        out[f"floor_{key}"] = statistics.median(r[f"floor_{key}"] for r in runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--modes", nargs="*", default=["iptables", "nftables"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    doc = synthetic(args.policies)
    rows = [row(mode, doc, args.repeat) for mode in args.modes]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'mode':<9} {'policies':>8} {'pods':>5} {'rules':>6} {'sync':<7} {'python s':>9} "
          f"{'kernel s':>9} {'total s':>8} {'floor s':>8} {'ratio':>6}")
    for r in rows:
        for kind, floor in (("full", r["floor_full"]), ("resync", r["floor_resync"])):
            t = r[kind]
            print(f"{r['mode']:<9} {r['policies']:>8} {r['pods']:>5} {r['rules']:>6} {kind:<7} "
                  f"{t['python']:>9.3f} {t['kernel']:>9.3f} {t['total']:>8.3f} {floor:>8.3f} "
                  f"{t['total'] / floor:>6.2f}")
    print(f"(medians of {args.repeat} runs; every pod on the measured node; full = into a "
          "fresh namespace, resync = one policy changed, on top. python: parse + plan + "
          "render; kernel: the iptables-restore / nft process. floor, same run, another "
          "fresh namespace: the same payloads loaded by the tool alone, on the same state. "
          "ratio: total / floor.)")
    print(f"benchmark time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
