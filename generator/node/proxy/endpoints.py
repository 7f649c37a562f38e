"""Service endpoints from published pods (selection rules: `generator.node.contract`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from generator.node.contract import PublishedPod, ServicePortSpec, ServiceSpec, ready_pods, selects


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node: str

    @cached_property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


class PodIndex:
    """Ready pods by label, so that selecting is not a scan of every pod per service
    (10,000 services x 50,000 pods would be quadratic)."""

    def __init__(self, pods: list[PublishedPod]) -> None:
        self.by_label: dict[tuple[str, str], list[PublishedPod]] = {}
        for pod in ready_pods(pods):
            for item in (pod.get("labels") or {}).items():
                self.by_label.setdefault(item, []).append(pod)

    def select(self, selector: dict[str, str]) -> list[PublishedPod]:
        if not selector:
            return []
        candidates = min((self.by_label.get(item, []) for item in selector.items()), key=len)
        return [p for p in candidates if selects(selector, p.get("labels") or {})]

    def endpoints(self, service: ServiceSpec, port: ServicePortSpec) -> list[Endpoint]:
        """Ordered as kube-proxy orders them: by the "ip:port" string (so 10.244.0.10
        comes before 10.244.0.9), which decides which endpoint gets which probability."""
        found = [Endpoint(str(p["ip"]), int(port["targetPort"]), p["node"])
                 for p in self.select(service["selector"])]
        return sorted(found, key=lambda e: e.address)


def endpoints_for(service: ServiceSpec, port: ServicePortSpec,
                  pods: list[PublishedPod]) -> list[Endpoint]:
    return PodIndex(pods).endpoints(service, port)
