"""ClusterIP: a pod reaches a service's cluster IP and every backend answers in turn.

From a node with a backend and from one without. A spreading service sends up
to `spread_requests(n)` requests (stats.py), stopping once all n backends
answered; a ClientIP-affinity service is answered by one of them. A second
request asks /clientip: the backend must see the pod's own IP (no SNAT), or,
when the source is itself a backend that drew itself, its node's gateway
(kube-proxy's hairpin masquerade). With internalTrafficPolicy Local, a pod on
a node without a backend is dropped (kube-proxy: "has no local endpoints").
"""

from __future__ import annotations

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
from generator.node.contract import ServicePortSpec, ServiceSpec
from generator.node.documents import ProbeJob, ProbeSummary


class ClusterIP(ProbeCheck):
    kind = "clusterip"

    def jobs(self, lab: LabView) -> list[ProbeJob]:
        p = self.params
        if p.get("drop"):
            return [drop_job(lab, self.source, self.target)]
        return [job(lab, self.source, "http", self.target, "/hostname", p["requests"],
                    until=p["backends"] if p["spread"] else None),
                job(lab, self.source, "http", self.target, "/clientip")]

    def judge(self, lab: LabView, summaries: list[ProbeSummary]) -> Outcome:
        p = self.params
        if p.get("drop"):
            return judge_dropped(summaries[0])
        draws, peer = summaries
        backends = set(p["backends"])
        own = {lab.pod_ip[self.source], p.get("hairpin_gateway")}
        seen_ip = next(iter(peer_ips(peer)), "?")
        ok = (all_ok(draws) and answers(draws) <= backends
              and (not p["spread"] or answers(draws) == backends)
              and all_ok(peer) and seen_ip in own)
        return Outcome(ok, f"{describe(draws)}; backend saw {seen_ip}"
                       + ("" if all_ok(peer) else f" ({describe(peer)})"))


def target(svc: ServiceSpec, port: ServicePortSpec) -> str:
    return f"{svc['clusterIP']}:{port['port']}"


def label(svc: ServiceSpec, port: ServicePortSpec, source: Pod) -> str:
    return f"{svc_name(svc)}:{port['port']} from {source['name']}"


def plan(ctx: Planning, svc: ServiceSpec, port: ServicePortSpec, source: Pod,
         backends: list[Pod]) -> ClusterIP:
    """The check from `source`, which reaches `backends` (none: it must be dropped)."""
    if not backends:
        return _no_local_endpoint(svc, port, source)
    where = "with" if source["node"] in {b["node"] for b in backends} else "without"
    sticky = svc["sessionAffinity"] == "ClientIP"
    requests = 1 if sticky else spread_requests(len(backends))
    params: dict[str, Any] = {
        "backends": names(backends), "service": svc["name"], "requests": requests,
        "spread": not sticky,
        "false_failure": 0.0 if sticky else miss_probability(len(backends), requests),
        # A backend that draws itself is masqueraded to its node (hairpin).
        "hairpin_gateway": ctx.node[source["node"]]["gateway"]
        if source["name"] in names(backends) else None}
    spread = f"spreads over {shown(names(backends))} (≤ {requests} requests)"
    if sticky:
        spread = "answered by one of " + shown(names(backends))
    if not any(b in ctx.servers for b in backends):  # kube-proxy's CategorizeEndpoints
        spread += " (terminating: the fallback, no endpoint is ready)"
    return ClusterIP(label(svc, port, source),
                     f"ClusterIP {svc_name(svc)} from a node {where} a backend", source["name"],
                     target(svc, port), f"{spread}; backend sees the pod's own IP",
                     ctx.service_path(source, backends), params)


def _no_local_endpoint(svc: ServiceSpec, port: ServicePortSpec, source: Pod) -> ClusterIP:
    # kube-proxy's KUBE-SVL chain (nftables: the service chain) drops it: "has no local endpoints".
    return ClusterIP(label(svc, port, source),
                     f"ClusterIP {svc_name(svc)} (internalTrafficPolicy Local) from a node without "
                     "a backend", source["name"], target(svc, port), "dropped (no local endpoint)",
                     frozenset(), {"drop": True})
