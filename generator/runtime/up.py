"""Bringing a lab up: kernel prerequisites, stale leftovers, compose, readiness."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors

from generator.cluster.names import network_name, project_name
from generator.node.contract import (
    DNS_NAMESPACE,
    DNS_SERVICE,
    HEARTBEAT_DIR,
    Cluster,
    NodeState,
    input_digest,
    live_nodes,
    read_node_states,
    serving_pods,
)
from generator.node.pod_dns import dns_settings, zone_digest, zone_text
from generator.runtime.compose import compose
from generator.runtime.engine import LABEL, lab_containers
from generator.runtime.errors import RuntimeFailure
from generator.runtime.paths import LabPaths

# The wait for a lab to be ready: a base plus what its size needs on a slow machine.
WAIT_BASE = 60.0
WAIT_PER_NODE = 2.0
WAIT_PER_POD = 0.5


def default_timeout(cluster: Cluster) -> float:
    return WAIT_BASE + WAIT_PER_NODE * len(cluster["nodes"]) + WAIT_PER_POD * len(cluster["pods"])


def ensure_bridge_netfilter() -> None:
    """Node sysctls include net.bridge.*, which exists only with br_netfilter loaded."""
    if Path("/proc/sys/net/bridge").is_dir():
        return
    if shutil.which("modprobe"):
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True)
    if not Path("/proc/sys/net/bridge").is_dir():
        raise RuntimeFailure("the kernel has no bridge netfilter (/proc/sys/net/bridge); "
                             "run `modprobe br_netfilter` as root")


def remove_stale(client: docker.DockerClient, cluster: Cluster) -> list[str]:
    """Remove what would make compose fail: same-named leftovers of another lab run."""
    name = cluster["name"]
    project = project_name(name)
    members = {m["container"] for m in cluster["nodes"] + cluster["clients"]}
    removed = []
    for container in _candidates(client, name, members):
        labels = container.labels or {}
        ours = labels.get("com.docker.compose.project") == project
        same_lab = labels.get(LABEL) == name
        if (container.name in members and not ours) or (same_lab and container.name not in members):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
            removed.append(f"container {container.name}")
    for net in client.networks.list(names=[network_name(name)]):
        subnets = [c.get("Subnet") for c in (net.attrs.get("IPAM") or {}).get("Config") or []]
        ours = (net.attrs.get("Labels") or {}).get("com.docker.compose.project") == project
        if net.name == network_name(name) and (not ours or subnets != [cluster["nodeNetwork"]]):
            for c in client.containers.list(all=True, filters={"network": net.id}):
                c.remove(force=True)
                removed.append(f"container {c.name}")
            net.remove()
            removed.append(f"network {net.name}")
    return removed


def _candidates(client: docker.DockerClient, name: str, members: set[str]) -> list[Any]:
    """Containers of this lab by label, and any container holding a member's name.

    Asked by filter, not by listing the whole engine: other labs' containers come
    and go meanwhile, and inspecting one that just went fails."""
    found = {c.id: c for c in client.containers.list(all=True, filters={"label": f"{LABEL}={name}"})}
    for member in sorted(members):
        for c in client.containers.list(all=True, filters={"name": f"^{member}$"}):
            found.setdefault(c.id, c)
    return list(found.values())


def clear_stale_state(client: docker.DockerClient, paths: LabPaths, cluster: Cluster) -> None:
    """Forget what agents published before their container (re)starts."""
    running = {c.name for c in lab_containers(client, cluster["name"]) if c.status == "running"}
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    keep = {n["name"] for n in cluster["nodes"] if n["container"] in running}
    for path in paths.state_dir.glob("*.json"):
        if path.stem not in keep:
            path.unlink()
    for path in (paths.state_dir / HEARTBEAT_DIR).glob("*"):
        if path.name not in keep:
            path.unlink()


def start(paths: LabPaths, cluster: Cluster) -> None:
    compose(paths.compose_file, project_name(cluster["name"]), "up", "-d", "--remove-orphans")


def expected_digest(cluster: Cluster, docs: dict[str, NodeState],
                    live: set[str]) -> str:
    return input_digest(cluster["services"], serving_pods(cluster, docs, live))


def pending(cluster: Cluster, docs: dict[str, NodeState],
            live: set[str] | None = None) -> list[str]:
    """What is not there yet, as short phrases for the progress line. `live`: the
    nodes heard from within the grace period (all of them when not given)."""
    live = {n["name"] for n in cluster["nodes"]} if live is None else live
    missing = []
    digest = expected_digest(cluster, docs, live)
    zone_file = zone_text(cluster, serving_pods(cluster, docs, live))
    zone = zone_digest(zone_file) if zone_file is not None else None
    for node in cluster["nodes"]:
        doc = docs.get(node["name"])
        if (doc is None or node["name"] not in live or not doc.get("ready")
                or doc.get("generation") != cluster["generation"]):
            missing.append(f"node {node['name']}")
            continue
        proxy = doc.get("proxy")
        if proxy is None or proxy["digest"] != digest:
            missing.append(f"proxy on {node['name']}")
        elif zone is not None and _served_zone(doc) != zone:
            missing.append(f"DNS zone on {node['name']}")
    # A crash-looping pod has its IP and is reported as such: waiting longer changes nothing.
    running = {p["name"] for p in serving_pods(cluster, docs, live) if p["ip"]
               and p["state"] in ("Running", "CrashLoopBackOff")}
    missing += [f"pod {p['name']}" for p in cluster["pods"] if p["name"] not in running]
    return missing


def _served_zone(doc: NodeState) -> str | None:
    served = doc.get("dns")
    return served["digest"] if served else None


def dns_answers(cluster: Cluster) -> bool:
    """Does the lab's DNS answer a query for kube-dns itself, sent from the first node
    to the service's cluster IP through kube-proxy (True when the lab runs no DNS)?"""
    settings = dns_settings(cluster)
    if settings is None:
        return True
    nameserver, domain = settings
    argv = ["docker", "exec", cluster["nodes"][0]["container"], "dig", "+short", "+time=1",
            "+tries=1", f"@{nameserver}", f"{DNS_SERVICE}.{DNS_NAMESPACE}.svc.{domain}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return done.stdout.split() == [nameserver]


def failures(cluster: Cluster, docs: dict[str, NodeState]) -> list[str]:
    found = [f"node {n}: {d['error']}" for n, d in docs.items() if d.get("error")]
    for node, doc in docs.items():
        for pod, info in (doc.get("pods") or {}).items():
            if info.get("state") == "Failed":
                found.append(f"pod {pod} on {node}: {info.get('error')}")
    return found


def wait_ready(client: docker.DockerClient, paths: LabPaths, cluster: Cluster,
               progress: Callable[[int, int, str], None], timeout: float | None = None) -> None:
    """Until every node is live and ready, every pod runs and every proxy has synced
    what the host computes; `timeout` (seconds) defaults to one that grows with the lab."""
    timeout = default_timeout(cluster) if timeout is None else timeout
    total = len(cluster["nodes"]) * 2 + len(cluster["pods"])
    deadline = time.monotonic() + timeout
    while True:
        docs = read_node_states(paths.state_dir, [n["name"] for n in cluster["nodes"]])
        missing = pending(cluster, docs, live_nodes(cluster, paths.state_dir, time.time()))
        if not missing and not dns_answers(cluster):
            missing = ["DNS answer"]
        progress(total - len(missing), total, ", ".join(missing[:4]))
        if not missing:
            return
        broken = failures(cluster, docs)
        if broken:
            raise RuntimeFailure("; ".join(broken))
        dead = [c.name for c in lab_containers(client, cluster["name"]) if c.status != "running"]
        if dead:
            raise RuntimeFailure(f"container(s) stopped: {', '.join(dead)} "
                                 f"(see `docker logs {dead[0]}`)")
        if time.monotonic() > deadline:
            shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more"
                                               if len(missing) > 20 else "")
            raise RuntimeFailure(f"not ready after {timeout:.0f}s: {shown}; "
                                 "see `docker logs <container>` (or give `--timeout`)")
        time.sleep(0.25)
