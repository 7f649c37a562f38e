"""What node agents publish in the shared state directory, and how it is read.

Each agent owns one file, `<state dir>/<node>.json`, replaced atomically. The
host (`kgen status`, `kgen up`) and every other agent read all of them; this
module is the one definition of that format on both sides.
"""

from __future__ import annotations

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
