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
                         "state": pod.get("state", "Pending"), "labels": spec["labels"]})
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
