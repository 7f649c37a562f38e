"""host-local's allocation rules, apart from where allocations are kept.

`allocate` picks the address of one ADD: a requested one if it is free (and
not the gateway), else the next free address after the last one reserved
(round robin, as the reference plugin does). It works on any `Store`; the
plugin uses the reference's on-disk layout (`host_local.DiskStore`), tests an
in-memory one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any, Protocol

from generator.node.cni import spec
from generator.node.cni.spec import CNIError
from generator.node.cni.types import IpamConf, IpamRange

IPv4Address = ipaddress.IPv4Address


class Range:
    def __init__(self, raw: IpamRange | IpamConf) -> None:
        try:
            self.subnet = ipaddress.IPv4Network(raw["subnet"], strict=False)
            hosts = self.subnet.network_address + 1, self.subnet.broadcast_address - 1
            self.start = IPv4Address(raw.get("rangeStart") or hosts[0])
            self.end = IPv4Address(raw.get("rangeEnd") or hosts[1])
            self.gateway = IPv4Address(raw.get("gateway") or hosts[0])
        except (KeyError, ValueError) as err:
            raise CNIError(spec.INVALID_CONFIG, "invalid range in IPAM configuration",
                           str(err)) from None
        if self.subnet.prefixlen > 30 or not (self.start in self.subnet and self.end in self.subnet):
            raise CNIError(spec.INVALID_CONFIG, f"invalid range {raw}")

    def __contains__(self, ip: IPv4Address) -> bool:
        return ip in self.subnet and self.start <= ip <= self.end

    def candidates(self, after: IPv4Address | None) -> Iterator[IPv4Address]:
        """Every usable address once, starting after `after` (round robin)."""
        first, last = int(self.start), int(self.end)
        size = last - first + 1
        offset = int(after) - first + 1 if after is not None and self.start <= after <= self.end else 0
        for i in range(size):
            ip = IPv4Address(first + (offset + i) % size)
            if ip not in (self.gateway, self.subnet.network_address, self.subnet.broadcast_address):
                yield ip

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def ranges(ipam: IpamConf) -> list[Range]:
    """The first range set (kgen is IPv4 only; one set is what it renders)."""
    if ipam.get("ranges"):
        return [Range(r) for r in ipam["ranges"][0]]
    if ipam.get("subnet"):
        return [Range(ipam)]
    raise CNIError(spec.INVALID_CONFIG, "no IP ranges specified")


class Store(Protocol):
    def reserve(self, ip: IPv4Address, container: str, ifname: str) -> bool:
        """Take `ip` for (container, ifname); False when it is taken."""

    def release(self, ip: IPv4Address) -> None: ...

    def last_reserved(self) -> IPv4Address | None: ...

    def held_by(self, container: str, ifname: str) -> list[Any]: ...


def allocate(store: Store, rng: Range, container: str, ifname: str,
             wanted: list[IPv4Address]) -> IPv4Address:
    """The address of one ADD (the caller holds the store's lock)."""
    if store.held_by(container, ifname):
        raise CNIError(spec.INTERNAL, f"{container} has been allocated to {ifname}, "
                                      "duplicate allocation is not allowed")
    mine = next((ip for ip in wanted if ip in rng), None)
    if mine is not None:
        ip = _requested(store, rng, mine, container, ifname)
    else:
        ip = _next_free(store, rng, container, ifname)
    left = [str(w) for w in wanted if w != mine]
    if left:
        # As the reference: what was allocated is given back, the request fails.
        store.release(ip)
        raise CNIError(spec.INTERNAL, "failed to allocate all requested IPs: " + " ".join(left))
    return ip


def _requested(store: Store, rng: Range, ip: IPv4Address, container: str,
               ifname: str) -> IPv4Address:
    if ip == rng.gateway:
        raise CNIError(spec.INTERNAL, f"failed to allocate for range 0: requested ip {ip} is "
                                      "subnet's gateway")
    if not store.reserve(ip, container, ifname):
        raise CNIError(spec.INTERNAL, f"failed to allocate for range 0: requested IP address "
                                      f"{ip} is not available in range set {rng}")
    return ip


def _next_free(store: Store, rng: Range, container: str, ifname: str) -> IPv4Address:
    for ip in rng.candidates(store.last_reserved()):
        if store.reserve(ip, container, ifname):
            return ip
    raise CNIError(spec.INTERNAL, f"no IP addresses available in range set: {rng}")
