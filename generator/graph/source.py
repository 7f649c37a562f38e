"""Which picture `kgen graph` draws: the running lab's, else the lab file's.

From the lab file, nothing asks Docker: the node network is the lab's own,
else the one an earlier render of `kgen-<name>/` chose, else the first of the
pool (what `kgen up` picks on a machine with no other lab), so the same lab
file and directory always give the same picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from generator.cluster.build import build_state
from generator.cluster.network import choose_node_network
from generator.graph.picture import Picture, from_cluster
from generator.lab.model import Lab
from generator.runtime.networks import previous_node_network
from generator.runtime.paths import LabPaths


def from_lab_file(lab: Lab, out_dir: Path) -> Picture:
    network = choose_node_network(lab, previous_node_network(out_dir), [])
    return from_cluster(build_state(lab, network))


def from_running_lab(client: Any, paths: LabPaths, name: str) -> Picture | None:
    """The live picture, or None when no container of the lab runs (or it was never rendered)."""
    from generator.runtime.engine import lab_containers
    from generator.runtime.status import status

    cluster = paths.cluster()
    if cluster is None or cluster.get("name") != name:
        return None
    if not any(c.status == "running" for c in lab_containers(client, name)):
        return None
    return from_cluster(cluster, status(client, paths, name))


def engine() -> Any | None:
    """A Docker client when an engine answers; None otherwise (then the lab file is drawn)."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
        return client
    except Exception:
        return None
