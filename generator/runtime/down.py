"""Taking a lab down: everything that carries its label, its host rule and its state."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import docker.errors

from generator.cluster.names import network_name
from generator.runtime.engine import LABEL, lab_containers
from generator.runtime.errors import RuntimeFailure
from generator.runtime.hostgw import remove_host_gw
from generator.runtime.paths import LabPaths

NODE_IMAGE = "kgen-node"
REMOVE_WORKERS = 8


REMOVE_TRIES = 3  # a busy engine may miss a kill's exit event (seen at 250 nodes)


def remove_container(container: Any) -> str | None:
    """None once the container is gone; else what the engine said the last time."""
    said = ""
    for _ in range(REMOVE_TRIES):
        try:
            container.remove(force=True)
            return None
        except docker.errors.NotFound:  # gone meanwhile: what down wants
            return None
        except docker.errors.APIError as err:
            said = str(err.explanation or err)
    return said


def remove_containers(containers: list[Any], lab: str, where: str = "") -> None:
    """Remove them, a few at a time (one by one, a 250-node lab takes minutes to go);
    RuntimeFailure in one line when any is left, once every other one is gone."""
    with ThreadPoolExecutor(max_workers=REMOVE_WORKERS) as pool:
        left = [said for said in pool.map(remove_container, containers) if said is not None]
    if left:
        raise RuntimeFailure(f"{len(left)} of {len(containers)} containers of lab {lab}{where} "
                             f"could not be removed (the engine said: {left[0]}); run kgen "
                             "down again")


def down(client: docker.DockerClient, name: str, paths: LabPaths | None) -> list[str]:
    from generator.runtime.hostcli import recorded_engines

    cluster = paths.cluster() if paths is not None else None
    spans = (cluster is not None and "hosts" in cluster) or bool(recorded_engines())
    if spans:  # a lab spanning hosts: its members are on their engines
        from generator.runtime.remote import down_hosts

        removed_remote = down_hosts(name, cluster)
    else:
        removed_remote = []
    containers = lab_containers(client, name)
    remove_containers(containers, name)
    removed = [f"container {c.name}" for c in containers] + removed_remote
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
        remove_state(paths.state_dir, client)
        removed.append(f"state {paths.state_dir}")
    # Last: a host firewall that does not answer must not keep the lab's containers.
    remove_host_gw(name)
    return removed


def remove_state(state_dir: Path, client: docker.DockerClient | None) -> None:
    """Remove the state directory the nodes wrote into.

    Agents give what they write to the directory's owner (`node.contract.adopt`),
    so the user who ran `kgen up` removes it here. What a node left as root (a lab
    that an older kgen, or root, brought up) is removed as root by a throw-away
    container of the node image, which only a user of the Docker engine can start.
    """
    try:
        shutil.rmtree(state_dir)
        return
    except PermissionError:
        if client is None:
            raise RuntimeFailure(_cannot_remove(state_dir, "no Docker engine to remove them")) from None
    _empty_as_root(client, state_dir)
    try:
        shutil.rmtree(state_dir)
    except PermissionError:
        raise RuntimeFailure(_cannot_remove(state_dir, "removing them in a container failed")) from None


def _empty_as_root(client: docker.DockerClient, state_dir: Path) -> None:
    images = client.images.list(name=NODE_IMAGE)
    if not images:
        raise RuntimeFailure(_cannot_remove(state_dir, f"no {NODE_IMAGE} image to remove them with"))
    try:
        client.containers.run(
            images[0].id, ["find", "/state", "-mindepth", "1", "-delete"], entrypoint=[],
            volumes={str(state_dir.resolve()): {"bind": "/state", "mode": "rw"}},
            network_mode="none", remove=True, labels={"kgen.role": "cleanup"})
    except docker.errors.DockerException as err:
        raise RuntimeFailure(_cannot_remove(state_dir, f"the clean-up container failed: {err}")) from None


def _cannot_remove(state_dir: Path, why: str) -> str:
    return (f"cannot remove {state_dir}: a lab node wrote files there as root, and {why}; "
            f"remove it with `sudo rm -rf {state_dir}`")
