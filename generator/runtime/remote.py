"""Members of a lab that spans hosts, each on its own engine (lab contract section 11).

Hosts share no filesystem, so nothing is bind-mounted from the machine that ran
`kgen up`: the rendered config (cluster.json, a node's CNI configuration) is
copied into each container through the engine (`put_archive`, before it starts;
`kgen apply` copies cluster.json again and renames it in place), and the state
directory is a volume of each engine, shared by that host's nodes, which the
nodes' state relay (generator/node/statesync.py) keeps in step across hosts.
The documents come back through the engines too (runtime/hoststate.py).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from generator.node import contract
from generator.node.contract import Cluster
from generator.runtime.create import ContainerSpec
from generator.runtime.errors import RuntimeFailure
from generator.runtime.swarm import member_cli

SHARED_OBJECTS_GONE_WITHIN = 30.0  # a worker's copy of a removed overlay goes within seconds


def state_volume(lab: str) -> str:
    return f"kgen-{lab}-state"


def deliveries(spec: ContainerSpec) -> tuple[list[str], list[tuple[Path, str]]]:
    """The binds a remote engine keeps (the state volume) and the directories copied in
    instead of bind-mounted: (local directory, path in the container)."""
    keep, copy = [], []
    for bind in spec.host["binds"]:
        source, target = bind.split(":")[:2]
        if target == contract.STATE_MOUNT:
            keep.append(f"{state_volume(spec.create['labels']['kgen.lab'])}:{target}")
        else:
            copy.append((Path(source), target))
    return keep, copy


def archive(files: list[tuple[Path, str]]) -> bytes:
    """A tar of each local directory's files under its path in the container (from /)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for source, target in files:
            for path in sorted(source.rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=f"{target.strip('/')}/{path.relative_to(source)}")
    return buffer.getvalue()


def create_member(client: docker.DockerClient, spec: ContainerSpec) -> str:
    """Create (or keep) and start one member on its engine, its files copied in."""
    api = client.api
    keep, copy = deliveries(spec)
    host = {**spec.host, "binds": keep}
    digest = spec.digest()
    for old in api.containers(all=True, filters={"name": f"^{spec.name}$"}):
        if (old.get("Labels") or {}).get("kgen.spec") == digest and old.get("State") == "running":
            return "kept"
        api.remove_container(old["Id"], force=True)
    endpoint = api.create_endpoint_config(ipv4_address=spec.ip, aliases=[spec.service])
    created = api.create_container(
        spec.image, **{**spec.create, "labels": {**spec.create["labels"], "kgen.spec": digest}},
        host_config=api.create_host_config(**host),
        networking_config=api.create_networking_config({spec.network: endpoint}))
    if copy:
        api.put_archive(created["Id"], "/", archive(copy))
    api.start(created["Id"])
    return "created"


def ensure_volume(client: docker.DockerClient, lab: str, labels: dict[str, str]) -> None:
    try:
        client.volumes.get(state_volume(lab))
    except docker.errors.NotFound:
        client.volumes.create(state_volume(lab), labels=labels)


def push_cluster_file(cluster: Cluster, cluster_file: Path) -> None:
    """cluster.json into every member, written beside and renamed (agents never read
    half a file): what `kgen apply` does on a lab that spans hosts."""
    data = cluster_file.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(".cluster.json.new")
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
    failed = []
    for member in [*cluster["nodes"], *cluster["clients"]]:
        argv = member_cli(cluster, member["container"])
        cp = subprocess.run([*argv, "cp", "-", f"{member['container']}:{contract.CONFIG_MOUNT}"],
                            input=buffer.getvalue(), capture_output=True, timeout=60)
        mv = subprocess.run([*argv, "exec", member["container"], "mv", "-f",
                             f"{contract.CONFIG_MOUNT}/.cluster.json.new",
                             str(contract.CLUSTER_FILE)], capture_output=True, timeout=60) \
            if cp.returncode == 0 else cp
        if mv.returncode != 0:
            failed.append(f"{member['container']}: {mv.stderr.decode(errors='replace').strip()}")
    if failed:
        raise RuntimeFailure(f"copying cluster.json into {failed[0]}")


def down_hosts(name: str, cluster: Cluster | None) -> list[str]:
    """Remove the lab's containers, then its volumes and networks, from every engine it
    may be on: its hosts, and every engine `kgen up` recorded (a lab whose files are
    gone). Containers go first everywhere: the overlay network goes only once no
    engine has a member attached to it."""
    from generator.runtime.down import remove_containers
    from generator.runtime.hostcli import forget_engine, recorded_engines
    from generator.runtime.swarm import engine_client, lab_objects

    values = [h["docker"] for h in (cluster.get("hosts", []) if cluster else [])]
    clients = {}
    for value in dict.fromkeys([*values, *recorded_engines()]):
        try:
            clients[value] = engine_client({"name": value, "docker": value}, timeout=60)
        except Exception:  # an engine that is away: the rest is still removed
            continue
    removed: list[str] = []
    for value, client in clients.items():
        containers = lab_objects(client, name)["containers"]
        remove_containers(containers, name, f" on {value}")
        removed += [f"container {container.name} on {value}" for container in containers]
    for value, client in clients.items():
        removed += _remove_shared_objects(client, name, value)
        if not client.containers.list(all=True, filters={"label": "kgen.lab"}):
            forget_engine(value)
    return removed


def _remove_shared_objects(client: Any, name: str, value: str) -> list[str]:
    """The lab's networks and volumes on one engine. A worker drops its copy of a swarm
    overlay only after the manager removed it and its own endpoints are cleaned up, a
    moment later: removal is retried until nothing of the lab is listed, within
    SHARED_OBJECTS_GONE_WITHIN seconds."""
    from generator.runtime.swarm import lab_objects

    removed: list[str] = []
    deadline = time.monotonic() + SHARED_OBJECTS_GONE_WITHIN
    while True:
        found = lab_objects(client, name)
        left = [(kind, obj) for kind in ("networks", "volumes") for obj in found[kind]]
        if not left:
            return removed
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"{', '.join(f'{k[:-1]} {o.name}' for k, o in left)} on "
                                 f"{value} still there {SHARED_OBJECTS_GONE_WITHIN:.0f} s "
                                 "after kgen down removed it; run kgen down again")
        for kind, obj in left:
            try:
                obj.remove()
                if f"{kind[:-1]} {obj.name} on {value}" not in removed:
                    removed.append(f"{kind[:-1]} {obj.name} on {value}")
            except docker.errors.APIError:
                pass  # in use by endpoints still being cleaned up, or gone meanwhile
        time.sleep(0.5)
