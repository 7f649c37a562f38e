"""Choosing the node network when the lab file names none (pure: the caller
says which subnets are taken)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from generator.lab.model import Lab

IPv4Network = ipaddress.IPv4Network
# Candidates for a node network when the lab file names none.
NODE_NETWORK_POOL = ipaddress.IPv4Network("172.31.0.0/16")


class NoFreeNetwork(RuntimeError):
    pass


def choose_node_network(lab: Lab, previous: str | None,
                        used: Iterable[IPv4Network]) -> IPv4Network:
    """The lab's own, else the one chosen before, else the first free /24 of the pool."""
    if lab.node_network is not None:
        return ipaddress.IPv4Network(lab.node_network)
    taken = [*used, lab.pod_cidr, lab.service_cidr]
    if previous:
        net = ipaddress.ip_network(previous)
        if isinstance(net, IPv4Network) and not any(net.overlaps(t) for t in taken):
            return net
    for candidate in NODE_NETWORK_POOL.subnets(new_prefix=24):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise NoFreeNetwork(f"no free /24 left in {NODE_NETWORK_POOL} for the node network")
