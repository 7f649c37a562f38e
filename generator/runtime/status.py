"""`kgen status`: the desired cluster joined with what containers and agents report.

`report` is the join itself, given the containers' states (Docker's words:
running, exited, ...); `status` reads those from the Docker SDK, `from_registry`
from the registry snapshot a command already holds (no second engine call).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from generator.node.contract import (
    ClientSpec,
    Cluster,
    NodeState,
    PodSpec,
    PublishedPod,
    ServiceSpec,
    live_nodes,
    namespace_of,
    read_node_states,
    ready_pods,
    service_selects,
    serving_pods,
    serving_terminating_pods,
)
from generator.node.documents import PodRow, ServiceRow, StatusReport
from generator.node.lb_election import lb_announcers
from generator.runtime.paths import LabPaths

if TYPE_CHECKING:
    import docker

    from generator.runtime.registry import RunningLab


def _node_state(container: str | None, doc: NodeState | None, generation: str, live: bool) -> str:
    """The container's state unless it runs; then Ready only if its agent was heard
    from within the grace period and has everything of this generation in place."""
    if container is None:
        return "Absent"
    if container != "running":
        return container.capitalize()
    if live and doc and doc.get("ready") and doc.get("generation") == generation:
        return "Ready"
    return "NotReady"


def service_endpoints(service: ServiceSpec, pods: list[PublishedPod]) -> list[str]:
    """`ip:targetPort` of every Running pod the service selects (in its namespace), for every port
    (the EndpointSlice's ready endpoints)."""
    return _addresses(service, ready_pods(pods))


def terminating_endpoints(service: ServiceSpec, pods: list[PublishedPod]) -> list[str]:
    """The same of every Terminating pod that still serves (serving, terminating)."""
    return _addresses(service, serving_terminating_pods(pods))


def _addresses(service: ServiceSpec, pods: list[PublishedPod]) -> list[str]:
    out: set[str] = set()
    for pod in pods:
        if service_selects(service, pod):
            out.update(f"{pod['ip']}:{p['targetPort']}" for p in service["ports"])
    return sorted(out, key=lambda e: (tuple(int(x) for x in e.split(":")[0].split(".")), e))


def empty(name: str) -> StatusReport:
    return {"name": name, "nodes": [], "pods": [], "services": [], "clients": []}


def report(cluster: Cluster, state_dir: Path, containers: Mapping[str, str],
           now: float | None = None) -> StatusReport:
    """The status of a rendered lab whose containers are in `containers` (name: state)."""
    docs = read_node_states(state_dir, [n["name"] for n in cluster["nodes"]])
    running = {n["name"] for n in cluster["nodes"] if containers.get(n["container"]) == "running"}
    live = live_nodes(cluster, state_dir, time.time() if now is None else now) & running
    pods = serving_pods(cluster, docs, live)  # endpoints come from live nodes only
    # What a running node last said about its pods; on a node not heard from for the
    # grace period a pod keeps its address but its state is Unknown (as kubectl shows).
    seen = serving_pods(cluster, docs, running)
    for p in seen:
        if p["node"] not in live:
            p["state"] = "Unknown"
    wanted = {(p["name"], p["node"]) for p in cluster["pods"]}
    by_name = {p["name"]: p for p in seen if (p["name"], p["node"]) in wanted}
    # Pods removed from the lab file that their node still terminates (kubectl lists
    # them as Terminating until they are gone). A pod moved to another node keeps one
    # row, the new one's: names stay unique, as pod names in a namespace are.
    names = {p["name"] for p in cluster["pods"]}
    leaving = [p for p in seen if (p["name"], p["node"]) not in wanted and p["name"] not in names]
    announcers = lb_announcers(cluster, pods, live)  # who answers ARP for each LB IP
    return {
        "name": cluster["name"],
        "nodes": [{"name": n["name"], "container": n["container"], "ip": n["ip"],
                   "podCIDR": n["podCIDR"], "zone": n.get("zone") or None,
                   "host": n.get("host"),
                   "state": _node_state(containers.get(n["container"]), docs.get(n["name"]),
                                        cluster["generation"], n["name"] in live)}
                  for n in cluster["nodes"]],
        "pods": [_pod_row(p, by_name.get(p["name"])) for p in cluster["pods"]]
        + [_pod_row({"name": p["name"], "node": p["node"], "namespace": namespace_of(p)}, p)
           for p in leaving],
        "services": [_service_row(s, pods, announcers) for s in cluster["services"]],
        "clients": [_client_row(c) for c in cluster["clients"]],
    }


def status(client: docker.DockerClient | None, paths: LabPaths, name: str) -> StatusReport:
    """The status of the lab rendered in `paths`, its containers asked of the Docker SDK."""
    from generator.runtime.engine import lab_containers

    cluster = paths.cluster()
    if cluster is None:
        return empty(name)
    from generator.runtime.hoststate import refresh_state

    if "hosts" in cluster:  # its members are on the hosts' engines: the registry asks each
        from generator.runtime.registry import find_running

        running = find_running(name)
        containers = {m.name: m.state for m in running.containers} if running else {}
    else:
        containers = {c.name: c.status for c in lab_containers(client, name)} if client else {}
    refresh_state(cluster, paths.state_dir, force=True)
    return report(cluster, paths.state_dir, containers)


def from_registry(paths: LabPaths, name: str, running: RunningLab | None) -> StatusReport:
    """The same, from the registry snapshot a command already holds."""
    cluster = paths.cluster()
    if cluster is None:
        return empty(name)
    from generator.runtime.hoststate import refresh_state

    containers = {m.name: m.state for m in running.containers} if running else {}
    refresh_state(cluster, paths.state_dir, force=True)
    return report(cluster, paths.state_dir, containers)


def _service_row(service: ServiceSpec, pods: list[PublishedPod],
                 announcers: dict[str, str | None]) -> ServiceRow:
    """A service with its endpoints; the LoadBalancer fields are null where they do not
    apply, and `announcedBy` names the node answering ARP for its load-balancer IP
    (MetalLB's layer 2 owner; null: nobody may)."""
    ip = service.get("loadBalancerIP")
    return {"name": service["name"], "namespace": namespace_of(service), "type": service["type"],
            "clusterIP": service["clusterIP"],
            "loadBalancerIP": ip, "externalIPs": list(service.get("externalIPs") or []),
            "healthCheckNodePort": service.get("healthCheckNodePort"),
            "announcedBy": announcers.get(ip) if ip else None,
            "ports": [p.copy() for p in service["ports"]],
            "endpoints": service_endpoints(service, pods),
            "terminating": terminating_endpoints(service, pods)}


def _client_row(client: ClientSpec) -> ClientSpec:
    row: ClientSpec = {"name": client["name"], "container": client["container"],
                       "ip": client["ip"]}
    if "host" in client:
        row["host"] = client["host"]
    return row


def _pod_row(spec: PodSpec | dict[str, str], seen: PublishedPod | None) -> PodRow:
    return {"name": spec["name"], "namespace": namespace_of(spec), "node": spec["node"],
            "ip": seen["ip"] if seen else None,
            "state": seen["state"] if seen else "Unknown",
            "restarts": seen.get("restarts", 0) if seen else 0}
