"""One service port as both proxiers see it: a hashable value, compared whole to
decide whether its rules must be written again (no fingerprint of generated text).

The traffic-policy arithmetic follows kube-proxy's CategorizeEndpoints (topology.go:
ready endpoints, else serving-terminating ones, for Cluster and Local separately;
topology hints for trafficDistribution) and the policy-chain choices its iptables
and nftables proxiers share.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from generator.node.contract import (
    PublishedPod,
    ServiceSpec,
    namespace_of,
    pod_key,
    service_selects,
)
from generator.node.proxy.endpoints import Endpoint, PodIndex, endpoint_pods, sorted_endpoints
from generator.node.proxy.naming import service_port_name


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
    external_local: bool  # externalTrafficPolicy: Local (externally accessible services only)
    internal_local: bool  # internalTrafficPolicy: Local
    endpoints: tuple[Endpoint, ...]  # ordered by "ip:port"
    external_ips: tuple[str, ...] = ()  # spec.externalIPs
    lb_ips: tuple[str, ...] = ()  # the LoadBalancer's ingress IPs (status.loadBalancer)
    source_ranges: tuple[str, ...] = ()  # loadBalancerSourceRanges, normalized CIDRs
    health_check_node_port: int | None = None  # only with externalTrafficPolicy Local

    @cached_property
    def spn(self) -> str:
        """kube-proxy's ServicePortName string: `ns/svc` or `ns/svc:port`."""
        return service_port_name(self.service, self.port_name, self.namespace)

    @cached_property
    def key(self) -> str:
        return f"{self.spn}/{self.protocol}"

    @property
    def externally_accessible(self) -> bool:
        """kube-proxy's ExternallyAccessible: a NodePort, a load-balancer IP or an external IP."""
        return self.node_port is not None or bool(self.lb_ips) or bool(self.external_ips)

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


def topology_mode(endpoints: tuple[Endpoint, ...], node: str, zone: str) -> str:
    """kube-proxy's topologyModeFromHints: PreferSameNode when every ready endpoint
    has a node hint and one is for this node; else PreferSameZone likewise with zone
    hints; else "" (no topology)."""
    ready = [e for e in endpoints if e.ready]
    if not ready:
        return ""
    if all(e.node_hints for e in ready) and any(node in e.node_hints for e in ready):
        return "PreferSameNode"
    if all(e.zone_hints for e in ready) and any(zone in e.zone_hints for e in ready):
        return "PreferSameZone"
    return ""


def _available(e: Endpoint, mode: str, node: str, zone: str) -> bool:
    """kube-proxy's availableForTopology."""
    if mode == "PreferSameNode":
        return node in e.node_hints
    if mode == "PreferSameZone":
        return zone in e.zone_hints
    return True


def categorize(info: PortInfo, node: str, zone: str = "") -> Policy:
    """kube-proxy's CategorizeEndpoints: usable endpoints are the ready ones (within
    the topology mode), else, separately for Cluster and Local, the serving
    terminating ones."""
    everything = info.endpoints
    cluster: tuple[Endpoint, ...] = ()
    has = False
    mode = ""
    if info.uses_cluster_endpoints():
        mode = topology_mode(everything, node, zone)
        cluster = tuple(e for e in everything if e.ready and _available(e, mode, node, zone))
        if not cluster:
            cluster = tuple(e for e in everything if e.serving and e.terminating)
        has = bool(cluster)
    local: tuple[Endpoint, ...] = ()
    fallback = False
    if info.uses_local_endpoints():
        has = has or any(e.ready or (e.serving and e.terminating) for e in everything)
        local = tuple(e for e in everything if e.node == node and e.ready)
        if not local:
            local = tuple(e for e in everything if e.node == node and e.serving and e.terminating)
            fallback = bool(local)
    if not info.uses_local_endpoints() or (mode == "" and not fallback):
        reachable = cluster or local
    elif not info.uses_cluster_endpoints():
        reachable = local
    else:
        merged = {e.address: e for e in (*cluster, *local)}
        reachable = tuple(sorted(merged.values(), key=lambda e: e.address))
    has_internal = has and (not info.internal_local or bool(local))
    has_external = has and (not info.external_local or bool(local))
    return Policy(cluster, local, reachable, has, has_internal, has_external)


def policy(info: PortInfo, node: str, zone: str = "") -> Policy:
    return categorize(info, node, zone)


def port_infos(services: list[ServiceSpec], pods: list[PublishedPod]) -> Iterator[PortInfo]:
    """Every service port from scratch (the proxiers keep a PortTracker instead)."""
    index = PodIndex(pods)
    for s in proxied(services):
        yield from port_infos_of(s, index.select(s))


def proxied(services: list[ServiceSpec]) -> list[ServiceSpec]:
    """The services kube-proxy programs: not headless ones (clusterIP None), which
    have no address to translate; DNS answers for them with their endpoints."""
    return [s for s in services if s["clusterIP"] != "None"]


class PortTracker:
    """PortInfo of every service port, kept across syncs: a sync recomputes only the
    services whose own spec changed or whose selector matches a pod that changed, so
    one changed endpoint at 10,000 services costs a few dict comparisons per object,
    not a new selection and sort for every service."""

    def __init__(self) -> None:
        self.services: dict[str, ServiceSpec] = {}
        self.pods: dict[str, PublishedPod] = {}
        self.by_label: dict[tuple[str, str], dict[str, PublishedPod]] = {}  # endpoint pods
        self.by_selector: dict[tuple[str, str], set[str]] = {}  # selector item: services
        self.ports: dict[str, list[PortInfo]] = {}

    def update(self, services: list[ServiceSpec], pods: list[PublishedPod]) -> list[PortInfo]:
        new_services = {f"{namespace_of(s)}/{s['name']}": s for s in proxied(services)}
        affected = {n for n, s in new_services.items() if self.services.get(n) != s}
        affected |= self.services.keys() - new_services.keys()
        for name in affected:
            was, now = self.services.get(name), new_services.get(name)
            for item in (was["selector"] if was else {}).items():
                self.by_selector.get(item, set()).discard(name)
            for item in (now["selector"] if now else {}).items():
                self.by_selector.setdefault(item, set()).add(name)
        new_pods = {pod_key(p): p for p in pods}
        changed = [n for n, p in new_pods.items() if self.pods.get(n) != p]
        changed += [n for n in self.pods if n not in new_pods]
        ready = {pod_key(p) for p in
                 endpoint_pods([new_pods[n] for n in changed if n in new_pods])}
        for name in changed:
            for version, add in ((self.pods.get(name), False), (new_pods.get(name), True)):
                if version is None:
                    continue
                for item in (version.get("labels") or {}).items():
                    affected |= self.by_selector.get(item, set())
                    if add and name in ready:
                        self.by_label.setdefault(item, {})[name] = version
                    elif not add:
                        self.by_label.get(item, {}).pop(name, None)
        self.services, self.pods = new_services, new_pods
        for name in affected:
            s = new_services.get(name)
            if s is None:
                self.ports.pop(name, None)
            else:
                self.ports[name] = list(port_infos_of(s, self.select(s)))
        return [info for name in new_services for info in self.ports[name]]

    def select(self, service: ServiceSpec) -> list[PublishedPod]:
        """The ready pods the service selects (of its own namespace only)."""
        selector = service.get("selector") or {}
        if not selector:
            return []
        candidates = min((self.by_label.get(item, {}) for item in selector.items()), key=len)
        return [p for p in candidates.values() if service_selects(service, p)]


def port_infos_of(s: ServiceSpec, pods: list[PublishedPod]) -> Iterator[PortInfo]:
    affinity = s.get("sessionAffinityTimeout", 10800) if s.get("sessionAffinity") == "ClientIP" \
        else None
    # A LoadBalancer service is a NodePort service with a load-balancer IP (and, under
    # Local, a health check node port); externalIPs make any service externally accessible.
    node_port_service = s.get("type") in ("NodePort", "LoadBalancer")
    lb_ip = s.get("loadBalancerIP") if s.get("type") == "LoadBalancer" else None
    lb_ips: tuple[str, ...] = (lb_ip,) if lb_ip else ()
    external_ips = tuple(s.get("externalIPs") or ())
    external = node_port_service or bool(external_ips)
    external_local = external and s.get("externalTrafficPolicy") == "Local"
    ranges = tuple(str(ipaddress.ip_network(r.strip(), strict=False))
                   for r in s.get("loadBalancerSourceRanges") or ())
    health = s.get("healthCheckNodePort") if external_local else None
    for p in s["ports"]:
        endpoints = sorted_endpoints(pods, int(p["targetPort"]), s.get("trafficDistribution"))
        yield PortInfo(
            namespace=namespace_of(s), service=s["name"],
            port_name=p.get("name") or "", protocol=p["protocol"].lower(),
            cluster_ip=s["clusterIP"], port=int(p["port"]),
            node_port=p.get("nodePort") if node_port_service else None,
            affinity=affinity, external_local=external_local,
            internal_local=s.get("internalTrafficPolicy") == "Local",
            endpoints=tuple(endpoints), external_ips=external_ips, lb_ips=lb_ips,
            source_ranges=ranges if lb_ips else (), health_check_node_port=health)
