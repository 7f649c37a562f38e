"""Which checks a lab gets: derived from its cluster state, so any lab fits.

Each kind plans its own checks (`generator.checks.kinds`); this module puts
them in the order the table shows them: pod to pod, the wire and the MTU,
then service by service. What each service gets:

- a ClusterIP check from a pod on a node without backends and from one on a
  node with one (internalTrafficPolicy Local: a source with no backend on its
  node must be dropped), and one conntrack check per lab;
- one UDP check per UDP port; affinity for ClientIP services, else a hairpin
  check (with affinity a pod may be pinned to another backend);
- a NodePort check through every node (LoadBalancer services too); a service
  without backends: refused;
- LoadBalancer: its IP from every client, and its health check on every node;
  externalIPs: each routed by the client via a node.
"""

from __future__ import annotations

from generator.checks.base import Check, Planning, Pod
from generator.checks.kinds import (
    affinity,
    clusterip,
    clusterip_udp,
    conntrack,
    external_ip,
    hairpin,
    lb_health,
    loadbalancer,
    mtu,
    no_endpoints,
    nodeport,
    pod_to_pod,
    wire,
)
from generator.node.contract import Cluster, ServiceSpec, service_selects


def plan(cluster: Cluster) -> list[Check]:
    ctx = Planning(cluster)
    checks: list[Check] = [*pod_to_pod.plan(ctx), *wire.plan(ctx), *mtu.plan(ctx)]
    for svc in cluster["services"]:
        if svc["clusterIP"] != "None":  # headless: nothing of kube-proxy's to check
            checks += service(ctx, svc)
    return checks


def service(ctx: Planning, svc: ServiceSpec) -> list[Check]:
    backends = [p for p in ctx.servers if service_selects(svc, p)]
    if not backends:
        return list(no_endpoints.plan(ctx, svc))

    def reached(source: Pod) -> list[Pod]:
        """internalTrafficPolicy Local: a pod reaches only its own node's endpoints."""
        if svc.get("internalTrafficPolicy") != "Local":
            return backends
        return [b for b in backends if b["node"] == source["node"]]

    checks: list[Check] = []
    tcp = next((p for p in svc["ports"] if p["protocol"] == "TCP"), None)
    sources = _sources(ctx, backends)
    for source in sources:
        if tcp is None:
            break
        check = clusterip.plan(ctx, svc, tcp, source, reached(source))
        checks.append(check)
        away = source["node"] not in {b["node"] for b in backends}
        if away and reached(source) and not ctx.conntrack_planned:
            ctx.conntrack_planned = True  # one DNAT entry shows it; one check per lab
            checks.append(conntrack.plan(check, source["node"]))
    served = [s for s in sources if reached(s)]
    for udp in (p for p in svc["ports"] if p["protocol"] == "UDP") if served else []:
        checks.append(clusterip_udp.plan(ctx, svc, udp, served[0], reached(served[0])))
    if tcp and served and svc["sessionAffinity"] == "ClientIP":
        checks.append(affinity.plan(ctx, svc, tcp, served[0], reached(served[0])))
    elif tcp:
        checks.append(hairpin.plan(ctx, svc, tcp, reached(backends[0])))
    if svc["type"] in ("NodePort", "LoadBalancer"):
        checks += nodeport.plan(ctx, svc, backends)
    checks += [*loadbalancer.plan(ctx, svc, backends), *lb_health.plan(ctx, svc),
               *external_ip.plan(ctx, svc, backends)]
    return checks


def _sources(ctx: Planning, backends: list[Pod]) -> list[Pod]:
    """A client pod on a node without backends, and one on a node with one."""
    backend_nodes = {b["node"] for b in backends}
    names = {b["name"] for b in backends}
    away = [p for p in ctx.servers if p["node"] not in backend_nodes]
    near = [p for p in ctx.servers if p["node"] in backend_nodes and p["name"] not in names]
    near = near or [b for b in backends if len(backends) > 1]
    return [group[0] for group in (away, near) if group]
