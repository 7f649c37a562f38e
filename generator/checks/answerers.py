"""Which pods may answer a new connection to a service, from a given node.

Not re-derived here: the node side's own pure functions decide it
(`generator.node.proxy.service.categorize`, kube-proxy's CategorizeEndpoints
with its topology filtering), fed with the lab's pods as every proxy sees them:
the cluster's serving pods, Running on their nodes (with their node's zone),
and the Terminating pods `kgen status` lists under a service's `terminating`.
So a check expects ready endpoints only while there are any for the traffic's
policy (a terminating pod answering a new connection fails it), serving
terminating ones only as the fallback, and the zone-local (or node-local) ones
when trafficDistribution keeps the traffic close.
"""

from __future__ import annotations

from typing import cast

from generator.checks.base import Planning, Pod
from generator.node.contract import (
    PublishedPod,
    ServicePortSpec,
    ServiceSpec,
    namespace_of,
    service_selects,
)
from generator.node.documents import StatusReport
from generator.node.proxy.endpoints import Endpoint
from generator.node.proxy.service import Policy, categorize, port_infos_of


def terminating_pods(status: StatusReport | None) -> dict[tuple[str, str], list[Pod]]:
    """Per service (namespace, name), the Terminating pods that still serve it (status
    `terminating`): `web` in two namespaces is two services."""
    if status is None:
        return {}
    by_ip = {p["ip"]: p for p in status.get("pods", [])
             if p.get("state") == "Terminating" and p.get("ip")}
    found: dict[tuple[str, str], list[Pod]] = {}
    for svc in status.get("services", []):
        ips = {address.rsplit(":", 1)[0] for address in svc.get("terminating") or []}
        pods = [by_ip[ip] for ip in sorted(ips) if ip in by_ip]
        found[(namespace_of(svc), svc["name"])] = [
            cast(Pod, {"name": p["name"], "node": p["node"], "ip": p["ip"], "labels": {},
                       "containers": [], "namespace": namespace_of(p)}) for p in pods]
    return found


class Answerers:
    """A service port's endpoints, categorised per node as that node's proxy does."""

    def __init__(self, ctx: Planning, svc: ServiceSpec, port: ServicePortSpec,
                 terminating: list[Pod]) -> None:
        ready = [p for p in ctx.servers if service_selects(svc, p)]  # its own namespace only
        self.pods = {p["ip"]: p for p in [*ready, *terminating] if p.get("ip")}
        published = [self._published(ctx, p, "Running") for p in ready if p.get("ip")]
        published += [self._published(ctx, p, "Terminating") for p in terminating]
        one_port = cast(ServiceSpec, {**svc, "ports": [port]})
        self.info = next(port_infos_of(one_port, published))
        self.zone = {n["name"]: n.get("zone") or "" for n in ctx.cluster["nodes"]}

    @staticmethod
    def _published(ctx: Planning, pod: Pod, state: str) -> PublishedPod:
        found: PublishedPod = {"name": pod["name"], "node": pod["node"], "ip": pod.get("ip"),
                               "state": state, "labels": pod["labels"], "serving": True}
        zone = ctx.node[pod["node"]].get("zone") if pod["node"] in ctx.node else None
        if zone:
            found["zone"] = zone
        return found

    @property
    def any(self) -> bool:
        return bool(self.pods)

    def policy(self, node: str) -> Policy:
        return categorize(self.info, node, self.zone.get(node, ""))

    def internal(self, node: str) -> list[Pod]:
        """Who answers a pod on `node` (internalTrafficPolicy)."""
        p = self.policy(node)
        return self._pods(p.local if self.info.internal_local else p.cluster)

    def external(self, node: str) -> list[Pod]:
        """Who answers traffic from outside arriving at `node` (externalTrafficPolicy)."""
        p = self.policy(node)
        return self._pods(p.local if self.info.external_local else p.cluster)

    def cluster(self, node: str) -> list[Pod]:
        """The Cluster policy's endpoints on `node` (where the node's own traffic goes)."""
        return self._pods(self.policy(node).cluster)

    def _pods(self, endpoints: tuple[Endpoint, ...]) -> list[Pod]:
        return [self.pods[e.ip] for e in endpoints if e.ip in self.pods]
