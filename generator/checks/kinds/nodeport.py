"""NodePort: the lab's client reaches a service through every node's port.

externalTrafficPolicy Cluster: every backend answers through any node, and
sees an address of that node (SNAT), never the client. Local: a node with
backends sends only to its own, which see the client's own IP; a node
without one drops the request. Spreading as ClusterIP does (stats.py), and
SNAT_DRAWS /clientip requests show the source the backend saw.
"""

from __future__ import annotations

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
from generator.checks.stats import miss_probability, spread_requests
from generator.node.contract import NodeSpec, ServiceSpec
from generator.node.documents import ProbeJob, ProbeSummary

SNAT_DRAWS = 4


class NodePort(ProbeCheck):
    kind = "nodeport"

    def jobs(self, lab: LabView) -> list[ProbeJob]:
        p = self.params
        if p["drop"]:
            return [drop_job(lab, self.source, self.target)]
        return [job(lab, self.source, "http", self.target, "/hostname", p["requests"],
                    until=p["backends"]),
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
        ok = (all_ok(draws) and answers(draws) == set(p["backends"]) and all_ok(peers)
              and bool(seen) and seen <= allowed)
        text = f"{describe(draws)}; backend saw {', '.join(sorted(seen)) or 'nothing'}"
        if peers["errors"]:
            text += f"; errors: {'; '.join(sorted(peers['errors']))}"
        return Outcome(ok, text)


def plan(ctx: Planning, svc: ServiceSpec, backends: list[Pod],
         serving_at: Callable[[str], list[Pod]] | None = None) -> list[NodePort]:
    """`serving_at(node)`: who answers external traffic arriving at a node (default: the
    backends, or under Local the node's own)."""
    clients = ctx.cluster["clients"]
    if not clients:
        return []
    return [_via(ctx, svc, backends, node, clients[0]["name"], clients[0]["ip"], serving_at)
            for node in ctx.cluster["nodes"]]


def _via(ctx: Planning, svc: ServiceSpec, backends: list[Pod], node: NodeSpec,
         client: str, client_ip: str,
         serving_at: Callable[[str], list[Pod]] | None) -> NodePort:
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
    requests = spread_requests(len(serving)) if serving else 1
    where = " locally" if local else ""
    if len(serving) == 1:
        expected = f"{serving[0]['name']} serves{where}; {expected}"
    elif serving:
        expected = (f"{shown(names(serving))} all serve{where} (≤ {requests} requests); "
                    f"{expected}")
    params: dict[str, Any] = {
        "policy": svc["externalTrafficPolicy"], "node": node, "drop": local and not has_local,
        "client_ip": client_ip, "requests": requests, "draws": SNAT_DRAWS,
        "false_failure": miss_probability(len(serving), requests), "backends": names(serving)}
    return NodePort(f"{svc_name(svc)}:{port['nodePort']} via {node['name']}",
                    f"NodePort {svc_name(svc)} ({svc['externalTrafficPolicy']}) via {node['name']}",
                    client, f"{node['ip']}:{port['nodePort']}", expected,
                    _depends(node["name"], serving, dropped=local and not has_local), params)


def _depends(node: str, serving: list[Pod], dropped: bool) -> frozenset[str]:
    if dropped:
        return frozenset()  # a drop needs nothing to work
    parts = {f"nat:{node}"}
    for b in serving:
        parts |= {f"veth:{b['name']}", f"bridge:{b['node']}"}
        if b["node"] != node:
            parts |= {f"overlay:{node}", f"overlay:{b['node']}"}
    return frozenset(parts)
