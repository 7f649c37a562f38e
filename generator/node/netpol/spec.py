"""NetworkPolicy in the host<->node contract (standard library only): the types of what
cluster.json carries for it and of what a node publishes, and the digest both sides
compute to know that a node enforces the current policies.

`generator.node.contract` re-exports the types; they live here to keep it a size one
reads whole.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

# The test server's ports, declared by every container without a command (the lab
# contract, section 4): a NetworkPolicy may name them.
TEST_SERVER_PORTS = ({"name": "http", "containerPort": 8080, "protocol": "TCP"},
                     {"name": "udp", "containerPort": 8081, "protocol": "UDP"})


class ContainerPortSpec(TypedDict):
    containerPort: int
    protocol: str  # TCP | UDP | SCTP
    name: NotRequired[str]  # absent: unnamed


class PolicyMetadata(TypedDict):
    name: str
    namespace: str


class NetworkPolicySpec(TypedDict):
    """A NetworkPolicy as the API server stores it after defaulting: `spec.podSelector`
    and `spec.policyTypes` always there, every port's protocol given; apiVersion, kind,
    labels and annotations left out (no node needs them)."""

    metadata: PolicyMetadata
    spec: dict[str, Any]


class NetpolStatus(TypedDict):
    digest: str  # netpol_digest() of the cluster.json whose policies are in the kernel
    error: str | None


def container_ports(container: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A container's named ports: the test server's when it runs it, then its own."""
    implied = list(TEST_SERVER_PORTS) if container.get("command") is None else []
    return [dict(p) for p in [*implied, *(container.get("ports") or [])] if p.get("name")]


def netpol_input(cluster: Mapping[str, Any]) -> dict[str, Any]:
    """What every node's plan is made of (`policy.parse_cluster` reads it): namespaces
    with labels, each pod's namespace, node, address, labels and named ports, and the
    policies. A change to anything else leaves every node's rules as they are."""
    pods = [{"name": p["name"], "namespace": p.get("namespace") or "default",
             "node": p["node"], "ip": p.get("ip"), "labels": p.get("labels") or {},
             "ports": [port for c in p.get("containers") or [] for port in container_ports(c)]}
            for p in cluster.get("pods") or [] if p.get("ip")]
    return {"namespaces": list(cluster.get("namespaces") or []), "pods": pods,
            "networkPolicies": list(cluster.get("networkPolicies") or [])}


def netpol_digest(cluster: Mapping[str, Any]) -> str:
    """Same policies, pods and namespaces: same digest, on every node and on the host."""
    body = json.dumps(netpol_input(cluster), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]
