"""The documents of `kgen trace` and `kgen status`, typed once for both sides
(standard library only; part of the host<->node contract of generator.node.contract).

- TracePlan (with its TraceMatch, TraceCapture and TraceProbe): the first line the
  host writes to each node's trace helper (`docker exec -i ... python3 -m
  generator.node.trace`); built by generator.trace.plan, read by generator.node.trace.
- TraceProbeResult and TraceReport: the helper's answers, read by generator.trace.
- StatusReport: `kgen status --json`, built by generator.runtime.status, drawn by
  generator.graph.
- TraceResult: `kgen trace --json`, built by generator.trace, read back by
  `kgen graph --trace`.

tests/unit/test_documents.py fails when what a side builds drifts from these types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict, cast

from generator.node.contract import (
    ClientSpec,
    Cluster,
    PublishedPod,
    ServicePortSpec,
    ServiceSpec,
    ready_pods,
    selects,
)

# generator.trace and the node's generator.node.trace; the status report and the trace
# result are the host's documents that `kgen graph` draws from.)


class TraceMatch(TypedDict):
    """One flow a node arms (`-j TRACE` / `meta nftrace set 1`); absent keys match anything."""

    proto: str  # tcp | udp | icmp
    src: NotRequired[str | None]
    dst: NotRequired[str | None]
    sport: NotRequired[int]
    dport: NotRequired[int]
    icmp_type: NotRequired[str]  # echo-request | echo-reply
    icmp_id: NotRequired[int]


class TraceCapture(TypedDict):
    """What the node records on its underlay while armed."""

    iface: str
    vxlan_port: int
    ports: list[int]  # frames carrying one of these ports (any for icmp)
    inside: list[str]  # unencapsulated frames to or from these ranges (host-gw)


class TraceProbe(TypedDict):
    """The one request the source sends (generator.node.probe's modes)."""

    mode: str  # http | udp | icmp
    host: str
    port: int
    arg: str
    timeout: float
    sport: int
    netns: str | None  # the source pod's netns; None: the member's own


class TracePlan(TypedDict):
    """The first line a trace helper reads: what this member arms, records and sends."""

    id: str
    mode: str  # iptables | nftables
    member: str
    node: bool  # False: a client, which only sends the probe
    proto: str
    deadline: int  # unix time after which anyone may remove the rules
    matches: list[TraceMatch]
    capture: TraceCapture | None
    probe: TraceProbe | None
    linger: NotRequired[float]  # seconds to wait for the last events after "stop"


class TraceProbeResult(TypedDict):
    ok: bool
    answer: str | None
    error: str | None
    ms: float
    backlogDrops: int  # packets the kernel's input backlogs dropped meanwhile


class FrameEncap(TypedDict):
    src: str
    dst: str
    sport: int
    dport: int
    vni: int


class Frame(TypedDict):
    """A frame of the flow seen on the underlay: the inner IPv4 packet, and its tunnel."""

    src: str
    dst: str
    id: int  # IP identification
    sport: int | None
    dport: int | None
    icmp_type: NotRequired[int]
    icmp_id: NotRequired[int]
    encap: FrameEncap | None
    outgoing: bool
    t: NotRequired[float]  # time.monotonic() on the node (for reading by eye; older helpers left it out)


class IpError(TypedDict):
    error: str


# `ip -j` answers are iproute2's own objects (dst, gateway, dev, prefsrc, type, ...).
IpAnswer = list[dict[str, object]] | IpError


class RouteAsked(TypedDict):
    dst: str
    src: str | None
    iif: str | None
    result: IpAnswer


class BridgePort(TypedDict):
    veth: str | None
    state: str | None


class BridgePorts(TypedDict):
    cbr0: str  # operstate, or "absent"
    pods: dict[str, BridgePort]


class SourceRoute(TypedDict):
    route: IpAnswer
    eth0: NotRequired[IpAnswer]  # the source pod's eth0


class TraceReport(TypedDict):
    """The helper's last line: what the kernel said while the flow was armed."""

    event: str  # "report"
    member: str
    error: str | None
    lines: list[str]  # the monitor's output
    frames: list[Frame]
    routes: list[RouteAsked]
    conntrack: list[str]  # `conntrack -L -p PROTO` lines
    bridge: BridgePorts | None
    natChains: list[str]  # iptables-save lines of KUBE-SVC-/KUBE-SVL- chains
    source: SourceRoute | None


def trace_report(member: str, error: str | None) -> TraceReport:
    """A report that says only why nothing was traced."""
    return {"event": "report", "member": member, "error": error, "lines": [], "frames": [],
            "routes": [], "conntrack": [], "bridge": None, "natChains": [], "source": None}


class NodeRow(TypedDict):
    name: str
    container: str
    ip: str
    podCIDR: str
    zone: str | None  # topology.kubernetes.io/zone
    state: str  # Ready | NotReady | Absent | a stopped container's state


class PodRow(TypedDict):
    name: str
    namespace: str
    node: str
    ip: str | None
    state: str
    restarts: int


class ServiceRow(TypedDict):
    name: str
    namespace: str
    type: str
    clusterIP: str
    loadBalancerIP: str | None  # LoadBalancer services only
    externalIPs: list[str]
    healthCheckNodePort: int | None  # LoadBalancer services with externalTrafficPolicy Local
    announcedBy: str | None  # the node answering ARP for loadBalancerIP (MetalLB layer 2)
    ports: list[ServicePortSpec]
    endpoints: list[str]  # ip:targetPort of the ready pods
    terminating: list[str]  # ip:targetPort of Terminating pods that still serve


class StatusReport(TypedDict):
    """`kgen status --json`: the desired cluster joined with what runs."""

    name: str
    nodes: list[NodeRow]
    pods: list[PodRow]
    services: list[ServiceRow]
    clients: list[ClientSpec]


class TracePacket(TypedDict):
    src: str  # ip or ip:port
    dst: str


class TraceEncap(TypedDict):
    src: str
    dst: str
    dport: int
    vni: int


class TraceHop(TypedDict):
    direction: str  # request | reply
    node: str
    step: str
    detail: str
    table: str | None
    chain: str | None
    rule: str | None
    packet: TracePacket
    encap: TraceEncap | None


class TraceEnd(TypedDict):
    name: str
    ip: str


class TraceTarget(TypedDict):
    name: str
    ip: str
    port: int | None
    protocol: str


class TraceResult(TypedDict):
    """`kgen trace --json`, which `kgen graph --trace` reads back."""

    src: TraceEnd
    dst: TraceTarget
    verdict: str  # answered | refused | dropped | timeout
    answeredBy: str | None
    hops: list[TraceHop]


# ---------------------------------------------------------------- the cluster DNS's input
# What the DNS server answers from (generator.node.dns), one document computed by
# `dns_zone` from the cluster and the serving pods, so the host and a node derive it alike.

DEFAULT_NAMESPACE = "default"
CLUSTER_DOMAIN = "cluster.local"


class DnsPort(TypedDict):
    name: str  # "" for an unnamed port, which has no SRV record
    protocol: str  # TCP | UDP | SCTP
    port: int


class DnsEndpoint(TypedDict):
    ip: str
    pod: str  # the pod behind it (an EndpointSlice's targetRef)
    hostname: NotRequired[str]  # the pod's spec.hostname, when its subdomain is this service


class DnsService(TypedDict):
    name: str
    namespace: str
    clusterIP: str | None  # None: headless
    ports: list[DnsPort]
    endpoints: list[DnsEndpoint]  # the ready ones only


class DnsPod(TypedDict):
    name: str
    namespace: str
    ip: str


class DnsZone(TypedDict):
    domain: str  # the cluster domain, e.g. cluster.local
    namespaces: list[str]
    services: list[DnsService]
    pods: list[DnsPod]
    reverseCIDRs: list[str]  # reverse names inside these are answered; others REFUSED
    nameserver: str | None  # the DNS service's cluster IP (ns.dns.<domain>)


def _pod_dns_fields(cluster: Cluster) -> dict[str, Mapping[str, Any]]:
    """Each pod spec's namespace, hostname and subdomain, read so that the zone
    follows when the lab model gains them (today: none, so `default`)."""
    return {p["name"]: cast(Mapping[str, Any], p) for p in cluster["pods"]}


def _namespace(spec: Mapping[str, Any] | None) -> str:
    return str((spec or {}).get("namespace") or DEFAULT_NAMESPACE)


def _dns_service(spec: ServiceSpec, ready: list[PublishedPod],
                 pod_specs: dict[str, Mapping[str, Any]]) -> DnsService:
    """A service as DNS sees it: its ready endpoints are the ready pods it selects
    in its own namespace; an endpoint has the pod's hostname when the pod's
    subdomain names this service (what the EndpointSlice controller copies)."""
    namespace = _namespace(cast(Mapping[str, Any], spec))
    endpoints: list[DnsEndpoint] = []
    for pod in ready:
        pod_spec = pod_specs.get(pod["name"]) or {}
        if _namespace(pod_spec) != namespace or not selects(spec["selector"], pod["labels"]):
            continue
        endpoint: DnsEndpoint = {"ip": str(pod["ip"]), "pod": pod["name"]}
        if pod_spec.get("hostname") and pod_spec.get("subdomain") == spec["name"]:
            endpoint["hostname"] = str(pod_spec["hostname"])
        endpoints.append(endpoint)
    cluster_ip = spec["clusterIP"] if spec["clusterIP"] not in ("", "None") else None
    return {"name": spec["name"], "namespace": namespace, "clusterIP": cluster_ip, "endpoints": endpoints,
            "ports": [{"name": p["name"], "protocol": p["protocol"], "port": p["port"]}
                      for p in spec["ports"]]}


def dns_zone(cluster: Cluster, pods: list[PublishedPod], domain: str = CLUSTER_DOMAIN,
             nameserver: str | None = None) -> DnsZone:
    """The DNS records' input: `pods` as `serving_pods` gives them. Pods and
    services without a namespace are in `default` (kgen labs have no others yet)."""
    pod_specs = _pod_dns_fields(cluster)
    services = [_dns_service(s, ready_pods(pods), pod_specs) for s in cluster["services"]]
    dns_pods: list[DnsPod] = [{"name": p["name"], "namespace": _namespace(pod_specs.get(p["name"])),
                               "ip": str(p["ip"])}
                              for p in pods if p.get("ip")]  # ready or not, as CoreDNS's pod index
    namespaces = {DEFAULT_NAMESPACE, "kube-system", *(s["namespace"] for s in services),
                  *(p["namespace"] for p in dns_pods)}
    return {"domain": domain, "namespaces": sorted(namespaces), "services": services,
            "pods": dns_pods, "reverseCIDRs": [cluster["serviceCIDR"], cluster["podCIDR"]],
            "nameserver": nameserver}
