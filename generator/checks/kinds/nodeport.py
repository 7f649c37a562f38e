"""NodePort: the lab's client reaches a service through every node's port.

externalTrafficPolicy Cluster: every backend answers through any node, and
sees an address of that node (SNAT), never the client. Local: a node with
backends sends only to its own, which see the client's own IP; a node
without one drops the request. Spreading as ClusterIP does (stats.py), and
SNAT_DRAWS /clientip requests show the source the backend saw.

A lab's size multiplies: reaching every one of n backends takes about
n·ln(n) requests, through each of N nodes (at 100 nodes and 200 backends,
120,000 requests, most of `kgen check`'s time). So a service with more than
FEW_BACKENDS backends must reach every one through SPREAD_NODES nodes
(spread evenly over the lab, the first and the last among them); through
each other node it must answer only from its backends, on two nodes or more
when they live on several (a node that sent everything to its own pods, as
under Local, fails), with few enough requests for the same false-failure
rate (`reach_requests`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from generator.checks.base import LabView, Outcome, Planning, Pod, ProbeCheck, names, shown, svc_name
from generator.checks.batch import (
    all_ok,
    answers,
    describe,
    drop_job,
    job,
    judge_dropped,
    peer_ips,
)
from generator.checks.stats import FALSE_FAILURE, miss_probability, spread_requests
from generator.node.contract import NodeSpec, ServiceSpec
from generator.node.documents import ProbeJob, ProbeSummary

SNAT_DRAWS = 4
SPREAD_NODES = 5  # a large service reaches every backend through this many nodes
FEW_BACKENDS = 8  # up to this many, every backend through every node (≤ 150 requests)


class NodePort(ProbeCheck):
    kind = "nodeport"

    def jobs(self, lab: LabView) -> list[ProbeJob]:
        p = self.params
        if p["drop"]:
            return [drop_job(lab, self.source, self.target)]
        until = p["backends"] if p["spread"] else None
        return [job(lab, self.source, "http", self.target, "/hostname", p["requests"],
                    until=until),
                job(lab, self.source, "http", self.target, "/clientip", p["draws"])]

    def judge(self, lab: LabView, summaries: list[ProbeSummary]) -> Outcome:
        p = self.params
        if p["drop"]:
            return judge_dropped(summaries[0])
        node = p["node"]
        allowed = ({p["client_ip"]} if p["policy"] == "Local"
                   else {node["ip"], node["gateway"], node["vtep"]})
        draws, peers = summaries
        seen = peer_ips(peers)
        ok = (all_ok(draws) and _answered(p, answers(draws)) and all_ok(peers)
              and bool(seen) and seen <= allowed)
        text = f"{describe(draws)}; backend saw {', '.join(sorted(seen)) or 'nothing'}"
        if peers["errors"]:
            text += f"; errors: {'; '.join(sorted(peers['errors']))}"
        return Outcome(ok, text)


def _answered(p: dict[str, Any], got: set[str]) -> bool:
    """Every backend answered (a spread); else only backends did, on enough nodes."""
    if p["spread"]:
        return got == set(p["backends"])
    node_of: dict[str, str] = p["node_of"]
    return got <= node_of.keys() and len({node_of[b] for b in got}) >= int(p["min_nodes"])


def spread_nodes(nodes: list[NodeSpec], k: int = SPREAD_NODES) -> set[str]:
    """k nodes evenly spread in lab order, the first and the last among them."""
    if len(nodes) <= k:
        return {n["name"] for n in nodes}
    return {nodes[round(i * (len(nodes) - 1) / (k - 1))]["name"] for i in range(k)}


def reach_requests(shares: list[float], p: float = FALSE_FAILURE) -> int:
    """Fewest requests r with sum(s^r) <= p: the chance that r uniform draws all land on
    one node's backends (`shares`: each node's part of them), a healthy lab's only way
    to fail a reach check."""
    r = 1
    while sum(s ** r for s in shares) > p:
        r += 1
    return r


def plan(ctx: Planning, svc: ServiceSpec, backends: list[Pod],
         serving_at: Callable[[str], list[Pod]] | None = None) -> list[NodePort]:
    """`serving_at(node)`: who answers external traffic arriving at a node (default: the
    backends, or under Local the node's own)."""
    clients = ctx.cluster["clients"]
    if not clients:
        return []
    spread_via = spread_nodes(ctx.cluster["nodes"])
    return [_via(ctx, svc, backends, node, clients[0]["name"], clients[0]["ip"], serving_at,
                 node["name"] in spread_via)
            for node in ctx.cluster["nodes"]]


def _via(ctx: Planning, svc: ServiceSpec, backends: list[Pod], node: NodeSpec,
         client: str, client_ip: str,
         serving_at: Callable[[str], list[Pod]] | None, spread_via: bool) -> NodePort:
    port = next(p for p in svc["ports"] if p["nodePort"])
    local = svc["externalTrafficPolicy"] == "Local"
    if serving_at is not None:
        backends = serving_at(node["name"])
    has_local = node["name"] in {b["node"] for b in backends}
    if local:
        serving = [b for b in backends if b["node"] == node["name"]]
        expected = (f"backend sees the client's IP {client_ip}" if has_local
                    else "dropped (no local endpoint)")
    else:
        serving = backends
        expected = f"backend sees an address of {node['name']}, not the client"
    spread = spread_via or len(serving) <= FEW_BACKENDS
    requests = spread_requests(len(serving)) if serving else 1
    where = " locally" if local else ""
    if len(serving) == 1:
        expected = f"{serving[0]['name']} serves{where}; {expected}"
    elif serving and spread:
        expected = (f"{shown(names(serving))} all serve{where} (≤ {requests} requests); "
                    f"{expected}")
    params: dict[str, Any] = {
        "policy": svc["externalTrafficPolicy"], "node": node, "drop": local and not has_local,
        "client_ip": client_ip, "requests": requests, "draws": SNAT_DRAWS, "spread": spread,
        "false_failure": miss_probability(len(serving), requests), "backends": names(serving)}
    if not spread:
        params.update(_reach(serving))
        nodes = f", from {params['min_nodes']}+ nodes" if params["min_nodes"] > 1 else ""
        expected = (f"only {shown(names(serving))} answer{nodes} "
                    f"({params['requests']} requests); {expected}")
    return NodePort(f"{svc_name(svc)}:{port['nodePort']} via {node['name']}",
                    f"NodePort {svc_name(svc)} ({svc['externalTrafficPolicy']}) via {node['name']}",
                    client, f"{node['ip']}:{port['nodePort']}", expected,
                    _depends(node["name"], serving if spread else [],
                             dropped=local and not has_local), params)


def _reach(serving: list[Pod]) -> dict[str, Any]:
    """A reach check's parameters: its backends' nodes, how many of those the answers
    must come from, its request count and false-failure rate."""
    node_of = {b["name"]: b["node"] for b in serving}
    per_node = Counter(node_of.values())
    shares = [n / len(serving) for n in per_node.values()]
    min_nodes = 2 if len(per_node) > 1 else 1
    requests = reach_requests(shares) if min_nodes > 1 else SNAT_DRAWS
    return {"node_of": node_of, "min_nodes": min_nodes, "requests": requests,
            "false_failure": sum(s ** requests for s in shares) if min_nodes > 1 else 0.0}


def _depends(node: str, serving: list[Pod], dropped: bool) -> frozenset[str]:
    """What certainly fails the check when broken (a reach check, which draws few of its
    backends, passes `serving` empty: only the node's own NAT)."""
    if dropped:
        return frozenset()  # a drop needs nothing to work
    parts = {f"nat:{node}"}
    for b in serving:
        parts |= {f"veth:{b['name']}", f"bridge:{b['node']}"}
        if b["node"] != node:
            parts |= {f"overlay:{node}", f"overlay:{b['node']}"}
    return frozenset(parts)
