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


# ---------------------------------------------------------------- probe jobs and summaries
#
# `kgen check` hands a node (for its pods) or a client a batch of probe jobs in one
# `docker exec ... python3 -m generator.node.probe batch JOBS` (JOBS: base64 of
# zlib-compressed JSON, a list of ProbeJob) and reads back one ProbeSummary per job,
# in order, as one JSON list on stdout. A single probe (`probe MODE HOST PORT ...
# --json`) prints a list of ProbeAttempt. Both sides build and read these types only.


class ProbeJob(TypedDict):
    netns: str | None  # a pod's network namespace (/run/netns/NAME); None: the container's own
    mode: str  # http | udp | tcp | icmp
    host: str  # a lab address: the node side refuses anything not private or loopback
    port: int
    arg: str  # http: the path; udp: the message
    count: int  # at most this many requests
    timeout: float  # seconds per request
    until: list[str] | None  # stop once every one of these answers was seen
    fail_fast: bool  # stop at the first failed request
    streams: int  # requests in flight at once, each on a new connection


class ProbeSummary(TypedDict):
    sent: int
    ok: int
    answers: dict[str, int]  # answer -> how many requests got it
    errors: dict[str, int]  # error -> how many requests ended with it
    ms_max: float  # the slowest request, in milliseconds


class ProbeAttempt(TypedDict):
    ok: bool
    answer: str | None
    error: str | None
    ms: float


def empty_summary() -> ProbeSummary:
    return {"sent": 0, "ok": 0, "answers": {}, "errors": {}, "ms_max": 0.0}


def failed_summary(error: str) -> ProbeSummary:
    """What the host records for a job whose batch broke before it reported."""
    summary = empty_summary()
    summary["errors"][error] = 1
    return summary


def encode_probe_jobs(jobs: list[ProbeJob]) -> str:
    import base64  # imported here: this block stands alone (and most readers never need it)
    import zlib

    return base64.b64encode(zlib.compress(json.dumps(jobs).encode())).decode()


def decode_probe_jobs(text: str) -> list[ProbeJob]:
    """ValueError (or zlib.error) when `text` is not an encoded job list."""
    import base64
    import zlib

    jobs = json.loads(zlib.decompress(base64.b64decode(text, validate=True)))
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise ValueError("not a list of jobs")
    return cast(list[ProbeJob], jobs)
