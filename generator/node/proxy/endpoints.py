"""Service endpoints from published pods, and the digest that says a proxy caught up."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node: str

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


def ready_pods(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pods that serve: Running with an IP (an EndpointSlice's ready endpoints)."""
    return [p for p in pods if p.get("state") == "Running" and p.get("ip")]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class PodIndex:
    """Ready pods by label, so that selecting is not a scan of every pod per service
    (10,000 services x 50,000 pods would be quadratic)."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.by_label: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for pod in ready_pods(pods):
            for item in (pod.get("labels") or {}).items():
                self.by_label.setdefault(item, []).append(pod)

    def select(self, selector: dict[str, str]) -> list[dict[str, Any]]:
        if not selector:
            return []
        candidates = min((self.by_label.get(item, []) for item in selector.items()), key=len)
        return [p for p in candidates if selects(selector, p.get("labels") or {})]

    def endpoints(self, service: dict[str, Any], port: dict[str, Any]) -> list[Endpoint]:
        found = [Endpoint(p["ip"], int(port["targetPort"]), p["node"])
                 for p in self.select(service["selector"])]
        return sorted(found, key=lambda e: (int(ipaddress.IPv4Address(e.ip)), e.port))


def endpoints_for(service: dict[str, Any], port: dict[str, Any],
                  pods: list[dict[str, Any]]) -> list[Endpoint]:
    return PodIndex(pods).endpoints(service, port)


def input_digest(services: list[dict[str, Any]], pods: list[dict[str, Any]]) -> str:
    """Same services and same ready pods: same digest, on every node and on the host."""
    ready = sorted((p["name"], p["node"], p["ip"], sorted((p.get("labels") or {}).items()))
                   for p in ready_pods(pods))
    body = json.dumps({"services": services, "pods": ready}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]
