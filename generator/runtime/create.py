"""The lab's network and containers, created through the Engine API from its compose file.

Why not `docker-compose up`: compose v1 (1.29, Debian's) runs one thread per
service and, inside it, one more per container, both under one global
semaphore of COMPOSE_PARALLEL_LIMIT slots (64). With more services than slots
the outer threads hold every slot while their inner threads wait for one, and
nothing moves again (the 100-node hang; 12 services with a limit of 4 hang the
same way). So kgen reads the rendered compose file, which stays the artifact a
user runs by hand, and creates what it says itself, as containerlab does: a
bounded pool of workers, each container reported as it starts, every call
under the client's timeout. The containers and the network carry compose's
own project labels, so `docker compose down` (v1 or v2) on the directory
finds them, and `docker compose up -d` there gives the same lab.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import yaml

from generator.runtime.errors import NetworkTaken, RuntimeFailure

# Containers created and started at once. The engine serialises much of the work
# (network endpoints, the netns), so more workers only queue inside dockerd.
WORKERS = 8
SPEC_LABEL = "kgen.spec"  # digest of what the container was created from
COMPOSE = "com.docker.compose"
# The service keys the rendered compose file uses; anything else is refused
# rather than silently left out of the lab.
KNOWN_KEYS = {"image", "container_name", "hostname", "init", "restart", "labels",
              "environment", "command", "cap_add", "sysctls", "volumes", "networks"}
RESTART = {"no": {"Name": ""}, "always": {"Name": "always"},
           "unless-stopped": {"Name": "unless-stopped"},
           "on-failure": {"Name": "on-failure", "MaximumRetryCount": 0}}


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    subnet: str
    gateway: str
    labels: dict[str, str]


@dataclass(frozen=True)
class ContainerSpec:
    """One service of the compose file as Engine API arguments."""

    service: str
    name: str
    image: str
    network: str
    ip: str
    create: dict[str, Any] = field(hash=False)  # create_container's keyword arguments
    host: dict[str, Any] = field(hash=False)  # create_host_config's

    def digest(self) -> str:
        doc = {"create": self.create, "host": self.host, "ip": self.ip, "network": self.network}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def load(compose_file: Path) -> dict[str, Any]:
    doc = yaml.safe_load(compose_file.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise RuntimeFailure(f"{compose_file}: not a compose file with services")
    return doc


def project_labels(project: str, compose_file: Path) -> dict[str, str]:
    return {f"{COMPOSE}.project": project,
            f"{COMPOSE}.project.working_dir": str(compose_file.parent.resolve()),
            f"{COMPOSE}.project.config_files": str(compose_file.resolve())}


def network_spec(doc: dict[str, Any], project: str) -> NetworkSpec:
    (key, net), = doc["networks"].items()
    (pool,) = net["ipam"]["config"]
    labels = {**{k: str(v) for k, v in (net.get("labels") or {}).items()},
              f"{COMPOSE}.project": project, f"{COMPOSE}.network": key}
    return NetworkSpec(net["name"], pool["subnet"], pool["gateway"], labels)


def _binds(volumes: list[str], base: Path) -> list[str]:
    """Compose's short syntax (`./dir:/path[:ro]`), host paths relative to the file."""
    binds = []
    for volume in volumes:
        source, rest = volume.split(":", 1)
        path = Path(source)
        binds.append(f"{(base / path).resolve() if not path.is_absolute() else path}:{rest}")
    return binds


def container_specs(doc: dict[str, Any], project: str, compose_file: Path) -> list[ContainerSpec]:
    """Every service, in file order; a key kgen does not translate is an error."""
    networks = {key: net["name"] for key, net in doc["networks"].items()}
    specs = []
    for service, svc in doc["services"].items():
        unknown = sorted(set(svc) - KNOWN_KEYS)
        if unknown:
            raise RuntimeFailure(f"{compose_file}: services.{service}.{unknown[0]}: "
                                 "kgen does not create containers with this key")
        ((key, attach),) = svc["networks"].items()
        labels = {**{k: str(v) for k, v in (svc.get("labels") or {}).items()},
                  **project_labels(project, compose_file),
                  f"{COMPOSE}.service": service, f"{COMPOSE}.oneoff": "False",
                  f"{COMPOSE}.container-number": "1"}
        create = {"name": svc["container_name"], "hostname": svc.get("hostname"),
                  "command": svc.get("command"), "labels": labels,
                  "environment": {k: str(v) for k, v in (svc.get("environment") or {}).items()}}
        host = {"init": bool(svc.get("init")), "cap_add": list(svc.get("cap_add") or []),
                "sysctls": {k: str(v) for k, v in (svc.get("sysctls") or {}).items()},
                "binds": _binds(svc.get("volumes") or [], compose_file.parent),
                "restart_policy": RESTART[svc.get("restart", "no")]}
        specs.append(ContainerSpec(service, svc["container_name"], svc["image"], networks[key],
                                   attach["ipv4_address"], create, host))
    return specs


def ensure_network(client: docker.DockerClient, spec: NetworkSpec) -> bool:
    """Create the node network unless it is there (stale ones were removed before);
    True when created. A subnet another network took meanwhile raises NetworkTaken."""
    if any(n.name == spec.name for n in client.networks.list(names=[spec.name])):
        return False
    ipam = docker.types.IPAMConfig(pool_configs=[
        docker.types.IPAMPool(subnet=spec.subnet, gateway=spec.gateway)])
    try:
        client.api.create_network(spec.name, driver="bridge", internal=True, ipam=ipam,
                                  labels=spec.labels, check_duplicate=True)
    except docker.errors.APIError as err:
        if "Pool overlaps" in str(err):
            raise NetworkTaken(f"node network {spec.subnet}: {err.explanation}") from None
        raise RuntimeFailure(f"creating network {spec.name}: {err.explanation}") from None
    return True


def _existing(client: docker.DockerClient, names: list[str]) -> dict[str, dict[str, Any]]:
    """name -> the engine's summary of that container, for the members that exist:
    one listing, not one inspect per member."""
    wanted = set(names)
    found = {}
    for summary in client.api.containers(all=True):
        for name in summary.get("Names") or []:
            if name.lstrip("/") in wanted:
                found[name.lstrip("/")] = summary
    return found


def _create_one(client: docker.DockerClient, spec: ContainerSpec,
                old: dict[str, Any] | None) -> str:
    """Create (or keep) and start one container; says which of the three it did."""
    api = client.api
    digest = spec.digest()
    if old is not None:
        if (old.get("Labels") or {}).get(SPEC_LABEL) == digest:
            if old.get("State") != "running":
                api.start(old["Id"])
                return "started"
            return "kept"
        api.remove_container(old["Id"], force=True)
    endpoint = api.create_endpoint_config(ipv4_address=spec.ip, aliases=[spec.service])
    created = api.create_container(
        spec.image, **{**spec.create, "labels": {**spec.create["labels"], SPEC_LABEL: digest}},
        host_config=api.create_host_config(**spec.host),
        networking_config=api.create_networking_config({spec.network: endpoint}))
    api.start(created["Id"])
    return "created"


def create_all(client: docker.DockerClient, specs: list[ContainerSpec],
               progress: Callable[[int, int, str], None], workers: int = WORKERS) -> dict[str, int]:
    """Create and start every container, `workers` at a time; `progress(done, total, name)`
    after each. Returns how many were created, started and kept."""
    existing = _existing(client, [s.name for s in specs])
    counts = {"created": 0, "started": 0, "kept": 0}
    lock = threading.Lock()
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(specs)))) as pool:
        futures = {pool.submit(_create_one, client, s, existing.get(s.name)): s for s in specs}
        for future in as_completed(futures):
            spec = futures[future]
            try:
                what = future.result()
            except docker.errors.APIError as err:
                failed.append(f"{spec.name}: {err.explanation or err}")
                continue
            except Exception as err:  # a timeout or a dropped connection: one line, not a trace
                failed.append(f"{spec.name}: {type(err).__name__}: {err}")
                continue
            with lock:
                counts[what] += 1
                progress(sum(counts.values()), len(specs), spec.name)
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise RuntimeFailure(f"creating container {failed[0]}{more}")
    return counts
