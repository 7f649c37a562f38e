"""Waiting for a lab to be ready, from the documents its agents publish.

The host never asks a node: every agent writes `state/<node>.json` and renews
its heartbeat in the shared state directory, and the host reads those files
(only the ones whose stamp changed since the last look). One listing of the
lab's containers now and then tells a container that stopped.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.node.contract import (
    DNS_NAMESPACE,
    DNS_SERVICE,
    Cluster,
    NodeState,
    file_stamp,
    input_digest,
    live_nodes,
    read_json,
    serving_pods,
)
from generator.node.netpol.spec import netpol_digest
from generator.node.pod_dns import dns_settings, zone_digest, zone_text
from generator.runtime.errors import RuntimeFailure

# The wait for a lab to be ready: a base plus what its size needs on a slow machine.
WAIT_BASE = 60.0
WAIT_PER_NODE = 2.0
WAIT_PER_POD = 0.5
POLL = 0.1  # seconds between looks at the state files
CONTAINER_CHECK = 2.0  # seconds between listings of the lab's containers


def default_timeout(cluster: Cluster) -> float:
    return WAIT_BASE + WAIT_PER_NODE * len(cluster["nodes"]) + WAIT_PER_POD * len(cluster["pods"])


@dataclass
class Readiness:
    """How far the lab is: counts per kind, and what is missing (short phrases)."""

    nodes: int = 0
    nodes_ready: int = 0
    pods: int = 0
    pods_running: int = 0
    proxies_synced: int = 0
    missing: list[str] = field(default_factory=list)

    def counts(self) -> list[tuple[str, int, int]]:
        return [("nodes ready", self.nodes_ready, self.nodes),
                ("pods running", self.pods_running, self.pods),
                ("proxies synced", self.proxies_synced, self.nodes)]


def readiness(cluster: Cluster, docs: dict[str, NodeState], live: set[str] | None = None) -> Readiness:
    """`live`: the nodes heard from within the grace period (all of them when not given)."""
    live = {n["name"] for n in cluster["nodes"]} if live is None else live
    found = Readiness(nodes=len(cluster["nodes"]), pods=len(cluster["pods"]))
    serving = serving_pods(cluster, docs, live)
    digest = input_digest(cluster["services"], serving)
    zone_file = zone_text(cluster, serving)
    zone = zone_digest(zone_file) if zone_file is not None else None
    policies = netpol_digest(cluster)
    for node in cluster["nodes"]:
        doc = docs.get(node["name"])
        if (doc is None or node["name"] not in live or not doc.get("ready")
                or doc.get("generation") != cluster["generation"]):
            found.missing.append(f"node {node['name']}")
            continue
        found.nodes_ready += 1
        proxy = doc.get("proxy")
        if proxy is None or proxy["digest"] != digest:
            found.missing.append(f"proxy on {node['name']}")
        else:
            found.proxies_synced += 1
            if zone is not None and _served_zone(doc) != zone:
                found.missing.append(f"DNS zone on {node['name']}")
        if not _enforces(doc, policies, bool(cluster.get("networkPolicies"))):
            found.missing.append(f"network policies on {node['name']}")
    # A crash-looping pod has its IP and is reported as such: waiting longer changes nothing.
    running = {p["name"] for p in serving if p["ip"]
               and p["state"] in ("Running", "CrashLoopBackOff")}
    found.pods_running = sum(1 for p in cluster["pods"] if p["name"] in running)
    found.missing += [f"pod {p['name']}" for p in cluster["pods"] if p["name"] not in running]
    return found


def _enforces(doc: NodeState, digest: str, any_policy: bool) -> bool:
    """Whether the node enforces the current policies. An agent that publishes no `netpol`
    at all predates NetworkPolicy (a lab brought up by an older kgen, which `apply` does
    not restart): with no policy to enforce it is not waited for."""
    enforced = doc.get("netpol")
    if enforced is None:
        return "netpol" not in doc and not any_policy
    return enforced["digest"] == digest


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


def pending(cluster: Cluster, docs: dict[str, NodeState],
            live: set[str] | None = None) -> list[str]:
    """What is not there yet, as short phrases for the progress line."""
    return readiness(cluster, docs, live).missing


def failures(cluster: Cluster, docs: dict[str, NodeState]) -> list[str]:
    found = [f"node {n}: {d['error']}" for n, d in docs.items() if d.get("error")]
    for node, doc in docs.items():
        for pod, info in (doc.get("pods") or {}).items():
            if info.get("state") == "Failed":
                found.append(f"pod {pod} on {node}: {info.get('error')}")
    return found


class StateReader:
    """The agents' documents, re-read only when a file's stamp changed: a 250-node
    lab's host looks ten times a second without parsing 250 files each time."""

    def __init__(self, state_dir: Path, nodes: list[str]) -> None:
        self.state_dir = state_dir
        self.nodes = nodes
        self.stamps: dict[str, tuple[int, int, int] | None] = {}
        self.docs: dict[str, NodeState] = {}

    def read(self) -> dict[str, NodeState]:
        for node in self.nodes:
            path = self.state_dir / f"{node}.json"
            stamp = file_stamp(path)
            if stamp == self.stamps.get(node, ()):
                continue
            self.stamps[node] = stamp
            doc = read_json(path) if stamp else None
            if isinstance(doc, dict):
                self.docs[node] = doc  # type: ignore[assignment]
            else:
                self.docs.pop(node, None)
                self.stamps.pop(node, None)  # half-written or gone: look again next time
        return dict(self.docs)


Progress = Callable[[Readiness, float], None]  # how far, seconds waited so far


def wait_ready(stopped: Callable[[], list[str]], state_dir: Path, cluster: Cluster,
               progress: Progress, timeout: float | None = None) -> dict[str, float]:
    """Until every node is live and ready, every pod runs and every proxy has synced
    what the host computes. `stopped()` names the lab's containers that do not run.
    Returns when (seconds into the wait) all nodes, all pods and all proxies were done."""
    timeout = default_timeout(cluster) if timeout is None else timeout
    reader = StateReader(state_dir, [n["name"] for n in cluster["nodes"]])
    started = time.monotonic()
    next_check = started + CONTAINER_CHECK
    milestones: dict[str, float] = {}
    while True:
        docs = reader.read()
        now = time.monotonic()
        found = readiness(cluster, docs, live_nodes(cluster, state_dir, time.time()))
        _milestones(found, now - started, milestones)
        if not found.missing and not dns_answers(cluster):
            found.missing.append("DNS answer")
        progress(found, now - started)
        if not found.missing:
            return milestones
        broken = failures(cluster, docs)
        if broken:
            raise RuntimeFailure("; ".join(broken))
        if now >= next_check:
            next_check = now + CONTAINER_CHECK
            _refuse_stopped(stopped())
        if now - started > timeout:
            missing = found.missing
            shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more"
                                               if len(missing) > 20 else "")
            raise RuntimeFailure(f"not ready after {timeout:.0f}s: {shown}; "
                                 "see `docker logs <container>` (or give `--timeout`)")
        time.sleep(POLL)


def _milestones(found: Readiness, at: float, seen: dict[str, float]) -> None:
    for key, done in (("agents", found.nodes_ready == found.nodes),
                      ("pods", found.pods_running == found.pods),
                      ("proxies", found.proxies_synced == found.nodes)):
        if done and key not in seen:
            seen[key] = at


def _refuse_stopped(dead: list[str]) -> None:
    if dead:
        raise RuntimeFailure(f"container(s) stopped: {', '.join(dead)} "
                             f"(see `docker logs {dead[0]}`)")


def stopped_members(client: Any, name: str) -> Callable[[], list[str]]:
    from generator.runtime.engine import lab_containers

    return lambda: [c.name for c in lab_containers(client, name) if c.status != "running"]
