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
from pathlib import Path
from typing import Any

STATE_DIR = Path("/var/lib/kgen/state")
CLUSTER_FILE = Path("/etc/kgen/cluster.json")


def write_json_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_node_states(state_dir: Path, nodes: list[str]) -> dict[str, dict[str, Any]]:
    """The published document of each listed node that has one."""
    docs = {}
    for node in nodes:
        doc = read_json(state_dir / f"{node}.json")
        if isinstance(doc, dict):
            docs[node] = doc
    return docs


def published_pods(cluster: dict[str, Any], docs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Pods as every proxy sees them: only pods the cluster state still lists.

    Sorted by name, so that the host and the nodes compute the same digest.
    """
    wanted = {p["name"]: p for p in cluster["pods"]}
    pods = []
    for node, doc in docs.items():
        for name, pod in (doc.get("pods") or {}).items():
            spec = wanted.get(name)
            if spec is None or spec["node"] != node:
                continue
            pods.append({"name": name, "node": node, "ip": pod.get("ip"),
                         "state": pod.get("state", "Pending"),
                         "restarts": int(pod.get("restarts", 0)), "labels": spec["labels"]})
    return sorted(pods, key=lambda p: p["name"])


def ready_pods(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pods that serve: Running with an IP (an EndpointSlice's ready endpoints)."""
    return [p for p in pods if p.get("state") == "Running" and p.get("ip")]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def input_digest(services: list[dict[str, Any]], pods: list[dict[str, Any]]) -> str:
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


def grace_period(cluster: dict[str, Any]) -> float:
    return float(cluster.get("nodeGracePeriod", DEFAULT_GRACE_PERIOD))


def heartbeat_period(cluster: dict[str, Any]) -> float:
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


def live_nodes(cluster: dict[str, Any], state_dir: Path, now: float) -> set[str]:
    """Nodes heard from within the grace period."""
    grace = grace_period(cluster)
    return {n["name"] for n in cluster["nodes"]
            if is_live(heartbeat_age(state_dir, n["name"], now), grace)}


def serving_pods(cluster: dict[str, Any], docs: dict[str, dict[str, Any]],
                 live: set[str]) -> list[dict[str, Any]]:
    """What every proxy and `kgen status` make endpoints from: the published pods
    of live nodes only (of those, `ready_pods` are the endpoints)."""
    return published_pods(cluster, {n: d for n, d in docs.items() if n in live})
