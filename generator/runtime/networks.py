"""The node network as Docker sees it: which subnets are taken, and the desired
cluster built on a free one (rendering itself never asks Docker)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from generator.cluster.build import build_state
from generator.cluster.names import network_name
from generator.cluster.network import IPv4Network, NoFreeNetwork, choose_node_network
from generator.lab.model import Lab
from generator.node.contract import Cluster, read_json
from generator.runtime.errors import RuntimeFailure


def docker_networks(exclude_network: str) -> list[tuple[str, IPv4Network]]:
    """(name, subnet) of Docker networks other than this lab's; none when Docker is away."""
    try:
        import docker

        from generator.runtime.engine import ENGINE_TIMEOUT

        networks = docker.from_env(timeout=ENGINE_TIMEOUT).networks.list()
    except Exception:  # no engine: render still works, with the first candidate
        return []
    found = []
    for net in networks:
        if net.name == exclude_network:
            continue
        for config in (net.attrs.get("IPAM") or {}).get("Config") or []:
            try:
                subnet = ipaddress.ip_network(config.get("Subnet", ""))
            except ValueError:
                continue
            if isinstance(subnet, IPv4Network):
                found.append((net.name, subnet))
    return found


def previous_node_network(out_dir: Path) -> str | None:
    """The node network an earlier render of this directory chose: kept once made."""
    doc = read_json(out_dir / "config" / "cluster.json")
    return str(doc["nodeNetwork"]) if isinstance(doc, dict) and "nodeNetwork" in doc else None


def desired_cluster(lab: Lab, out_dir: Path) -> Cluster:
    """The lab's cluster on its own node network, else the one chosen before, else a free /24."""
    used = [subnet for _, subnet in docker_networks(network_name(lab.name))]
    try:
        network = choose_node_network(lab, previous_node_network(out_dir), used)
    except NoFreeNetwork as err:
        raise RuntimeFailure(str(err)) from None
    previous = read_json(out_dir / "config" / "cluster.json")
    return build_state(lab, network, previous if isinstance(previous, dict) else None)


def refuse_taken_node_network(cluster: Cluster) -> None:
    """A lab file's own nodeNetwork may clash with another Docker network: say which."""
    wanted = ipaddress.ip_network(cluster["nodeNetwork"])
    for name, subnet in docker_networks(network_name(cluster["name"])):
        if wanted.overlaps(subnet):
            raise RuntimeFailure(f"nodeNetwork {wanted} overlaps Docker network {name} ({subnet}); "
                                 "choose another nodeNetwork, or leave it out to get a free /24")
