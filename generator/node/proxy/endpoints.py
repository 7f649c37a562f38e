"""Service endpoints from published pods (selection rules: `generator.node.contract`).

An endpoint carries what an EndpointSlice says of it and kube-proxy reads: its
conditions (ready; serving and terminating for a pod on its way out) and its
topology hints, set as the EndpointSlice controller's trafficdist heuristic sets
them (PreferClose / PreferSameZone: the endpoint's own zone; PreferSameNode: its
own node too; only ready endpoints get hints).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from generator.node.contract import (
    PublishedPod,
    ServicePortSpec,
    ServiceSpec,
    ready_pods,
    service_selects,
    serving_terminating_pods,
)

CLOSE_DISTRIBUTIONS = ("PreferClose", "PreferSameZone", "PreferSameNode")


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node: str
    ready: bool = True  # false: serving while terminating (the only other kind kept)
    zone_hints: frozenset[str] = frozenset()
    node_hints: frozenset[str] = frozenset()

    @cached_property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def serving(self) -> bool:
        return True  # endpoints that do not serve are never kept

    @property
    def terminating(self) -> bool:
        return not self.ready


def endpoint_of(pod: PublishedPod, target_port: int, distribution: str | None) -> Endpoint:
    ready = pod.get("state") == "Running"
    zone_hints: frozenset[str] = frozenset()
    node_hints: frozenset[str] = frozenset()
    if ready and distribution in CLOSE_DISTRIBUTIONS:
        if pod.get("zone"):
            zone_hints = frozenset([pod["zone"]])
        if distribution == "PreferSameNode":
            node_hints = frozenset([pod["node"]])
    return Endpoint(str(pod["ip"]), target_port, pod["node"], ready, zone_hints, node_hints)


def endpoint_pods(pods: list[PublishedPod]) -> list[PublishedPod]:
    """The pods a service's endpoints come from: ready ones and serving terminating ones."""
    return ready_pods(pods) + serving_terminating_pods(pods)


class PodIndex:
    """Endpoint pods by label, so that selecting is not a scan of every pod per service
    (10,000 services x 50,000 pods would be quadratic)."""

    def __init__(self, pods: list[PublishedPod]) -> None:
        self.by_label: dict[tuple[str, str], list[PublishedPod]] = {}
        for pod in endpoint_pods(pods):
            for item in (pod.get("labels") or {}).items():
                self.by_label.setdefault(item, []).append(pod)

    def select(self, service: ServiceSpec) -> list[PublishedPod]:
        """The ready pods the service selects (of its own namespace only)."""
        selector = service.get("selector") or {}
        if not selector:
            return []
        candidates = min((self.by_label.get(item, []) for item in selector.items()), key=len)
        return [p for p in candidates if service_selects(service, p)]

    def endpoints(self, service: ServiceSpec, port: ServicePortSpec) -> list[Endpoint]:
        return sorted_endpoints(self.select(service), int(port["targetPort"]),
                                service.get("trafficDistribution"))


def sorted_endpoints(pods: list[PublishedPod], target_port: int,
                     distribution: str | None) -> list[Endpoint]:
    """Ordered as kube-proxy orders them: by the "ip:port" string (so 10.244.0.10
    comes before 10.244.0.9), which decides which endpoint gets which probability."""
    found = [endpoint_of(p, target_port, distribution) for p in pods]
    return sorted(found, key=lambda e: e.address)


def endpoints_for(service: ServiceSpec, port: ServicePortSpec,
                  pods: list[PublishedPod]) -> list[Endpoint]:
    return PodIndex(pods).endpoints(service, port)
