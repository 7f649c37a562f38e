"""Taking a lab down: everything that carries its label, its host rule and its state."""

from __future__ import annotations

import shutil

import docker
import docker.errors

from generator.cluster.names import network_name
from generator.runtime.engine import LABEL, lab_containers
from generator.runtime.hostgw import remove_host_gw
from generator.runtime.paths import LabPaths


def down(client: docker.DockerClient, name: str, paths: LabPaths | None) -> list[str]:
    remove_host_gw(name)
    removed = []
    for container in lab_containers(client, name):
        container.remove(force=True)
        removed.append(f"container {container.name}")
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
