"""One service port as both proxiers see it: a hashable value, compared whole to
decide whether its rules must be written again (no fingerprint of generated text).

The traffic-policy arithmetic follows kube-proxy's CategorizeEndpoints and the
policy-chain choices its iptables and nftables proxiers share.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from generator.node.proxy.endpoints import Endpoint, PodIndex
from generator.node.proxy.naming import NAMESPACE, service_port_name


@dataclass(frozen=True)
class PortInfo:
    namespace: str
    service: str
    port_name: str
    protocol: str  # lower case: tcp | udp | sctp
    cluster_ip: str
    port: int
    node_port: int | None  # only for NodePort services
    affinity: int | None  # ClientIP affinity timeout in seconds, else None
    external_local: bool  # externalTrafficPolicy: Local (NodePort only)
    internal_local: bool  # internalTrafficPolicy: Local
    endpoints: tuple[Endpoint, ...]  # ordered by "ip:port"

    @property
    def spn(self) -> str:
        """kube-proxy's ServicePortName string: `ns/svc` or `ns/svc:port`."""
        return service_port_name(self.service, self.port_name, self.namespace)

    @property
    def key(self) -> str:
        return f"{self.spn}/{self.protocol}"

    @property
    def externally_accessible(self) -> bool:
        return self.node_port is not None

    def uses_cluster_endpoints(self) -> bool:
        # Even with externalTrafficPolicy Local, the short-circuit of pod and node
        # traffic to external destinations needs the Cluster endpoints.
        return not self.internal_local or self.externally_accessible

    def uses_local_endpoints(self) -> bool:
        return self.internal_local or (self.externally_accessible and self.external_local)


@dataclass(frozen=True)
class Policy:
    """Which endpoints and chains a service port uses on this node."""

    cluster: tuple[Endpoint, ...]  # endpoints of the Cluster policy chain (empty: unused)
    local: tuple[Endpoint, ...]  # endpoints of the Local policy chain (empty: unused)
    reachable: tuple[Endpoint, ...]  # every endpoint with an endpoint chain
    has_endpoints: bool
    has_internal: bool
    has_external: bool


def policy(info: PortInfo, node: str) -> Policy:
    everything = info.endpoints
    cluster = everything if info.uses_cluster_endpoints() else ()
    local = tuple(e for e in everything if e.node == node) if info.uses_local_endpoints() else ()
    reachable = cluster or local
    has = bool(everything)
    has_internal = has and (not info.internal_local or bool(local))
    has_external = has and (not info.external_local or bool(local))
    return Policy(cluster, local, reachable, has, has_internal, has_external)


def port_infos(services: list[dict[str, Any]], pods: list[dict[str, Any]]) -> Iterator[PortInfo]:
    index = PodIndex(pods)
    for s in services:
        affinity = s.get("sessionAffinityTimeout", 10800) if s.get("sessionAffinity") == "ClientIP" \
            else None
        node_port_service = s.get("type") == "NodePort"
        for p in s["ports"]:
            yield PortInfo(
                namespace=s.get("namespace", NAMESPACE), service=s["name"],
                port_name=p.get("name") or "", protocol=p["protocol"].lower(),
                cluster_ip=s["clusterIP"], port=int(p["port"]),
                node_port=p.get("nodePort") if node_port_service else None,
                affinity=affinity,
                external_local=node_port_service and s.get("externalTrafficPolicy") == "Local",
                internal_local=s.get("internalTrafficPolicy") == "Local",
                endpoints=tuple(index.endpoints(s, p)))
