"""LoadBalancer services and externalIPs in a lab file (lab contract §1, §7).

The pool LoadBalancer IPs come from (`loadBalancerPool`, by default the /28 at .224
of nodeNetwork), the addresses a service asks for, its source ranges and its
externalIPs: each must be an address the lab may use on its node network and no
node's or client's address, and the pool must hold every LoadBalancer service.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from generator.lab.errors import Problem, describe

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address
Doc = dict[str, Any]
DEFAULT_POOL_OFFSET = 224  # the default pool: the /28 at .224 (.224-.239) of nodeNetwork
DEFAULT_POOL_PREFIX = 28
LB_ONLY = ("loadBalancerIP", "loadBalancerSourceRanges")


def default_pool(node_network: IPv4Network) -> IPv4Network | None:
    """The /28 at .224 of the node network; None when the network is too small for it."""
    start = node_network.network_address + DEFAULT_POOL_OFFSET
    pool = IPv4Network(f"{start}/{DEFAULT_POOL_PREFIX}")
    return pool if pool.subnet_of(node_network) else None


def host_addresses(node_network: IPv4Network, nodes: int, clients: int) -> set[IPv4Address]:
    """Addresses a pool or externalIP may not take: the network's own, Docker's gateway
    (.1), the broadcast, the nodes' (up from .2) and the clients' (down from the top)."""
    base, top = node_network.network_address, node_network.broadcast_address
    taken = {base, base + 1, top}
    taken |= {base + 2 + i for i in range(nodes)}
    taken |= {top - 1 - i for i in range(clients)}
    return taken


def _services(data: Doc) -> list[tuple[int, Doc]]:
    value = data.get("services")
    return [(i, s) for i, s in enumerate(value) if isinstance(s, dict)] \
        if isinstance(value, list) else []


def _address(text: Any, path: str) -> tuple[IPv4Address | None, list[Problem]]:
    if not isinstance(text, str):
        return None, []  # the schema said so already
    try:
        return IPv4Address(text), []
    except ValueError:
        return None, [Problem(path, f"{describe(text)} is not an IPv4 address")]


def check_load_balancers(data: Doc, node_network: IPv4Network | None,
                         pool: IPv4Network | None, taken: set[IPv4Address]) -> Iterator[Problem]:
    """`pool`: the parsed loadBalancerPool (None: absent or already refused); `taken`:
    the node network's addresses that are not the lab's to give (host_addresses)."""
    if pool is not None:
        if node_network is None:
            yield Problem("loadBalancerPool", "needs nodeNetwork (the default node network "
                                              "is chosen when the lab starts)")
        elif not pool.subnet_of(node_network):
            yield Problem("loadBalancerPool", f"{pool} is not inside nodeNetwork {node_network}")
        else:
            clash = sorted(a for a in taken if a in pool)
            if clash:
                yield Problem("loadBalancerPool", f"{pool} holds {clash[0]}, a node's, client's "
                                                  "or the network's own address")
    elif node_network is not None and "loadBalancerPool" not in data:
        pool = default_pool(node_network)
    # Counted, never listed: a pool may be a /8 (16 million addresses).
    usable = pool.num_addresses - sum(1 for a in taken if a in pool) if pool is not None else 0
    asked: dict[IPv4Address, str] = {}
    balancers = 0
    for i, svc in _services(data):
        here = f"services[{i}]"
        is_lb = svc.get("type") == "LoadBalancer"
        balancers += is_lb
        for key in LB_ONLY:
            if key in svc and not is_lb:
                yield Problem(f"{here}.{key}", "may only be set on LoadBalancer services")
        yield from _source_ranges(svc.get("loadBalancerSourceRanges"), here)
        ip, problems = _address(svc.get("loadBalancerIP"), f"{here}.loadBalancerIP")
        yield from problems
        if ip is not None and is_lb:
            if pool is None or ip not in pool or ip in taken:
                where = f"loadBalancerPool {pool}" if pool else "a loadBalancerPool"
                yield Problem(f"{here}.loadBalancerIP", f"{ip} is not a free address of {where}")
            elif ip in asked:
                yield Problem(f"{here}.loadBalancerIP", f"{ip} is already used by {asked[ip]}")
            asked.setdefault(ip, f"{here}.loadBalancerIP")
        yield from _external_ips(svc.get("externalIPs"), here, node_network, pool, taken)
    if balancers and usable < balancers:
        where = f"loadBalancerPool {pool} holds {usable}" if pool is not None else \
            "there is no loadBalancerPool (nodeNetwork is too small for the default)"
        yield Problem("services", f"{balancers} LoadBalancer services need {balancers} "
                                  f"addresses but {where}")


def needs_health_check(svc: Doc) -> bool:
    """The API server gives a LoadBalancer service with externalTrafficPolicy Local a
    healthCheckNodePort, from the NodePort range."""
    return svc.get("type") == "LoadBalancer" and svc.get("externalTrafficPolicy") == "Local"


def _source_ranges(ranges: Any, here: str) -> Iterator[Problem]:
    for j, text in enumerate(ranges if isinstance(ranges, list) else []):
        path = f"{here}.loadBalancerSourceRanges[{j}]"
        if not isinstance(text, str):
            continue
        try:
            net = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            yield Problem(path, f"{describe(text)} is not a CIDR such as 172.31.0.0/24")
            continue
        if "/" not in text or not isinstance(net, IPv4Network):
            yield Problem(path, f"{describe(text)} is not an IPv4 CIDR such as 172.31.0.0/24")


def _external_ips(ips: Any, here: str, node_network: IPv4Network | None,
                  pool: IPv4Network | None, taken: set[IPv4Address]) -> Iterator[Problem]:
    seen: set[IPv4Address] = set()
    for j, text in enumerate(ips if isinstance(ips, list) else []):
        path = f"{here}.externalIPs[{j}]"
        ip, problems = _address(text, path)
        yield from problems
        if ip is None:
            continue
        if node_network is None:
            yield Problem(path, "needs nodeNetwork (externalIPs are addresses of it)")
        elif ip not in node_network:
            yield Problem(path, f"{ip} is not inside nodeNetwork {node_network}")
        elif ip in taken:
            yield Problem(path, f"{ip} is a node's, client's or the network's own address")
        elif pool is not None and ip in pool:
            yield Problem(path, f"{ip} is in loadBalancerPool {pool}, whose addresses go to "
                                "LoadBalancer services")
        elif ip in seen:
            yield Problem(path, f"{ip} is listed twice")
        seen.add(ip)
