"""The picture of a lab, before any drawing: what `kgen graph` shows (docs/reference.md, `kgen graph`).

Built from the cluster state (`config/cluster.json`, or the state computed from
the lab file) and, when the lab runs, from a `kgen status --json` report that
brings the live pod IPs, states and endpoints. Every renderer (dot/svg/png,
html, mermaid) draws this one model, so they show the same lab.

From the lab file alone, pod IPs are the ones host-local IPAM hands out on a
fresh node: the pods of each node in lab-file order, from the second address
of the node's pod subnet (the first is cbr0's), and each LoadBalancer IP's
announcer is the one the node agents' election (node/lb_election.py) picks
once every node and pod is Ready. The picture says which source it was drawn
from.

Pods and services carry their namespace; the cluster DNS's pods (coredns-<n>)
and its service (kube-dns, both in kube-system) are pods and a service like
the others, flagged `dns` so that renderers can make them recognisable.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from generator.graph.boxes import (
    METADATA_NAME,
    POOL_ID,
    UNDERLAY_ID,
    AddressBox,
    ClientBox,
    HostBox,
    NamespaceBox,
    NodeBox,
    PodBox,
    PortLine,
    ServiceBox,
    address_id,
    client_id,
    dev_id,
    host_id,
    pod_id,
    service_id,
    service_ref,
)
from generator.node.contract import (
    DEFAULT_NAMESPACE,
    DNS_NAMESPACE,
    DNS_SERVICE,
    Cluster,
    PublishedPod,
    namespace_of,
    service_selects,
)
from generator.node.documents import ServiceRow, StatusReport
from generator.node.lb_election import lb_announcers

# The elements are boxes.py's; they are named from here too, as before it existed.
__all__ = ["POOL_ID", "UNDERLAY_ID", "AddressBox", "ClientBox", "HostBox", "NamespaceBox",
           "NodeBox", "Picture", "PodBox", "PortLine", "ServiceBox", "address_id", "client_id",
           "dev_id", "expected_pod_ips", "from_cluster", "host_id", "pod_id", "service_id",
           "service_ref"]


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
    namespaces: list[NamespaceBox] = field(default_factory=list)
    load_balancer_pool: str | None = None
    addresses: list[AddressBox] = field(default_factory=list)
    hosts: list[HostBox] = field(default_factory=list)   # empty: one engine, no frames

    def network_lines(self) -> list[str]:
        """The node network's label: a Docker bridge on one engine, the swarm's overlay
        network spanning the hosts on several (lab contract section 11)."""
        if not self.hosts:
            return [f"node network {self.node_network}",
                    "Docker bridge, internal: nothing leaves the lab"]
        # The name is cluster/names.network_name's (graph may not import it; a test holds them equal).
        return [f"node network {self.node_network}",
                f"overlay kgen-{self.name}, swarm: internal, spans hosts "
                + ", ".join(h.name for h in self.hosts)]

    def on_host(self, host: HostBox) -> tuple[list[NodeBox], list[ClientBox]]:
        """The nodes and clients that run on a host, in lab order."""
        return ([n for n in self.nodes if n.host == host.name],
                [c for c in self.clients if c.host == host.name])

    def pods(self) -> list[PodBox]:
        return [p for n in self.nodes for p in n.pods]

    def service(self, name: str) -> ServiceBox | None:
        """A service by `NAME` (default namespace), `NAME.NAMESPACE`, `NAMESPACE/NAME` or its
        name in the cluster domain (`NAME.NAMESPACE.svc.<domain>`)."""
        if "/" in name:
            namespace, _, name = name.partition("/")
        else:
            name, _, rest = name.partition(".")
            namespace = rest.split(".")[0] or DEFAULT_NAMESPACE
        return next((s for s in self.services if (s.name, s.namespace) == (name, namespace)), None)

    def pool_range(self) -> str | None:
        """The pool as the addresses it holds: `172.31.0.224/28 (.224–.239)`."""
        if self.load_balancer_pool is None:
            return None
        pool = ipaddress.ip_network(self.load_balancer_pool, strict=False)
        first, last = pool[0], pool[-1]
        return f"{self.load_balancer_pool} (.{str(first).rsplit('.', 1)[1]}–.{str(last).rsplit('.', 1)[1]})"

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
                return s.id
        for a in self.addresses:
            if ip == a.ip:
                return address_id(ip)
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
    clients = [ClientBox(c["name"], c["container"], c["ip"], c.get("host"))
               for c in cluster["clients"]]
    vxlan = cluster.get("vxlan") or {"vni": 1, "port": 4789, "device": "kgen.1"}
    services = _services(cluster, report, pods, by_ip)
    return Picture(
        name=cluster["name"], source="running lab" if report is not None else "lab file",
        proxy_mode=cluster.get("proxyMode", "iptables"),
        backend=cluster.get("backend", "vxlan"), vni=int(vxlan.get("vni", 1)),
        vxlan_port=int(vxlan.get("port", 4789)),
        vxlan_device=str(vxlan.get("device", f"kgen.{vxlan.get('vni', 1)}")),
        node_network=cluster["nodeNetwork"], pod_cidr=cluster["podCIDR"],
        service_cidr=cluster["serviceCIDR"], nodes=_nodes(cluster, report, pods), clients=clients,
        services=services, pods_by_ip=by_ip, namespaces=_namespaces(cluster, pods, services),
        load_balancer_pool=cluster.get("loadBalancerPool"),
        addresses=_addresses(cluster, report, pods, services),
        hosts=[HostBox(h["name"], h["docker"]) for h in cluster.get("hosts") or []])


def _dns_on(cluster: Cluster) -> bool:
    dns = cluster.get("dns")
    return bool(dns and dns.get("enabled"))


def _is_dns_service(cluster: Cluster, spec: dict[str, object]) -> bool:
    return _dns_on(cluster) and spec["name"] == DNS_SERVICE and namespace_of(spec) == DNS_NAMESPACE


def _pods(cluster: Cluster, report: StatusReport | None) -> list[PodBox]:
    """Live: the report's IPs and states; from the lab file: IPAM's IPs, state Desired."""
    seen_pods = {p["name"]: p for p in report["pods"]} if report else {}
    expected = expected_pod_ips(cluster)
    dns = next((s for s in cluster["services"]
                if _is_dns_service(cluster, dict(s))), None)
    pods: list[PodBox] = []
    for spec in cluster["pods"]:
        seen = seen_pods.get(spec["name"])
        if seen is not None:
            ip, state = seen.get("ip"), seen.get("state") or "Unknown"
        else:
            ip = None if report else expected.get(spec["name"])
            state = "Unknown" if report else "Desired"
        pods.append(PodBox(spec["name"], spec["node"], ip, state, dict(spec.get("labels") or {}),
                           [c["name"] for c in spec.get("containers") or []],
                           namespace_of(spec), dns is not None and service_selects(dns, spec)))
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
                             state, [p for p in pods if p.node == n["name"]], n.get("host")))
    return nodes


def _namespaces(cluster: Cluster, pods: list[PodBox],
                services: list[ServiceBox]) -> list[NamespaceBox]:
    """The lab's namespaces in its order, and any a pod or service names (default, too)."""
    found = {ns["name"]: {k: v for k, v in (ns.get("labels") or {}).items() if k != METADATA_NAME}
             for ns in cluster.get("namespaces") or []}
    for name in [DEFAULT_NAMESPACE, *(p.namespace for p in pods), *(s.namespace for s in services)]:
        found.setdefault(name, {})
    return [NamespaceBox(name, labels) for name, labels in found.items()]


def _services(cluster: Cluster, report: StatusReport | None, pods: list[PodBox],
              by_ip: dict[str, str]) -> list[ServiceBox]:
    """Live: the report's endpoints; from the lab file: the pods the selector picks."""
    seen_services = {(s["name"], s.get("namespace") or DEFAULT_NAMESPACE): s
                     for s in report["services"]} if report else {}
    services = []
    for s in cluster["services"]:
        seen = seen_services.get((s["name"], namespace_of(s)))
        ports = [PortLine(p.get("name") or "", p["port"], p["targetPort"], p["protocol"],
                          p.get("nodePort")) for p in (seen["ports"] if seen else s["ports"])]
        if seen is not None:
            endpoints = list(seen.get("endpoints") or [])
            behind = {by_ip.get(e.rsplit(":", 1)[0]) for e in endpoints}
            endpoint_pods = [p.name for p in pods if p.name in behind]
        elif report is not None:
            endpoints, endpoint_pods = [], []
        else:
            chosen = [p for p in pods if p.ip and service_selects(
                s, {"labels": p.labels, "namespace": p.namespace})]
            endpoint_pods = [p.name for p in chosen]
            endpoints = sorted({f"{p.ip}:{port.target_port}" for p in chosen for port in ports},
                               key=_endpoint_key)
        services.append(ServiceBox(
            s["name"], s["type"], seen["clusterIP"] if seen else s["clusterIP"], ports,
            dict(s.get("selector") or {}), s.get("externalTrafficPolicy", "Cluster"),
            s.get("internalTrafficPolicy", "Cluster"), s.get("sessionAffinity", "None"),
            endpoints, endpoint_pods, namespace_of(s), s.get("loadBalancerIP"),
            list(s.get("externalIPs") or []), list(s.get("loadBalancerSourceRanges") or []),
            s.get("healthCheckNodePort"), _is_dns_service(cluster, dict(s))))
    return services


def _addresses(cluster: Cluster, report: StatusReport | None, pods: list[PodBox],
               services: list[ServiceBox]) -> list[AddressBox]:
    """Each LoadBalancer IP with the node that announces it, and each externalIP.

    Live: `announcedBy` from the status report. From the lab file: the node agents'
    own election over every node, with every pod Ready, which is who announces once
    the lab is up and nothing has failed."""
    if report is not None:
        rows: dict[tuple[str, str], ServiceRow] = {
            (r["name"], r.get("namespace") or DEFAULT_NAMESPACE): r for r in report["services"]}
        announcers = {s.load_balancer_ip: rows[(s.name, s.namespace)].get("announcedBy")
                      for s in services if s.load_balancer_ip and (s.name, s.namespace) in rows}
    else:
        ready: list[PublishedPod] = [
            {"name": p.name, "node": p.node, "ip": p.ip, "state": "Running", "labels": p.labels,
             "namespace": p.namespace} for p in pods]
        announcers = lb_announcers(cluster, ready, {n["name"] for n in cluster["nodes"]})
    out: list[AddressBox] = []
    for s in services:
        if s.load_balancer_ip:
            node = announcers.get(s.load_balancer_ip)
            out.append(AddressBox(s.load_balancer_ip, "loadBalancerIP", s.id, s.ref, node,
                                  _announce_note(node, s, report is not None)))
        out += [AddressBox(ip, "externalIP", s.id, s.ref, None,
                           "not announced: clients route it to a node") for ip in s.external_ips]
    return out


def _announce_note(node: str | None, s: ServiceBox, live: bool) -> str:
    if node is not None:
        return f"ARP: {node}" + ("" if live else " (once every node is Ready)")
    if s.external_traffic_policy == "Local":
        return "not announced: no node with a ready local endpoint"
    return "not announced: no ready endpoint or Ready node"


def _endpoint_key(endpoint: str) -> tuple[int, int]:
    ip, _, port = endpoint.rpartition(":")
    return int(ipaddress.ip_address(ip)), int(port)
