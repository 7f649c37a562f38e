"""What must go before a lab's containers start: the kernel's bridge netfilter,
and leftovers of another run that would clash with the lab's names."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import docker
import docker.errors

from generator.cluster.names import network_name, project_name
from generator.node.contract import HEARTBEAT_DIR, Cluster
from generator.runtime.engine import LABEL, lab_containers
from generator.runtime.errors import RuntimeFailure
from generator.runtime.paths import LabPaths


def ensure_bridge_netfilter() -> None:
    """Node sysctls include net.bridge.*, which exists only with br_netfilter loaded."""
    if Path("/proc/sys/net/bridge").is_dir():
        return
    if shutil.which("modprobe"):
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, timeout=30)
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
