"""Which checks a lab gets: derived from its cluster state, so any lab fits.

Each kind plans its own checks (`generator.checks.kinds`); this module puts
them in the order the table shows them: pod to pod, the wire and the MTU,
then service by service. What each service gets:

- a ClusterIP check from a pod on a node without backends and from one on a
  node with one (internalTrafficPolicy Local: a source with no backend on its
  node must be dropped), and one conntrack check per lab;
- one UDP check per UDP port; affinity for ClientIP services, else a hairpin
  check (with affinity a pod may be pinned to another backend);
- a NodePort check through every node (LoadBalancer services too), and (iptables
  mode) one of every node's 127.0.0.1:<nodePort>; a service without backends: refused;
- LoadBalancer: its IP from every client, and its health check on every node;
  externalIPs: each routed by the client via a node.

Last, with the lab's DNS: every service's names from one pod per namespace and node,
an outside name refused, one SRV record (kinds/dns.py).

Who may answer, from each node, is what that node's proxy decides (answerers.py:
CategorizeEndpoints with topology): ready endpoints, else serving terminating
ones (from `status`), filtered to the zone or node by trafficDistribution.
"""

from __future__ import annotations

from generator.checks.answerers import Answerers, terminating_pods
from generator.checks.base import Check, Planning, Pod
from generator.checks.kinds import (
    affinity,
    clusterip,
    clusterip_udp,
    conntrack,
    dns,
    external_ip,
    hairpin,
    lb_health,
    loadbalancer,
    localhost_nodeport,
    mtu,
    netpol,
    netpol_nodeport,
    no_endpoints,
    nodeport,
    pod_to_pod,
    wire,
)
from generator.node.contract import Cluster, ServicePortSpec, ServiceSpec, namespace_of
from generator.node.documents import StatusReport


def plan(cluster: Cluster, status: StatusReport | None = None) -> list[Check]:
    """The lab's checks; `status` (as `kgen status --json`) adds its Terminating pods."""
    ctx = Planning(cluster, status)
    checks: list[Check] = [*pod_to_pod.plan(ctx), *wire.plan(ctx), *mtu.plan(ctx),
                           *netpol.plan(ctx)]
    terminating = terminating_pods(status)
    for svc in cluster["services"]:
        if svc["clusterIP"] != "None":  # headless: nothing of kube-proxy's to check
            checks += service(ctx, svc, terminating.get((namespace_of(svc), svc["name"]), []))
    return checks + dns.plan(ctx)


def service(ctx: Planning, svc: ServiceSpec, terminating: list[Pod] | None = None) -> list[Check]:
    answerers = Answerers(ctx, svc, svc["ports"][0], terminating or [])
    if not answerers.any:
        return list(no_endpoints.plan(ctx, svc))
    backends = list(answerers.pods.values())

    def reached(source: Pod) -> list[Pod]:
        """Who answers a pod on the source's node: its proxy's CategorizeEndpoints."""
        return answerers.internal(source["node"])

    checks: list[Check] = []
    tcp = next((p for p in svc["ports"] if p["protocol"] == "TCP"), None)
    sources = [s for s in _sources(ctx, backends) if tcp is None or _allowed(ctx, s, reached(s), tcp)]
    for source in sources:
        if tcp is None:
            break
        check = clusterip.plan(ctx, svc, tcp, source, reached(source))
        checks.append(check)
        away = source["node"] not in {b["node"] for b in backends}
        if away and reached(source) and not ctx.conntrack_planned:
            ctx.conntrack_planned = True  # one DNAT entry shows it; one check per lab
            checks.append(conntrack.plan(check, source["node"]))
    served = [s for s in _sources(ctx, backends) if reached(s)]
    for udp in (p for p in svc["ports"] if p["protocol"] == "UDP") if served else []:
        allowed = [s for s in served if _allowed(ctx, s, reached(s), udp)]
        if allowed:
            checks.append(clusterip_udp.plan(ctx, svc, udp, allowed[0], reached(allowed[0])))
    served = [s for s in sources if reached(s)]
    if tcp and served and svc["sessionAffinity"] == "ClientIP":
        checks.append(affinity.plan(ctx, svc, tcp, served[0], reached(served[0])))
    elif (tcp and backends[0] in ctx.servers  # a terminating pod sends nothing new
          and _allowed(ctx, backends[0], reached(backends[0]), tcp)):
        checks.append(hairpin.plan(ctx, svc, tcp, reached(backends[0])))
    if not ctx.open_to_outside(backends, svc["ports"][0]["targetPort"], svc["ports"][0]["protocol"]):
        # NetworkPolicy keeps some client or node out: the netpol kinds' matter
        if svc["type"] in ("NodePort", "LoadBalancer"):
            checks += netpol_nodeport.plan(ctx, svc, answerers.external)
        return checks
    if svc["type"] in ("NodePort", "LoadBalancer"):
        checks += nodeport.plan(ctx, svc, backends, answerers.external)
        for node in ctx.cluster["nodes"]:  # the node's own traffic: Cluster endpoints
            checks += localhost_nodeport.plan(svc, node, ctx.cluster["proxyMode"],
                                              answerers.cluster(node["name"]))
    checks += [*loadbalancer.plan(ctx, svc, backends), *lb_health.plan(ctx, svc),
               *external_ip.plan(ctx, svc, backends)]
    return checks


def _allowed(ctx: Planning, source: Pod, backends: list[Pod], port: ServicePortSpec) -> bool:
    """Whether NetworkPolicy lets `source` reach every backend it may be sent to (policies
    see the connection after the service's DNAT: the backend's target port)."""
    return all(ctx.allows(source, b, port["targetPort"], port["protocol"]) for b in backends)


def _sources(ctx: Planning, backends: list[Pod]) -> list[Pod]:
    """A client pod on a node without backends, and one on a node with one."""
    backend_nodes = {b["node"] for b in backends}
    names = {b["name"] for b in backends}
    away = [p for p in ctx.servers if p["node"] not in backend_nodes]
    near = [p for p in ctx.servers if p["node"] in backend_nodes and p["name"] not in names]
    near = near or [b for b in backends if len(backends) > 1 and b in ctx.servers]
    return [group[0] for group in (away, near) if group]
