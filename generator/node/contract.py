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
from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

from generator.node.netpol.spec import ContainerPortSpec as ContainerPortSpec
from generator.node.netpol.spec import NetpolStatus as NetpolStatus
from generator.node.netpol.spec import NetworkPolicySpec as NetworkPolicySpec

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
    # Ports the container must be listening on before its pod is ready (a readiness
    # check): the DNS pods' 53/UDP and 53/TCP. The test server's are always checked.
    readyPorts: NotRequired[list[list[Any]]]  # [[protocol (tcp|udp), port], ...]
    ports: NotRequired[list[ContainerPortSpec]]  # as the lab file declares them


class PodSpec(TypedDict):
    name: str
    node: str
    ip: NotRequired[str]  # chosen by the host; the node's CNI ADD asks host-local for it
    labels: dict[str, str]
    containers: list[ContainerSpec]
    terminationGracePeriodSeconds: NotRequired[int]  # default 30 (DEFAULT_TERMINATION_GRACE)
    namespace: NotRequired[str]  # absent: default


class ServicePortSpec(TypedDict):
    name: str
    port: int
    targetPort: int
    protocol: str  # TCP | UDP
    nodePort: int | None


class ServiceSpec(TypedDict):
    name: str
    type: str  # ClusterIP | NodePort | LoadBalancer
    clusterIP: str
    selector: dict[str, str]
    sessionAffinity: str  # None | ClientIP
    sessionAffinityTimeout: int
    externalTrafficPolicy: str  # Cluster | Local
    internalTrafficPolicy: str  # Cluster | Local
    ports: list[ServicePortSpec]
    namespace: NotRequired[str]  # absent: default
    trafficDistribution: NotRequired[str | None]  # PreferClose | PreferSameZone | PreferSameNode
    # LoadBalancer and externalIPs (contract §7): the IP MetalLB's layer 2 mode would
    # assign, the allowed client ranges, kube-proxy's health check port (Local only).
    loadBalancerIP: NotRequired[str | None]
    loadBalancerSourceRanges: NotRequired[list[str]]
    externalIPs: NotRequired[list[str]]
    healthCheckNodePort: NotRequired[int | None]


class NodeSpec(TypedDict):
    name: str
    container: str
    ip: str
    podCIDR: str
    gateway: str
    gatewayMAC: str
    vtep: str
    vtepMAC: str
    zone: NotRequired[str]  # topology.kubernetes.io/zone; "" or absent: none
    host: NotRequired[str]  # the Cluster host it runs on; absent: the local engine


class ClientSpec(TypedDict):
    name: str
    container: str
    ip: str
    host: NotRequired[str]


class VxlanSpec(TypedDict):
    vni: int
    port: int
    device: str


class DnsSpec(TypedDict):
    enabled: bool
    clusterIP: str  # the kube-dns service's
    replicas: int


class NamespaceSpec(TypedDict):
    name: str
    labels: dict[str, str]  # with kubernetes.io/metadata.name


class Cluster(TypedDict):
    name: str
    generation: str  # hash of everything else: agents apply each generation once
    podCIDR: str
    serviceCIDR: str
    nodeNetwork: str
    nodeNetworkGateway: str
    loadBalancerPool: NotRequired[str]  # the CIDR LoadBalancer IPs come from
    backend: str  # vxlan | host-gw
    proxyMode: str  # iptables | nftables
    nodeGracePeriod: int
    clusterDomain: NotRequired[str]  # absent: cluster.local
    dns: NotRequired[DnsSpec]  # absent: no cluster DNS
    namespaces: NotRequired[list[NamespaceSpec]]
    vxlan: VxlanSpec
    mtu: int
    hosts: NotRequired[list[dict[str, str]]]  # swarm engines (§11): name, docker; absent: local
    nodes: list[NodeSpec]
    pods: list[PodSpec]
    services: list[ServiceSpec]
    clients: list[ClientSpec]
    networkPolicies: NotRequired[list[NetworkPolicySpec]]  # absent: none


# ---------------------------------------------------------------- state/<node>.json
# Written by one agent, read by the host and every other agent.


class PodState(TypedDict, total=False):
    ip: str | None
    state: str  # Pending | Running | CrashLoopBackOff | Terminating | Failed
    restarts: int  # container restarts, summed over the pod's containers
    error: str
    # Only while Terminating (its spec is gone from cluster.json by then): the labels
    # it was selected by, its namespace, and whether its containers still run
    # (EndpointSlice `serving`).
    labels: dict[str, str]
    namespace: str
    serving: bool


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
    dns: NotRequired[DnsStatus | None]  # the zone its DNS pods serve; None: no DNS
    netpol: NotRequired[NetpolStatus | None]  # the policies it enforces


class DnsStatus(TypedDict):
    digest: str  # of the zone file's text (generator.node.pod_dns.zone_digest)


class PublishedPod(TypedDict):
    """A pod as every proxy and the host see it: spec labels joined with its node's report."""

    name: str
    node: str
    ip: str | None
    state: str
    restarts: NotRequired[int]
    labels: dict[str, str]
    zone: NotRequired[str]  # its node's zone, when the node has one
    serving: NotRequired[bool]  # a Terminating pod whose containers still run
    namespace: NotRequired[str]  # absent: default


DEFAULT_TERMINATION_GRACE = 30  # a pod's terminationGracePeriodSeconds by default


# kgen trace's and kgen status's documents are typed in generator.node.documents.


def adopt(path: Path) -> None:
    """Give what an agent (root in its container) creates in the state directory to
    the owner of its directory, the host user who ran `kgen up`, so that `kgen down` and
    `rm -rf` work without root. Only root can give a file away (a host process owns what
    it writes already); a failed chown (an engine that maps root to a user) leaves the
    file as it was: `kgen down` still removes it."""
    if os.geteuid() != 0:
        return
    try:
        owner = path.parent.stat()
        if (owner.st_uid, owner.st_gid) != (0, 0):
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
    except OSError:
        pass


def write_json_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    adopt(tmp)  # before the rename: the file is never seen with another owner
    os.replace(tmp, path)


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells that a file was replaced or rewritten: inode, mtime, size."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


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
    """Pods as every proxy sees them: those the cluster state lists, on the node it
    puts them on, and the Terminating pods nodes still report (whose spec is gone).

    Sorted by name (then node), so that the host and the nodes compute the same digest.
    """
    wanted = {p["name"]: p for p in cluster["pods"]}
    zones = {n["name"]: n.get("zone") or "" for n in cluster["nodes"]}
    pods: list[PublishedPod] = []
    for node, doc in docs.items():
        for name, pod in (doc.get("pods") or {}).items():
            spec = wanted.get(name)
            state = pod.get("state", "Pending")
            if state == "Terminating":  # gone from the spec: the node says what it was
                labels, namespace = pod.get("labels") or {}, namespace_of(pod)
            elif spec is None or spec["node"] != node:
                continue
            else:
                labels, namespace = spec["labels"], namespace_of(spec)
            seen: PublishedPod = {"name": name, "node": node, "ip": pod.get("ip"),
                                  "state": state, "restarts": int(pod.get("restarts", 0)),
                                  "labels": labels, "namespace": namespace}
            if zones.get(node):
                seen["zone"] = zones[node]
            if state == "Terminating":
                seen["serving"] = bool(pod.get("serving"))
            pods.append(seen)
    return sorted(pods, key=lambda p: (p["name"], p["node"]))


def pod_key(pod: PublishedPod) -> str:
    """A published pod's identity: a pod removed from one node and added to another
    under its name is two pods while the first terminates."""
    return f"{pod['node']}/{pod['name']}"


def ready_pods(pods: list[PublishedPod]) -> list[PublishedPod]:
    """Pods that serve: Running with an IP (an EndpointSlice's ready endpoints)."""
    return [p for p in pods if p.get("state") == "Running" and p.get("ip")]


def serving_terminating_pods(pods: list[PublishedPod]) -> list[PublishedPod]:
    """Terminating pods that still serve (an EndpointSlice's endpoints with
    ready=false, serving=true, terminating=true): kube-proxy's fallback."""
    return [p for p in pods if p.get("state") == "Terminating" and p.get("serving")
            and p.get("ip")]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


DEFAULT_NAMESPACE = "default"
DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"
# Node-local (not shared between nodes): each agent writes the zone its DNS pods serve.
DNS_ZONE_FILE = Path("/run/kgen/dns/zone.json")


def namespace_of(obj: Mapping[str, Any] | None) -> str:
    """A pod's or service's namespace; one without is in `default`."""
    return str((obj or {}).get("namespace") or DEFAULT_NAMESPACE)


def service_selects(service: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """A service selects pods of its own namespace only, as in Kubernetes."""
    return namespace_of(service) == namespace_of(pod) \
        and selects(service.get("selector") or {}, pod.get("labels") or {})


def input_digest(services: list[ServiceSpec], pods: list[PublishedPod]) -> str:
    """Same services and same endpoint pods (ready, or serving while terminating, with
    their zones): same digest, on every node and on the host."""
    def row(p: PublishedPod, terminating: bool) -> list[Any]:
        return [p["name"], p["node"], p["ip"], sorted((p.get("labels") or {}).items()),
                p.get("zone", ""), terminating, namespace_of(p)]

    rows = sorted([row(p, False) for p in ready_pods(pods)]
                  + [row(p, True) for p in serving_terminating_pods(pods)])
    body = json.dumps({"services": services, "pods": rows}, sort_keys=True)
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
        adopt(path.parent)
        path.touch()
        adopt(path)


def heartbeat_age(state_dir: Path, node: str, now: float) -> float | None:
    """Seconds since the node last renewed its heartbeat; None when it never did."""
    return file_age(heartbeat_path(state_dir, node), now)


def file_age(path: str | Path, now: float) -> float | None:
    """Seconds since `path` was last modified (a heartbeat renewed); None when it is missing."""
    try:
        return max(0.0, now - os.stat(path).st_mtime)
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
                 live: Set[str]) -> list[PublishedPod]:
    """What every proxy and `kgen status` make endpoints from: the published pods
    of live nodes only (of those, `ready_pods` are the endpoints)."""
    return published_pods(cluster, {n: d for n, d in docs.items() if n in live})
