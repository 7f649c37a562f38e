"""`kgen status`: the desired cluster joined with what containers and agents report."""

from __future__ import annotations

from typing import Any

import docker

from generator.node.contract import (
    Cluster,
    NodeState,
    PodSpec,
    PublishedPod,
    ServiceSpec,
    published_pods,
    read_node_states,
    ready_pods,
    selects,
)
from generator.runtime.engine import lab_containers
from generator.runtime.paths import LabPaths


def _node_state(container: Any, doc: NodeState | None, generation: str) -> str:
    if container is None:
        return "Absent"
    if container.status != "running":
        return container.status.capitalize()
    if doc and doc.get("ready") and doc.get("generation") == generation:
        return "Ready"
    return "NotReady"


def service_endpoints(service: ServiceSpec, pods: list[PublishedPod]) -> list[str]:
    """`ip:targetPort` of every Running pod matching the selector, for every port."""
    out: set[str] = set()
    for pod in ready_pods(pods):
        if selects(service["selector"], pod["labels"]):
            out.update(f"{pod['ip']}:{p['targetPort']}" for p in service["ports"])
    return sorted(out, key=lambda e: (tuple(int(x) for x in e.split(":")[0].split(".")), e))


def status(client: docker.DockerClient | None, paths: LabPaths, name: str) -> dict[str, Any]:
    cluster = paths.cluster()
    if cluster is None:
        return {"name": name, "nodes": [], "pods": [], "services": [], "clients": []}
    containers = {c.name: c for c in lab_containers(client, name)} if client else {}
    docs = read_node_states(paths.state_dir, [n["name"] for n in cluster["nodes"]])
    live = {n for n, d in docs.items()
            if containers.get(_container_of(cluster, n)) is not None
            and containers[_container_of(cluster, n)].status == "running"}
    pods = published_pods(cluster, {n: d for n, d in docs.items() if n in live})
    by_name = {p["name"]: p for p in pods}
    return {
        "name": cluster["name"],
        "nodes": [{"name": n["name"], "container": n["container"], "ip": n["ip"],
                   "podCIDR": n["podCIDR"],
                   "state": _node_state(containers.get(n["container"]), docs.get(n["name"]),
                                        cluster["generation"])}
                  for n in cluster["nodes"]],
        "pods": [_pod_row(p, by_name.get(p["name"])) for p in cluster["pods"]],
        "services": [{"name": s["name"], "type": s["type"], "clusterIP": s["clusterIP"],
                      "ports": [dict(p) for p in s["ports"]],
                      "endpoints": service_endpoints(s, pods)}
                     for s in cluster["services"]],
        "clients": [{"name": c["name"], "container": c["container"], "ip": c["ip"]}
                    for c in cluster["clients"]],
    }


def _pod_row(spec: PodSpec, seen: PublishedPod | None) -> dict[str, Any]:
    return {"name": spec["name"], "node": spec["node"], "ip": seen["ip"] if seen else None,
            "state": seen["state"] if seen else "Unknown"}


def _container_of(cluster: Cluster, node: str) -> str:
    return next(n["container"] for n in cluster["nodes"] if n["name"] == node)
