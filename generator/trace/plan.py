"""Which flow to trace and what every member of the lab arms for it.

The source port is chosen here, below the kernel's ephemeral range
(32768-60999) and the NodePort range, so the flow is known exactly before
the first packet leaves. Every node arms the flow as it leaves its source and
its reply as it comes back (source address and port, exact); where the path
can source-NAT before reaching another node (NodePort, hairpin, a node as
the source), nodes also arm the translated form: from the entry node's
addresses to each endpoint's target port, and back. Those matches can also
catch another flow between the same addresses in the same second; the join
keeps only the packet whose IP identification the first node saw.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from dataclasses import dataclass, field

from generator.cluster.targets import find_pod, find_service, qualified
from generator.node.contract import (
    Cluster,
    PublishedPod,
    ServicePortSpec,
    ServiceSpec,
    namespace_of,
    ready_pods,
    service_selects,
)
from generator.node.documents import TraceMatch, TracePlan, TraceProbe

SPORT_RANGE = (20000, 29999)  # below ip_local_port_range and the NodePort range
DEFAULT_PORTS = {"tcp": 8080, "udp": 8081}  # the test server (docs/reference.md, "Pods")
PROTOCOLS = ("tcp", "udp", "icmp")
PROBE_TIMEOUT = 2.0
DEADLINE = 30  # seconds: rules still armed after this are anyone's to remove


class TraceUsageError(LookupError):
    """A bad name or option (exit status 2)."""


@dataclass
class Endpoint:
    pod: str
    ip: str
    port: int


@dataclass
class Member:
    name: str
    kind: str  # pod | node | client | service | ip
    ip: str
    node: str | None = None  # the node a pod runs on; a node's own name
    namespace: str = "default"  # a pod's; what a short service name is resolved in


@dataclass
class Plan:
    trace_id: str
    src: Member
    dst: Member
    port: int | None
    proto: str
    sport: int
    mode: str  # iptables | nftables
    backend: str
    endpoints: list[Endpoint] = field(default_factory=list)
    service: str | None = None  # "<namespace>/web:http" style, when DST is a service
    service_port: int | None = None
    entry_node: str | None = None  # where the translation happens
    snat_addrs: list[str] = field(default_factory=list)
    deadline: int = 0
    # The node a client's request to a LoadBalancer IP or an externalIP enters by: the one
    # answering ARP for it (generator.node.lb_election); every node when nobody knows.
    entry_candidates: list[str] = field(default_factory=list)
    probe_mode: str | None = None  # "dns": the source's own lookup of probe_arg
    probe_arg: str = ""
    what: str | None = None  # the request in words, for the first hop
    # address -> what it is: "pod-3", "node-1", "node-1 cbr0", "node-1 VTEP", "client-0"
    names: dict[str, str] = field(default_factory=dict)

    @property
    def target_ports(self) -> set[int]:
        return {e.port for e in self.endpoints}


def _lab_ranges(cluster: Cluster) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(cluster[k]) for k in ("podCIDR", "serviceCIDR", "nodeNetwork")]


def names(cluster: Cluster, pod_ips: dict[str, str]) -> dict[str, str]:
    """What each lab address is, for the hops' words."""
    out = {}
    for n in cluster["nodes"]:
        out[n["ip"]] = n["name"]
        out[n["gateway"]] = f"{n['name']} cbr0"
        out[n["vtep"]] = f"{n['name']} VTEP"
    for c in cluster["clients"]:
        out[c["ip"]] = c["name"]
    for s in cluster["services"]:
        if s["clusterIP"] != "None":
            out[s["clusterIP"]] = f"service {s['name']}"
        if s.get("loadBalancerIP"):
            out[str(s["loadBalancerIP"])] = f"service {s['name']} (LoadBalancer IP)"
        for ip in s.get("externalIPs") or []:
            out[ip] = f"service {s['name']} (externalIP)"
    for pod, ip in pod_ips.items():
        out[ip] = pod
    return out


def _member(cluster: Cluster, pod_ips: dict[str, str], name: str) -> Member | None:
    for n in cluster["nodes"]:
        if n["name"] == name:
            return Member(name, "node", n["ip"], name)
    for c in cluster["clients"]:
        if c["name"] == name:
            return Member(name, "client", c["ip"])
    p = find_pod(cluster["pods"], name)
    if p is not None:
        ip = pod_ips.get(p["name"])
        if not ip:
            raise TraceUsageError(f"pod {p['name']} has no IP (is the lab up and the pod running?)")
        return Member(p["name"], "pod", ip, p["node"], namespace_of(p))
    return None


def member(cluster: Cluster, pods: list[PublishedPod], name: str) -> Member | None:
    """The node, client or pod `name` names (None: none does)."""
    return _member(cluster, {p["name"]: ip for p in pods if (ip := p.get("ip"))}, name)


def _known(cluster: Cluster) -> str:
    groups: list[list[str]] = [[m["name"] for m in cluster["nodes"]],
                               [m["name"] for m in cluster["clients"]],
                               [m["name"] for m in cluster["pods"]],
                               [m["name"] for m in cluster["services"]]]
    return ", ".join(name for group in groups for name in group)


def _service_port(service: ServiceSpec, port: int | None, proto: str | None
                  ) -> ServicePortSpec:
    ports = service["ports"]
    if port is not None:
        ports = [p for p in ports if p["port"] == port]
    if proto is not None and proto != "icmp":
        ports = [p for p in ports if p["protocol"].lower() == proto]
    if not ports:
        wanted = " ".join(filter(None, [str(port) if port else "", proto or ""]))
        have = ", ".join(f"{p['port']}/{p['protocol']}" for p in service["ports"])
        raise TraceUsageError(f"service {service['name']} has no port {wanted} (it has {have})")
    return ports[0]


def _endpoints(service: ServiceSpec, sp: ServicePortSpec, pods: list[PublishedPod]
               ) -> list[Endpoint]:
    out = []
    for pod in ready_pods(pods):
        if service_selects(service, pod) and pod["ip"]:
            out.append(Endpoint(pod["name"], pod["ip"], int(sp["targetPort"])))
    return sorted(out, key=lambda e: ipaddress.IPv4Address(e.ip))


def make_plan(cluster: Cluster, pods: list[PublishedPod], src: str, dst: str,
              port: int | None, protocol: str | None, mode: str | None = None,
              sport: int | None = None, announcers: dict[str, str | None] | None = None
              ) -> Plan:
    """`pods`: as the proxies see them (contract.published_pods); `announcers`: each
    LoadBalancer IP and the node answering ARP for it (`kgen status`'s announcedBy)."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise TraceUsageError(f"--protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if port is not None and not 0 < port < 65536:
        raise TraceUsageError(f"--port: {port} is not a port number")
    pod_ips = {p["name"]: ip for p in pods if (ip := p.get("ip"))}
    source = _member(cluster, pod_ips, src)
    if source is None:
        raise TraceUsageError(f"SRC: no pod, node or client named {src!r} (known: {_known(cluster)})")
    plan = Plan(trace_id=secrets.token_hex(4), src=source, dst=Member(dst, "ip", ""),
                port=port, proto=protocol or "tcp",
                sport=sport or SPORT_RANGE[0] + secrets.randbelow(SPORT_RANGE[1] - SPORT_RANGE[0]),
                mode=mode or cluster.get("proxyMode") or "iptables", backend=cluster["backend"],
                deadline=int(time.time()) + DEADLINE, names=names(cluster, pod_ips))
    target = _member(cluster, pod_ips, dst)
    service = None if target is not None else find_service(
        cluster["services"], dst, cluster.get("clusterDomain", "cluster.local"),
        source.namespace)
    if service is not None:
        _to_service(plan, service, pods, port, protocol)
    elif target is not None:
        plan.dst = target
        if target.kind == "pod":
            if plan.proto != "icmp":
                plan.port = port or DEFAULT_PORTS[plan.proto]
        elif plan.proto != "icmp" and port is None:
            raise TraceUsageError(f"DST {dst} is a {target.kind}: give --port (a NodePort), "
                                  "or --protocol icmp")
    else:
        _to_address(plan, cluster, pods, dst, port)
    if plan.proto == "icmp":
        plan.port = None
    if plan.dst.kind == "node" and plan.proto != "icmp":
        _to_node_port(plan, cluster, pods)
    if source.kind == "pod" and plan.dst.kind == "pod" and plan.proto == "icmp" and \
            source.ip == plan.dst.ip:
        raise TraceUsageError("SRC and DST are the same pod: nothing crosses the network")
    _entry(cluster, plan, announcers or {})
    return plan


def _service_name(service: ServiceSpec, sp: ServicePortSpec) -> str:
    """kube-proxy's name of a service port: `default/web:http`, `shop/web` unnamed."""
    return qualified(service) + (f":{sp['name']}" if sp.get("name") else "")


def _to_service(plan: Plan, service: ServiceSpec, pods: list[PublishedPod], port: int | None,
                protocol: str | None) -> None:
    sp = _service_port(service, port, protocol)
    plan.dst = Member(service["name"], "service", service["clusterIP"])
    if plan.src.kind == "client" and service.get("type") == "LoadBalancer" and \
            service.get("loadBalancerIP"):
        # A client is outside the cluster: it reaches the service where outside traffic
        # does, on its LoadBalancer IP (a pod or node keeps the cluster IP, as kube-proxy).
        plan.dst.ip = str(service["loadBalancerIP"])
    plan.port, plan.service_port = int(sp["port"]), int(sp["port"])
    plan.proto = protocol or sp["protocol"].lower()
    plan.service = _service_name(service, sp)
    plan.endpoints = _endpoints(service, sp, pods)


def _to_address(plan: Plan, cluster: Cluster, pods: list[PublishedPod], dst: str,
                port: int | None) -> None:
    """DST given as an address: a lab address only; named when it is a node, pod or service."""
    try:
        address = ipaddress.IPv4Address(dst)
    except ValueError:
        raise TraceUsageError(f"DST: no pod, service, node or client named {dst!r}, and not an "
                              f"IPv4 address (known: {_known(cluster)})") from None
    if not any(address in r for r in _lab_ranges(cluster)):
        raise TraceUsageError(f"DST {dst} is outside the lab's ranges (pods "
                              f"{cluster['podCIDR']}, services {cluster['serviceCIDR']}, nodes "
                              f"{cluster['nodeNetwork']}): kgen sends nothing out of the lab")
    if plan.proto != "icmp" and port is None:
        raise TraceUsageError(f"DST {dst} is an address: give --port, or --protocol icmp")
    plan.dst = Member(dst, "ip", dst)
    named = plan.names.get(dst, "")
    by_ip = next((n for n in cluster["nodes"] if n["ip"] == dst), None)
    if by_ip is not None:
        plan.dst = Member(by_ip["name"], "node", dst, by_ip["name"])
    elif named and any(p["name"] == named and p.get("ip") for p in pods):
        plan.dst = Member(named, "pod", dst, next(p["node"] for p in pods if p["name"] == named))
    svc = next((s for s in cluster["services"] if dst in (s["clusterIP"], s.get("loadBalancerIP"))
                or dst in (s.get("externalIPs") or [])), None)
    if svc is not None and plan.proto != "icmp":
        sp = _service_port(svc, port, plan.proto)
        plan.service = _service_name(svc, sp)
        plan.endpoints = _endpoints(svc, sp, pods)


def _to_node_port(plan: Plan, cluster: Cluster, pods: list[PublishedPod]) -> None:
    for svc in cluster["services"]:
        for sp in svc["ports"]:
            if sp.get("nodePort") == plan.port and sp["protocol"].lower() == plan.proto:
                plan.service = _service_name(svc, sp)
                plan.endpoints = _endpoints(svc, sp, pods)


def _outside_entry(cluster: Cluster, plan: Plan, announcers: dict[str, str | None]) -> None:
    """A client's request to a LoadBalancer IP or an externalIP: it enters by the node
    announcing the IP (an externalIP, or an IP nobody is known to announce: any node),
    which may masquerade it to any of its addresses."""
    entry = announcers.get(plan.dst.ip)
    nodes = [n for n in cluster["nodes"] if entry in (None, n["name"])]
    plan.entry_candidates = [n["name"] for n in nodes]
    plan.entry_node = entry
    plan.snat_addrs = [a for n in nodes for a in (n["ip"], n["gateway"], n["vtep"])]


def _entry(cluster: Cluster, plan: Plan, announcers: dict[str, str | None]) -> None:
    """Where a source NAT can happen, and the addresses it can give the packet."""
    if not plan.endpoints or plan.proto == "icmp":
        return
    outside = {a for s in cluster["services"]
               for a in [s.get("loadBalancerIP"), *(s.get("externalIPs") or [])] if a}
    if plan.src.kind == "client" and plan.dst.ip in outside:
        _outside_entry(cluster, plan, announcers)
        return
    if plan.dst.kind == "node":
        entry = plan.dst.node
    elif plan.src.kind in ("pod", "node"):
        entry = plan.src.node
    else:
        return
    hairpin = plan.src.kind == "pod" and plan.src.ip in {e.ip for e in plan.endpoints}
    if plan.dst.kind != "node" and plan.src.kind == "pod" and not hairpin:
        return  # pod -> cluster IP keeps the pod's address (kube-proxy masquerades no pod)
    node = next(n for n in cluster["nodes"] if n["name"] == entry)
    plan.entry_node = entry
    plan.snat_addrs = [node["ip"], node["gateway"], node["vtep"]]


def matches(plan: Plan) -> list[TraceMatch]:
    """The flow and its reply as every node arms them."""
    proto = plan.proto
    if proto == "icmp":
        src = plan.src.ip if plan.src.kind != "node" else None
        return [{"proto": "icmp", "src": src, "icmp_type": "echo-request", "icmp_id": plan.sport},
                {"proto": "icmp", "dst": src, "icmp_type": "echo-reply", "icmp_id": plan.sport}]
    # A node picks its source address by route; the port alone (outside every range the
    # kernel or kube-proxy hands out) then identifies the flow.
    src = plan.src.ip if plan.src.kind != "node" else None
    out: list[TraceMatch] = [{"proto": proto, "src": src, "sport": plan.sport},
                                 {"proto": proto, "dst": src, "dport": plan.sport}]
    for ep in plan.endpoints if plan.snat_addrs else []:
        for addr in plan.snat_addrs:
            out.append({"proto": proto, "src": addr, "dst": ep.ip, "dport": ep.port})
            out.append({"proto": proto, "src": ep.ip, "sport": ep.port, "dst": addr})
    return out


def probe_spec(plan: Plan) -> TraceProbe:
    mode = plan.probe_mode or {"tcp": "http", "udp": "udp", "icmp": "icmp"}[plan.proto]
    arg = plan.probe_arg or {"tcp": "/hostname", "udp": "hostname", "icmp": ""}[plan.proto]
    return {"mode": mode, "host": plan.dst.ip, "port": plan.port or 0, "arg": arg,
            "timeout": PROBE_TIMEOUT, "sport": plan.sport,
            "netns": plan.src.name if plan.src.kind == "pod" else None}


def member_plans(cluster: Cluster, plan: Plan) -> dict[str, TracePlan]:
    """The plan each container's helper gets: every node, and the source if a client."""
    flow = matches(plan)
    ports = {plan.sport, *(p for p in [plan.port] if p), *plan.target_ports}
    source_member = plan.src.node if plan.src.kind in ("pod", "node") else plan.src.name
    out: dict[str, TracePlan] = {}
    for n in cluster["nodes"]:
        out[n["container"]] = {
            "id": plan.trace_id, "mode": plan.mode, "member": n["name"], "node": True,
            "proto": plan.proto, "deadline": plan.deadline, "matches": flow,
            "capture": {"iface": "eth0", "vxlan_port": cluster["vxlan"]["port"],
                        "ports": sorted(ports), "inside": [cluster["podCIDR"]]},
            "probe": probe_spec(plan) if n["name"] == source_member else None,
        }
    for c in cluster["clients"]:
        if c["name"] == source_member:
            out[c["container"]] = {
                "id": plan.trace_id, "mode": plan.mode, "member": c["name"], "node": False,
                "proto": plan.proto, "deadline": plan.deadline, "matches": [], "capture": None,
                "probe": probe_spec(plan)}
    return out
