"""The picture of a lab, before any drawing: what `kgen graph` shows (docs/reference.md, `kgen graph`).

Built from the cluster state (`config/cluster.json`, or the state computed from
the lab file) and, when the lab runs, from a `kgen status --json` report that
brings the live pod IPs, states and endpoints. Every renderer (dot/svg/png,
html, mermaid) draws this one model, so they show the same lab.

From the lab file alone, pod IPs are the ones host-local IPAM hands out on a
fresh node: the pods of each node in lab-file order, from the second address
of the node's pod subnet (the first is cbr0's). The picture says which source
it was drawn from.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from generator.node.contract import Cluster, selects
from generator.node.documents import StatusReport

# Element ids: one namespace shared by every renderer and the trace overlay. Names are DNS
# labels ([a-z0-9-]), so '_' separates unambiguously and the ids are valid XML names.


def pod_id(name: str) -> str:
    return f"pod_{name}"


def client_id(name: str) -> str:
    return f"client_{name}"


def service_id(name: str) -> str:
    return f"service_{name}"


def dev_id(node: str, device: str) -> str:
    """A device of a node: eth0, cbr0, or the overlay ('overlay': VXLAN device or host-gw routes)."""
    return f"node_{node}_{device}"


UNDERLAY_ID = "underlay"


@dataclass(frozen=True)
class PodBox:
    name: str
    node: str
    ip: str | None
    state: str
    labels: dict[str, str]
    containers: list[str]


@dataclass(frozen=True)
class NodeBox:
    name: str
    container: str
    ip: str
    pod_cidr: str
    gateway: str
    vtep: str
    state: str
    pods: list[PodBox]


@dataclass(frozen=True)
class ClientBox:
    name: str
    container: str
    ip: str


@dataclass(frozen=True)
class PortLine:
    name: str
    port: int
    target_port: int
    protocol: str
    node_port: int | None

    def text(self) -> str:
        words = f"{self.port}/{self.protocol} → {self.target_port}"
        if self.node_port is not None:
            words += f", nodePort {self.node_port}"
        return f"{self.name}: {words}" if self.name else words


@dataclass(frozen=True)
class ServiceBox:
    name: str
    type: str
    cluster_ip: str
    ports: list[PortLine]
    selector: dict[str, str]
    external_traffic_policy: str
    internal_traffic_policy: str
    session_affinity: str
    endpoints: list[str]          # "ip:port" as `kgen status` lists them
    endpoint_pods: list[str]      # the pods behind them, by name, in lab order


@dataclass(frozen=True)
class Picture:
    name: str
    source: str                   # "lab file" or "running lab"
    proxy_mode: str               # iptables or nftables
    backend: str
    vni: int
    vxlan_port: int
    vxlan_device: str
    node_network: str
    pod_cidr: str
    service_cidr: str
    nodes: list[NodeBox]
    clients: list[ClientBox]
    services: list[ServiceBox]
    pods_by_ip: dict[str, str] = field(default_factory=dict)

    def pod(self, name: str) -> PodBox | None:
        return next((p for n in self.nodes for p in n.pods if p.name == name), None)

    def node(self, name: str) -> NodeBox | None:
        return next((n for n in self.nodes if n.name == name), None)

    def client(self, name: str) -> ClientBox | None:
        return next((c for c in self.clients if c.name == name), None)

    def overlay_text(self) -> str:
        if self.backend == "vxlan":
            return f"VXLAN VNI {self.vni}, UDP {self.vxlan_port}"
        return "host-gw: routes via node IPs"

    def owner_of_ip(self, ip: str) -> str | None:
        """The element id that holds an address: a pod, a node's eth0 or cbr0, a client, a service."""
        if ip in self.pods_by_ip:
            return pod_id(self.pods_by_ip[ip])
        for n in self.nodes:
            if ip == n.ip:
                return dev_id(n.name, "eth0")
            if ip == n.gateway:
                return dev_id(n.name, "cbr0")
            if ip == n.vtep:
                return dev_id(n.name, "overlay")
        for c in self.clients:
            if ip == c.ip:
                return client_id(c.name)
        for s in self.services:
            if ip == s.cluster_ip:
                return service_id(s.name)
        return None

    def node_of_ip(self, ip: str) -> str | None:
        """The node whose pod subnet holds the address."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        for n in self.nodes:
            if address in ipaddress.ip_network(n.pod_cidr):
                return n.name
        return None


def expected_pod_ips(cluster: Cluster) -> dict[str, str]:
    """The IPs host-local IPAM gives a fresh node's pods: lab order, from .2 of the subnet."""
    ips: dict[str, str] = {}
    for node in cluster["nodes"]:
        hosts = ipaddress.ip_network(node["podCIDR"]).hosts()
        next(hosts)  # the gateway, cbr0's address
        for pod in cluster["pods"]:
            if pod["node"] == node["name"]:
                ips[pod["name"]] = str(next(hosts))
    return ips


def from_cluster(cluster: Cluster, report: StatusReport | None = None) -> Picture:
    """The picture of a cluster state; with a `kgen status --json` report, the live one."""
    pods = _pods(cluster, report)
    by_ip = {p.ip: p.name for p in pods if p.ip}
    clients = [ClientBox(c["name"], c["container"], c["ip"]) for c in cluster["clients"]]
    vxlan = cluster.get("vxlan") or {"vni": 1, "port": 4789, "device": "kgen.1"}
    return Picture(
        name=cluster["name"], source="running lab" if report is not None else "lab file",
        proxy_mode=cluster.get("proxyMode", "iptables"),
        backend=cluster.get("backend", "vxlan"), vni=int(vxlan.get("vni", 1)),
        vxlan_port=int(vxlan.get("port", 4789)),
        vxlan_device=str(vxlan.get("device", f"kgen.{vxlan.get('vni', 1)}")),
        node_network=cluster["nodeNetwork"], pod_cidr=cluster["podCIDR"],
        service_cidr=cluster["serviceCIDR"], nodes=_nodes(cluster, report, pods), clients=clients,
        services=_services(cluster, report, pods, by_ip), pods_by_ip=by_ip)


def _pods(cluster: Cluster, report: StatusReport | None) -> list[PodBox]:
    """Live: the report's IPs and states; from the lab file: IPAM's IPs, state Desired."""
    seen_pods = {p["name"]: p for p in report["pods"]} if report else {}
    expected = expected_pod_ips(cluster)
    pods: list[PodBox] = []
    for spec in cluster["pods"]:
        seen = seen_pods.get(spec["name"])
        if seen is not None:
            ip, state = seen.get("ip"), seen.get("state") or "Unknown"
        else:
            ip = None if report else expected.get(spec["name"])
            state = "Unknown" if report else "Desired"
        pods.append(PodBox(spec["name"], spec["node"], ip, state, dict(spec.get("labels") or {}),
                           [c["name"] for c in spec.get("containers") or []]))
    return pods


def _nodes(cluster: Cluster, report: StatusReport | None, pods: list[PodBox]) -> list[NodeBox]:
    seen_nodes = {n["name"]: n for n in report["nodes"]} if report else {}
    nodes = []
    for n in cluster["nodes"]:
        seen = seen_nodes.get(n["name"])
        state = (seen["state"] if seen else "Unknown") if report else "Desired"
        nodes.append(NodeBox(n["name"], n["container"], seen["ip"] if seen else n["ip"],
                             n["podCIDR"], n["gateway"],
                             n.get("vtep", ipaddress.ip_network(n["podCIDR"]).network_address.compressed),
                             state, [p for p in pods if p.node == n["name"]]))
    return nodes


def _services(cluster: Cluster, report: StatusReport | None, pods: list[PodBox],
              by_ip: dict[str, str]) -> list[ServiceBox]:
    """Live: the report's endpoints; from the lab file: the pods the selector picks."""
    seen_services = {s["name"]: s for s in report["services"]} if report else {}
    services = []
    for s in cluster["services"]:
        seen = seen_services.get(s["name"])
        ports = [PortLine(p.get("name") or "", p["port"], p["targetPort"], p["protocol"],
                          p.get("nodePort")) for p in (seen["ports"] if seen else s["ports"])]
        if seen is not None:
            endpoints = list(seen.get("endpoints") or [])
            behind = {by_ip.get(e.rsplit(":", 1)[0]) for e in endpoints}
            endpoint_pods = [p.name for p in pods if p.name in behind]
        elif report is not None:
            endpoints, endpoint_pods = [], []
        else:
            chosen = [p for p in pods if selects(s.get("selector") or {}, p.labels) and p.ip]
            endpoint_pods = [p.name for p in chosen]
            endpoints = sorted({f"{p.ip}:{port.target_port}" for p in chosen for port in ports},
                               key=_endpoint_key)
        services.append(ServiceBox(
            s["name"], s["type"], seen["clusterIP"] if seen else s["clusterIP"], ports,
            dict(s.get("selector") or {}), s.get("externalTrafficPolicy", "Cluster"),
            s.get("internalTrafficPolicy", "Cluster"), s.get("sessionAffinity", "None"),
            endpoints, endpoint_pods))
    return services


def _endpoint_key(endpoint: str) -> tuple[int, int]:
    ip, _, port = endpoint.rpartition(":")
    return int(ipaddress.ip_address(ip)), int(port)


def details(picture: Picture) -> dict[str, dict[str, str]]:
    """What hovering an element shows (html), keyed by element id; ordered, plain strings."""
    out: dict[str, dict[str, str]] = {}
    for n in picture.nodes:
        out[dev_id(n.name, "eth0")] = {
            "node": n.name, "container": n.container, "node IP": n.ip, "state": n.state,
            "pod subnet": n.pod_cidr}
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
            served = [s.name for s in picture.services if p.name in s.endpoint_pods]
            out[pod_id(p.name)] = {
                "pod": p.name, "node": p.node,
                "IP": (p.ip or "(none yet)") + (" (as IPAM hands it out)" if p.state == "Desired" else ""),
                "state": "not running (drawn from the lab file)" if p.state == "Desired" else p.state,
                "labels": ", ".join(f"{k}={v}" for k, v in p.labels.items()) or "none",
                "containers": ", ".join(p.containers), "endpoint of": ", ".join(served) or "none"}
    for c in picture.clients:
        out[client_id(c.name)] = {"client": c.name, "container": c.container, "IP": c.ip,
                                  "network": picture.node_network}
    for s in picture.services:
        info = {"service": s.name, "type": s.type, "cluster IP": s.cluster_ip,
                "ports": "; ".join(p.text() for p in s.ports),
                "selector": ", ".join(f"{k}={v}" for k, v in s.selector.items()) or "none",
                "endpoints": ", ".join(s.endpoints) or "none"}
        if s.type == "NodePort":
            info["externalTrafficPolicy"] = s.external_traffic_policy
        if s.internal_traffic_policy != "Cluster":
            info["internalTrafficPolicy"] = s.internal_traffic_policy
        if s.session_affinity != "None":
            info["sessionAffinity"] = s.session_affinity
        out[service_id(s.name)] = info
    return out
