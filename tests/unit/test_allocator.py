"""host-local's allocation rules on an in-memory store: no root, no files."""

from __future__ import annotations

from ipaddress import IPv4Address as IP

import pytest

from generator.node.cni.allocator import Range, allocate
from generator.node.cni.spec import CNIError


class MemoryStore:
    def __init__(self) -> None:
        self.held: dict[IP, tuple[str, str]] = {}
        self.last: IP | None = None

    def reserve(self, ip: IP, container: str, ifname: str) -> bool:
        if ip in self.held:
            return False
        self.held[ip], self.last = (container, ifname), ip
        return True

    def release(self, ip: IP) -> None:
        self.held.pop(ip, None)

    def last_reserved(self) -> IP | None:
        return self.last

    def held_by(self, container: str, ifname: str) -> list[IP]:
        return [ip for ip, owner in self.held.items() if owner == (container, ifname)]


SMALL = Range({"subnet": "10.244.0.0/29", "gateway": "10.244.0.1"})  # .2-.6 usable


def take(store: MemoryStore, name: str, *wanted: str) -> str:
    return str(allocate(store, SMALL, name, "eth0", [IP(w) for w in wanted]))


def test_round_robin_goes_on_after_the_last_reservation_not_the_lowest_free() -> None:
    store = MemoryStore()
    assert [take(store, f"c{i}") for i in range(3)] == ["10.244.0.2", "10.244.0.3", "10.244.0.4"]
    store.release(IP("10.244.0.2"))
    assert take(store, "c3") == "10.244.0.5"  # not the freed .2: addresses are not reused at once
    assert take(store, "c4") == "10.244.0.6"
    assert take(store, "c5") == "10.244.0.2"  # wraps, skipping the gateway .1


def test_a_full_range_says_so() -> None:
    store = MemoryStore()
    for i in range(5):
        take(store, f"c{i}")
    with pytest.raises(CNIError, match="no IP addresses available in range set"):
        take(store, "c5")


def test_a_requested_address_is_given_or_refused_as_the_reference_does() -> None:
    store = MemoryStore()
    assert take(store, "a", "10.244.0.5") == "10.244.0.5"
    with pytest.raises(CNIError, match="10.244.0.5 is not available"):
        take(store, "b", "10.244.0.5")
    with pytest.raises(CNIError, match="is subnet's gateway"):
        take(store, "c", "10.244.0.1")
    with pytest.raises(CNIError, match="failed to allocate all requested IPs: 10.9.9.9"):
        take(store, "d", "10.9.9.9")
    assert store.held_by("d", "eth0") == []  # what was allocated for it went back


def test_one_container_interface_gets_one_address() -> None:
    store = MemoryStore()
    take(store, "a")
    with pytest.raises(CNIError, match="duplicate allocation is not allowed"):
        take(store, "a")
