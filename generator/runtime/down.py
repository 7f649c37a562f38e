"""Taking a lab down: everything that carries its label, its host rule and its state."""

from __future__ import annotations

import contextlib
import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import docker.errors

from generator.cluster.names import network_name
from generator.runtime.engine import LABEL, lab_containers
from generator.runtime.hostgw import remove_host_gw
from generator.runtime.paths import LabPaths

REMOVE_WORKERS = 8


def _remove(container: Any) -> None:
    with contextlib.suppress(docker.errors.NotFound):  # gone meanwhile: what down wants
        container.remove(force=True)


def down(client: docker.DockerClient, name: str, paths: LabPaths | None) -> list[str]:
    remove_host_gw(name)
    containers = lab_containers(client, name)
    # A few at a time: one by one, a 250-node lab takes minutes to go.
    with ThreadPoolExecutor(max_workers=REMOVE_WORKERS) as pool:
        list(pool.map(_remove, containers))
    removed = [f"container {c.name}" for c in containers]
    networks = client.networks.list(filters={"label": f"{LABEL}={name}"})
    networks += [n for n in client.networks.list(names=[network_name(name)])
                 if n.name == network_name(name) and n.id not in {m.id for m in networks}]
    for net in networks:
        try:
            net.remove()
            removed.append(f"network {net.name}")
        except docker.errors.NotFound:
            pass
    if paths is not None and paths.state_dir.exists():
        shutil.rmtree(paths.state_dir)
        removed.append(f"state {paths.state_dir}")
    return removed
