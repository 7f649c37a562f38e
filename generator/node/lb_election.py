"""Which node announces each LoadBalancer IP (MetalLB's layer 2 election): one rule
that the node agents (who answers ARP) and the host (`kgen status`) both apply."""

from __future__ import annotations

import hashlib
from collections.abc import Set

from generator.node.contract import Cluster, PublishedPod, ServiceSpec, ready_pods, service_selects

#
# MetalLB's layer 2 mode: exactly one node answers ARP for each LoadBalancer IP. Every
# speaker ranks the candidate nodes by sha256(node + "#" + ip) and the first one
# announces; candidates are the live nodes, and with externalTrafficPolicy Local only
# those with a ready local endpoint; a service without any ready endpoint is not
# announced. Agents (who answers ARP) and the host (`kgen status`) apply this one rule.


def lb_announcer(ip: str, candidates: Set[str]) -> str | None:
    ranked = sorted(candidates, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest())
    return ranked[0] if ranked else None


def lb_announcers(cluster: Cluster, pods: list[PublishedPod], live: Set[str]
                  ) -> dict[str, str | None]:
    """Each LoadBalancer IP and the node that announces it (None: nobody may)."""
    ready = ready_pods(pods)
    out: dict[str, str | None] = {}
    for svc in cluster["services"]:
        ip = svc.get("loadBalancerIP")
        if svc.get("type") != "LoadBalancer" or not ip:
            continue
        nodes = {p["node"] for p in ready if service_selects(svc, p)}
        if svc.get("externalTrafficPolicy") == "Local":
            out[ip] = lb_announcer(ip, nodes & live)
        else:
            out[ip] = lb_announcer(ip, live) if nodes else None
    return out


def local_ready_endpoints(svc: ServiceSpec, pods: list[PublishedPod], node: str) -> int:
    """kube-proxy's LocalReadyEndpoints: the node's ready endpoints of a service, counted
    by IP (one pod serving two ports is one endpoint). What its health check reports."""
    return len({p["ip"] for p in ready_pods(pods)
                if p["node"] == node and service_selects(svc, p)})
