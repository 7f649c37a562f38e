"""The Docker engines of a lab that spans hosts (lab contract section 11).

Each host of the lab file names its engine: a DOCKER_HOST value or a docker
context name. The engines must already be members of one swarm; kgen checks
that and says in one line how to join them, but never changes membership. The
node network is an attachable, internal overlay network of that swarm, created
on a manager with the lab's subnet. Swarm gives every engine with a container
on the network one address of it (the network's load-balancer endpoint), from
the network's dynamic range: kgen sets that range to a block of the node
network no node, client or service address uses, so those addresses never clash
with the members' static ones.
"""

from __future__ import annotations

import ipaddress
import subprocess
from typing import Any

import docker
import docker.errors
import docker.types

from generator.cluster.names import network_name
from generator.node.contract import Cluster
from generator.runtime.engine import ENGINE_TIMEOUT, LABEL
from generator.runtime.errors import EngineUnreachable, RuntimeFailure
from generator.runtime.hostcli import cli, member_cli

__all__ = ["cli", "member_cli", "check_swarm", "ensure_overlay", "engines", "load_image"]

DYNAMIC_PREFIX = 28  # the swarm's own addresses: one per engine, 14 engines at most


def is_url(docker_value: str) -> bool:
    return "://" in docker_value


def engine_url(docker_value: str) -> str:
    """A context name's endpoint (`docker context inspect`), or the URL itself."""
    if is_url(docker_value):
        return docker_value
    result = subprocess.run(["docker", "context", "inspect", docker_value, "--format",
                             "{{.Endpoints.docker.Host}}"], capture_output=True, text=True,
                            timeout=30)
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeFailure(f"docker context {docker_value!r}: {result.stderr.strip() or 'no host'}")
    return result.stdout.strip()


def engine_client(host: dict[str, str], timeout: int = ENGINE_TIMEOUT) -> docker.DockerClient:
    url = engine_url(host["docker"])
    try:
        client = docker.DockerClient(base_url=url, timeout=timeout,
                                     use_ssh_client=url.startswith("ssh://"))
        client.ping()
        return client
    except Exception:  # no socket, refused, ssh failed, ...: one line naming the host
        raise EngineUnreachable(f"{url} (host {host['name']})") from None


def engines(cluster: Cluster) -> dict[str, docker.DockerClient]:
    """host name -> a client of its engine."""
    return {h["name"]: engine_client(h) for h in cluster.get("hosts", [])}


def check_swarm(cluster: Cluster, clients: dict[str, docker.DockerClient]) -> str:
    """The name of a host whose engine is a swarm manager, once every engine is in that
    manager's swarm; else RuntimeFailure saying in one line how to join them."""
    docker_of = {h["name"]: h["docker"] for h in cluster["hosts"]}
    swarm = {name: c.info().get("Swarm") or {} for name, c in clients.items()}
    managers = [n for n, s in swarm.items() if s.get("LocalNodeState") == "active"
                and s.get("ControlAvailable")]
    if not managers:
        first = next(iter(clients))
        raise RuntimeFailure(
            "no host of the lab is a Docker Swarm manager: run `docker swarm init "
            f"--advertise-addr ADDRESS` on {first} ({docker_of[first]}), then `docker swarm "
            "join --token TOKEN ADDRESS:2377` on the others (the token from `docker swarm "
            "join-token -q worker` there)")
    manager = managers[0]
    members = {n.id for n in clients[manager].nodes.list()}
    for name, info in swarm.items():
        if info.get("LocalNodeState") != "active" or info.get("NodeID") not in members:
            raise RuntimeFailure(
                f"host {name} ({docker_of[name]}) is not in the swarm of {manager}: run "
                f"`docker swarm join --token $({' '.join(cli(docker_of[manager]))} swarm "
                "join-token -q worker) MANAGER-ADDRESS:2377` on it (kgen never changes "
                "swarm membership)")
    return manager


def dynamic_range(cluster: Cluster) -> str:
    """A /28 of the node network that holds no address kgen gives out: the swarm's own
    endpoint addresses come from it."""
    address = ipaddress.IPv4Address
    net = ipaddress.IPv4Network(cluster["nodeNetwork"])
    taken = {address(m["ip"]) for m in [*cluster["nodes"], *cluster["clients"]]}
    taken.add(address(cluster["nodeNetworkGateway"]))
    pool = cluster.get("loadBalancerPool")
    reserved = [ipaddress.IPv4Network(pool)] if pool else []
    for svc in cluster["services"]:
        taken.update(address(ip) for ip in svc.get("externalIPs") or [])
    for block in reversed(list(net.subnets(new_prefix=max(DYNAMIC_PREFIX, net.prefixlen)))):
        if not any(ip in block for ip in taken) and not any(block.overlaps(r) for r in reserved):
            return str(block)
    raise RuntimeFailure(f"node network {net} has no free /{DYNAMIC_PREFIX} left for the "
                         "swarm's own addresses; use a larger nodeNetwork")


def ensure_overlay(client: docker.DockerClient, cluster: Cluster,
                   labels: dict[str, str]) -> bool:
    """The lab's node network as an attachable internal overlay (on a manager); True
    when created."""
    name = network_name(cluster["name"])
    if any(n.name == name for n in client.networks.list(names=[name])):
        return False
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
        subnet=cluster["nodeNetwork"], gateway=cluster["nodeNetworkGateway"],
        iprange=dynamic_range(cluster))])
    try:
        client.api.create_network(name, driver="overlay", attachable=True, internal=True,
                                  ipam=ipam, labels=labels, check_duplicate=True)
    except docker.errors.APIError as err:
        raise RuntimeFailure(f"creating overlay network {name}: {err.explanation}") from None
    return True


def load_image(tag: str, source: list[str], target: list[str]) -> None:
    """`docker save TAG | docker load` from one engine into another (the CLI: it streams)."""
    save = subprocess.Popen([*source, "save", tag], stdout=subprocess.PIPE)
    load = subprocess.run([*target, "load", "-q"], stdin=save.stdout, capture_output=True,
                          text=True)
    if save.stdout is not None:
        save.stdout.close()
    if save.wait() != 0 or load.returncode != 0:
        raise RuntimeFailure(f"loading {tag} into {' '.join(target[1:])}: "
                             f"{load.stderr.strip() or 'docker save failed'}")


def has_image(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def lab_objects(client: docker.DockerClient, name: str) -> dict[str, list[Any]]:
    """What of the lab is on one engine: containers, networks, volumes."""
    selector = {"label": f"{LABEL}={name}"}
    return {"containers": client.containers.list(all=True, filters=selector),
            "networks": [n for n in client.networks.list(filters=selector)],
            "volumes": client.volumes.list(filters=selector)}


def swarm_addresses(cluster: Cluster) -> tuple[dict[str, str], int | None]:
    """Each host's swarm address, and the VNI of the lab's overlay network (from a manager):
    what `kgen trace` names for the swarm's own encapsulation."""
    addresses: dict[str, str] = {}
    vni = None
    for host, client in engines(cluster).items():
        swarm = client.info().get("Swarm") or {}
        addresses[host] = str(swarm.get("NodeAddr") or "?")
        if swarm.get("ControlAvailable") and vni is None:
            try:
                net = client.networks.get(network_name(cluster["name"]))
            except docker.errors.NotFound:
                continue
            options = net.attrs.get("Options") or {}
            first = str(options.get("com.docker.network.driver.overlay.vxlanid_list", ""))
            vni = int(first.split(",")[0]) if first.split(",")[0].isdigit() else None
    return addresses, vni
