"""Members of a lab that spans hosts, each on its own engine (lab contract section 11).

Hosts share no filesystem, so nothing is bind-mounted from the machine that ran
`kgen up`: the rendered config (cluster.json, a node's CNI configuration) is
copied into each container through the engine (`put_archive`, before it starts;
`kgen apply` copies cluster.json again and renames it in place), and the state
directory is a volume of each engine, shared by that host's nodes, which the
nodes' state relay (generator/node/statesync.py) keeps in step across hosts.
The documents come back the same way: `refresh_state` asks one node per host
for its host's own nodes' documents and heartbeat ages (`docker exec`) and
writes them into the rendered state directory, which every reader on this
machine (`up`, `status`, `ls`, `check`) reads as on one engine.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import docker.errors

from generator.node import contract
from generator.node.contract import Cluster, heartbeat_path, read_json, write_json_atomic
from generator.runtime.create import ContainerSpec
from generator.runtime.errors import RuntimeFailure
from generator.runtime.swarm import member_cli

REFRESH_PERIOD = 1.0  # seconds between reads of the hosts' state (one docker exec per host)
_last_refresh: dict[Path, float] = {}
_lock = threading.Lock()


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


def _dump(cluster: Cluster, host: str) -> dict[str, Any]:
    """One host's own nodes' documents and heartbeat ages, read inside a node there."""
    for node in cluster["nodes"]:
        if node.get("host") != host:
            continue
        try:
            done = subprocess.run([*member_cli(cluster, node["container"]), "exec",
                                   node["container"], "python3", "-m",
                                   "generator.node.statesync", "--dump"],
                                  capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            continue
        if done.returncode == 0:
            try:
                found = json.loads(done.stdout)
            except ValueError:
                continue
            mine = {n["name"] for n in cluster["nodes"] if n.get("host") == host}
            return {k: v for k, v in found.items() if k in mine}
    return {}


def refresh_state(cluster: Cluster | None, state_dir: Path, force: bool = False) -> None:
    """Bring the hosts' state documents into `state_dir` (at most once a REFRESH_PERIOD
    unless forced); a lab on one engine has them there already."""
    if cluster is None or "hosts" not in cluster:
        return
    with _lock:
        now = time.monotonic()
        if not force and now - _last_refresh.get(state_dir, -1e9) < REFRESH_PERIOD:
            return
        _last_refresh[state_dir] = now
    with ThreadPoolExecutor(max_workers=len(cluster["hosts"])) as pool:
        dumps = list(pool.map(lambda h: _dump(cluster, h["name"]), cluster["hosts"]))
    state_dir.mkdir(parents=True, exist_ok=True)
    wall = time.time()
    for found in dumps:
        for name, entry in found.items():
            doc, age = entry.get("doc"), entry.get("heartbeatAge")
            path = state_dir / f"{name}.json"
            if isinstance(doc, dict) and read_json(path) != doc:
                write_json_atomic(path, doc)
            if isinstance(age, (int, float)):
                beat = heartbeat_path(state_dir, name)
                beat.parent.mkdir(parents=True, exist_ok=True)
                beat.touch()
                os.utime(beat, (wall - age, wall - age))
