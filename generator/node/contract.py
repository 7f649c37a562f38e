"""The host<->node contract: the one module both sides import (standard library only).

The host writes the desired cluster to `cluster.json` (mounted at
/etc/kgen/cluster.json); each node agent owns one file, `<state dir>/<node>.json`,
replaced atomically, which the host (`kgen status`, `kgen up`) and every other
agent read. This module defines those paths and formats, and the cluster rules
both sides must compute alike: which pods a selector picks, which pods serve,
and the digest that says a proxy has caught up.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

# Inside a node (mount points of the rendered directory's parts).
CONFIG_MOUNT = "/etc/kgen"  # the rendered config/, read-only
STATE_MOUNT = "/var/lib/kgen/state"  # the rendered state/, shared by every node
CNI_CONF_MOUNT = "/etc/cni/net.d"  # the rendered config/nodes/<node>/, read-only
STATE_DIR = Path(STATE_MOUNT)
CLUSTER_FILE = Path(CONFIG_MOUNT) / "cluster.json"
# On the host, relative to the rendered directory (kgen-<name>/).
RENDERED_CONFIG = "config"
RENDERED_STATE = "state"
RENDERED_CLUSTER_FILE = f"{RENDERED_CONFIG}/cluster.json"


# ---------------------------------------------------------------- cluster.json
# Written by the host (generator.cluster.build), read by every agent.


class ContainerSpec(TypedDict):
    name: str
    command: list[str] | None  # None: the pod test server


class PodSpec(TypedDict):
    name: str
    node: str
    ip: NotRequired[str]  # chosen by the host; the node's CNI ADD asks host-local for it
    labels: dict[str, str]
    containers: list[ContainerSpec]


class ServicePortSpec(TypedDict):
    name: str
    port: int
    targetPort: int
    protocol: str  # TCP | UDP
    nodePort: int | None


class ServiceSpec(TypedDict):
    name: str
    type: str  # ClusterIP | NodePort
    clusterIP: str
    selector: dict[str, str]
    sessionAffinity: str  # None | ClientIP
    sessionAffinityTimeout: int
    externalTrafficPolicy: str  # Cluster | Local
    internalTrafficPolicy: str  # Cluster | Local
    ports: list[ServicePortSpec]
    namespace: NotRequired[str]  # kgen labs have one (default); kube-proxy's fixtures more


class NodeSpec(TypedDict):
    name: str
    container: str
    ip: str
    podCIDR: str
    gateway: str
    gatewayMAC: str
    vtep: str
    vtepMAC: str


class ClientSpec(TypedDict):
    name: str
    container: str
    ip: str


class VxlanSpec(TypedDict):
    vni: int
    port: int
    device: str


class Cluster(TypedDict):
    name: str
    generation: str  # hash of everything else: agents apply each generation once
    podCIDR: str
    serviceCIDR: str
    nodeNetwork: str
    nodeNetworkGateway: str
    backend: str  # vxlan | host-gw
    proxyMode: str  # iptables | nftables
    nodeGracePeriod: int
    vxlan: VxlanSpec
    mtu: int
    nodes: list[NodeSpec]
    pods: list[PodSpec]
    services: list[ServiceSpec]
    clients: list[ClientSpec]


# ---------------------------------------------------------------- state/<node>.json
# Written by one agent, read by the host and every other agent.


class PodState(TypedDict, total=False):
    ip: str | None
    state: str  # Pending | Running | CrashLoopBackOff | Failed
    restarts: int  # container restarts, summed over the pod's containers
    error: str


class ProxyStatus(TypedDict):
    digest: str  # input_digest() of the last successful sync
    syncs: NotRequired[int]  # agents leave the counters out of what they publish
    lastSyncMs: NotRequired[float]
    error: str | None


class NodeState(TypedDict):
    node: str
    generation: str  # the cluster generation applied
    ready: bool
    pods: dict[str, PodState]
    proxy: ProxyStatus | None
    error: str | None


class PublishedPod(TypedDict):
    """A pod as every proxy and the host see it: spec labels joined with its node's report."""

    name: str
    node: str
    ip: str | None
    state: str
    restarts: NotRequired[int]
    labels: dict[str, str]



# ---------------------------------------------------------------- kgen trace, kgen status
# (block kept together: trace plan, match and report cross `docker exec` between the host's
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
    t: float  # time.monotonic() on the node


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
    state: str  # Ready | NotReady | Absent | a stopped container's state


class PodRow(TypedDict):
    name: str
    node: str
    ip: str | None
    state: str
    restarts: int


class ServiceRow(TypedDict):
    name: str
    type: str
    clusterIP: str
    ports: list[ServicePortSpec]
    endpoints: list[str]  # ip:targetPort of the serving pods


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

# ---------------------------------------------------------------- end of the trace/status block


def write_json_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_node_states(state_dir: Path, nodes: list[str]) -> dict[str, NodeState]:
    """The published document of each listed node that has one."""
    docs: dict[str, NodeState] = {}
    for node in nodes:
        doc = read_json(state_dir / f"{node}.json")
        if isinstance(doc, dict):
            docs[node] = cast(NodeState, doc)
    return docs


def published_pods(cluster: Cluster, docs: dict[str, NodeState]) -> list[PublishedPod]:
    """Pods as every proxy sees them: only pods the cluster state still lists.

    Sorted by name, so that the host and the nodes compute the same digest.
    """
    wanted = {p["name"]: p for p in cluster["pods"]}
    pods: list[PublishedPod] = []
    for node, doc in docs.items():
        for name, pod in (doc.get("pods") or {}).items():
            spec = wanted.get(name)
            if spec is None or spec["node"] != node:
                continue
            pods.append({"name": name, "node": node, "ip": pod.get("ip"),
                         "state": pod.get("state", "Pending"),
                         "restarts": int(pod.get("restarts", 0)), "labels": spec["labels"]})
    return sorted(pods, key=lambda p: p["name"])


def ready_pods(pods: list[PublishedPod]) -> list[PublishedPod]:
    """Pods that serve: Running with an IP (an EndpointSlice's ready endpoints)."""
    return [p for p in pods if p.get("state") == "Running" and p.get("ip")]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def input_digest(services: list[ServiceSpec], pods: list[PublishedPod]) -> str:
    """Same services and same ready pods: same digest, on every node and on the host."""
    ready = sorted((p["name"], p["node"], p["ip"], sorted((p.get("labels") or {}).items()))
                   for p in ready_pods(pods))
    body = json.dumps({"services": services, "pods": ready}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- node liveness
#
# Like the node lifecycle controller's Leases: each agent renews its heartbeat,
# `<state dir>/heartbeat/<node>` (its mtime is the renewal time), every third of
# the grace period; a node not heard from for `nodeGracePeriod` seconds is not
# live, and its pods are nobody's endpoints. The host (`kgen status`, `kgen up`)
# and every proxy apply this one rule to the same files.

HEARTBEAT_DIR = "heartbeat"
DEFAULT_GRACE_PERIOD = 6


def grace_period(cluster: Mapping[str, Any]) -> float:
    return float(cluster.get("nodeGracePeriod", DEFAULT_GRACE_PERIOD))


def heartbeat_period(cluster: Mapping[str, Any]) -> float:
    """Three renewals per grace period: one late renewal never costs a node its endpoints."""
    return max(0.2, grace_period(cluster) / 3)


def heartbeat_path(state_dir: Path, node: str) -> Path:
    return state_dir / HEARTBEAT_DIR / node


def renew_heartbeat(state_dir: Path, node: str) -> None:
    path = heartbeat_path(state_dir, node)
    try:
        os.utime(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def heartbeat_age(state_dir: Path, node: str, now: float) -> float | None:
    """Seconds since the node last renewed its heartbeat; None when it never did."""
    try:
        return max(0.0, now - heartbeat_path(state_dir, node).stat().st_mtime)
    except OSError:
        return None


def is_live(age: float | None, grace: float) -> bool:
    return age is not None and age <= grace


def live_nodes(cluster: Cluster, state_dir: Path, now: float) -> set[str]:
    """Nodes heard from within the grace period."""
    grace = grace_period(cluster)
    return {n["name"] for n in cluster["nodes"]
            if is_live(heartbeat_age(state_dir, n["name"], now), grace)}


def serving_pods(cluster: Cluster, docs: dict[str, NodeState],
                 live: set[str]) -> list[PublishedPod]:
    """What every proxy and `kgen status` make endpoints from: the published pods
    of live nodes only (of those, `ready_pods` are the endpoints)."""
    return published_pods(cluster, {n: d for n, d in docs.items() if n in live})
