"""What hovering an element of `kgen graph --format html` shows, keyed by element id."""

from __future__ import annotations

from generator.graph.boxes import POOL_ID, address_id, client_id, dev_id, pod_id
from generator.graph.picture import Picture


def details(picture: Picture) -> dict[str, dict[str, str]]:
    """Element id -> ordered rows of plain strings."""
    out: dict[str, dict[str, str]] = {}
    _machines(picture, out)
    for c in picture.clients:
        out[client_id(c.name)] = {"client": c.name, "container": c.container, "IP": c.ip,
                                  "network": picture.node_network}
        if c.host is not None:
            out[client_id(c.name)]["host"] = c.host
    for h in picture.hosts:
        nodes, clients = picture.on_host(h)
        out[h.id] = {"host": h.name, "Docker engine": h.docker,
                     "nodes": ", ".join(n.name for n in nodes) or "none",
                     "clients": ", ".join(c.name for c in clients) or "none",
                     "node network": picture.network_lines()[1]}
    for s in picture.services:
        info = {"service": s.name, "namespace": s.namespace, "type": s.type,
                "cluster IP": s.cluster_ip, "ports": "; ".join(p.text() for p in s.ports),
                "selector": ", ".join(f"{k}={v}" for k, v in s.selector.items()) or "none",
                "endpoints": ", ".join(s.endpoints) or "none"}
        if s.dns:
            info["role"] = "the cluster DNS (its pods answer on 53/UDP and 53/TCP)"
        for line in s.policy_lines():
            key, _, value = line.partition(" ")
            info[key] = value
        out[s.id] = info
    if picture.load_balancer_pool and any(a.kind == "loadBalancerIP" for a in picture.addresses):
        out[POOL_ID] = {"loadBalancerPool": picture.pool_range() or "",
                        "network": picture.node_network,
                        "announced as": "MetalLB layer 2: one Ready node answers ARP per IP",
                        "in use": ", ".join(a.ip for a in picture.addresses
                                            if a.kind == "loadBalancerIP")}
    for a in picture.addresses:
        out[address_id(a.ip)] = {a.kind: a.ip, "service": a.service_name,
                                 "announced by": a.announced_by or "nobody", "why": a.note}
    return out


def _machines(picture: Picture, out: dict[str, dict[str, str]]) -> None:
    for n in picture.nodes:
        out[dev_id(n.name, "eth0")] = {
            "node": n.name, "container": n.container, "node IP": n.ip, "state": n.state,
            "pod subnet": n.pod_cidr}
        if n.host is not None:
            out[dev_id(n.name, "eth0")]["host"] = n.host
        announced = [a.ip for a in picture.addresses if a.announced_by == n.name]
        if announced:
            out[dev_id(n.name, "eth0")]["answers ARP for"] = ", ".join(announced)
        out[dev_id(n.name, "cbr0")] = {
            "bridge": "cbr0", "node": n.name, "address": f"{n.gateway}/{n.pod_cidr.split('/')[1]}",
            "pods": ", ".join(p.name for p in n.pods) or "none"}
        if picture.backend == "vxlan":
            out[dev_id(n.name, "overlay")] = {
                "VXLAN device": picture.vxlan_device, "node": n.name, "VNI": str(picture.vni),
                "UDP port": str(picture.vxlan_port), "VTEP address": n.vtep,
                "underlay": n.ip}
        else:
            out[dev_id(n.name, "overlay")] = {
                "host-gw routes": n.name,
                **{o.pod_cidr: f"via {o.ip}" for o in picture.nodes if o.name != n.name}}
        for p in n.pods:
            served = [s.ref for s in picture.services if p.name in s.endpoint_pods]
            out[pod_id(p.name)] = {
                "pod": p.name, "namespace": p.namespace, "node": p.node,
                "IP": (p.ip or "(none yet)") + (" (as IPAM hands it out)" if p.state == "Desired" else ""),
                "state": "not running (drawn from the lab file)" if p.state == "Desired" else p.state,
                "labels": ", ".join(f"{k}={v}" for k, v in p.labels.items()) or "none",
                "containers": ", ".join(p.containers), "endpoint of": ", ".join(served) or "none"}
            if p.dns:
                out[pod_id(p.name)]["role"] = "a cluster DNS pod (behind kube-dns)"
