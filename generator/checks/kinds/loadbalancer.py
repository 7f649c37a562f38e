"""LoadBalancer: every client reaches a service's loadBalancerIP through the node announcing it.

The announcer is the one the running lab's status names (`announcedBy`: the node that
answers ARP for the IP, MetalLB's layer 2 rule, as the agents elected it): one source of
truth. Only without a status (a plan made from the cluster alone) is it reckoned here,
with `contract.lb_announcers` over every node live and every pod Running. Judged as a NodePort through that
node: externalTrafficPolicy Cluster spreads over every ready endpoint and the backend
sees an address of the announcer (SNAT); Local spreads over the announcer's own
endpoints and the backend sees the client's IP.

loadBalancerSourceRanges: a client outside every range must get no answer (kube-proxy's
firewall chain drops it: KUBE-FW ends in KUBE-MARK-DROP; nftables, its firewall
chain's drop). No answer within DROP_TIMEOUT (2 s) is called dropped. A lab round
trip takes about a millisecond, so an answer that comes at all comes well inside it:
the check fails only when something answered, never by a slow network (false-failure
probability 0).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from generator.checks.base import Planning, Pod, names, shown, svc_name
from generator.checks.kinds.nodeport import SNAT_DRAWS, NodePort, _depends
from generator.checks.stats import miss_probability, spread_requests
from generator.node.contract import ClientSpec, PublishedPod, ServiceSpec, namespace_of
from generator.node.lb_election import lb_announcers


class LoadBalancer(NodePort):
    kind = "loadbalancer"


def published(ctx: Planning) -> list[PublishedPod]:
    """The plan's pods as the proxies would see them, all Running (IPs stand in: one each)."""
    return [{"name": p["name"], "node": p["node"], "ip": f"planned:{p['name']}",
             "state": "Running", "labels": dict(p["labels"]), "namespace": namespace_of(p)}
            for p in ctx.cluster["pods"]]


def announcer(ctx: Planning, svc: ServiceSpec) -> str | None:
    """The node announcing the service's loadBalancerIP: the running lab's `announcedBy`;
    without a status, the election's pick with every node live."""
    listed = ctx.listed(svc)
    if listed is not None and listed.get("announcedBy"):
        return listed["announcedBy"]
    live = {n["name"] for n in ctx.cluster["nodes"]}
    owners = lb_announcers(ctx.cluster, published(ctx), live)
    return owners.get(svc.get("loadBalancerIP") or "")


def admitted(svc: ServiceSpec, client_ip: str) -> bool:
    """loadBalancerSourceRanges: no ranges admit everyone; else the client must be in one."""
    ranges = svc.get("loadBalancerSourceRanges") or []
    ip = ipaddress.ip_address(client_ip)
    return not ranges or any(ip in ipaddress.ip_network(r, strict=False) for r in ranges)


def plan(ctx: Planning, svc: ServiceSpec, backends: list[Pod]) -> list[LoadBalancer]:
    ip = svc.get("loadBalancerIP")
    node_name = announcer(ctx, svc)
    port = next((p for p in svc["ports"] if p["protocol"] == "TCP"), None)
    if svc["type"] != "LoadBalancer" or not ip or node_name is None or port is None:
        return []
    node = ctx.node[node_name]
    local = svc["externalTrafficPolicy"] == "Local"
    serving = [b for b in backends if b["node"] == node_name] if local else backends
    if not serving:
        return []  # its endpoints there run commands, not the test server: nothing to ask
    return [_from(svc, f"{ip}:{port['port']}", node, serving, client)
            for client in ctx.cluster["clients"]]


def _from(svc: ServiceSpec, target: str, node: Any, serving: list[Pod],
          client: ClientSpec) -> LoadBalancer:
    policy = svc["externalTrafficPolicy"]
    label = f"{svc_name(svc)} {target} from {client['name']}"
    what = f"LoadBalancer {svc_name(svc)} ({policy}) from {client['name']}, announced by {node['name']}"
    if not admitted(svc, client["ip"]):
        return LoadBalancer(label, what, client["name"], target,
                            f"dropped ({client['ip']} is outside loadBalancerSourceRanges)",
                            frozenset(), {"drop": True, "false_failure": 0.0})
    requests = spread_requests(len(serving))
    seen = (f"backend sees the client's IP {client['ip']}" if policy == "Local"
            else f"backend sees an address of {node['name']}, not the client")
    where = " locally" if policy == "Local" else ""
    expected = (f"{serving[0]['name']} serves{where}; {seen}" if len(serving) == 1 else
                f"{shown(names(serving))} all serve{where} (≤ {requests} requests); {seen}")
    params: dict[str, Any] = {
        "policy": policy, "node": node, "drop": False, "client_ip": client["ip"],
        "requests": requests, "draws": SNAT_DRAWS, "backends": names(serving),
        "false_failure": miss_probability(len(serving), requests)}
    return LoadBalancer(label, what, client["name"], target, expected,
                        _depends(node["name"], serving, dropped=False), params)
