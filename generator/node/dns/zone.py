"""The cluster DNS's input: one document (DnsZone) computed by `dns_zone` from the
cluster and the serving pods, so that the host and a node derive it alike; the DNS
server (generator.node.dns) answers from it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict, cast

from generator.node.contract import Cluster, PublishedPod, ServiceSpec, ready_pods, selects

DEFAULT_NAMESPACE = "default"
CLUSTER_DOMAIN = "cluster.local"


class DnsPort(TypedDict):
    name: str  # "" for an unnamed port, which has no SRV record
    protocol: str  # TCP | UDP | SCTP
    port: int


class DnsEndpoint(TypedDict):
    ip: str
    pod: str  # the pod behind it (an EndpointSlice's targetRef)
    hostname: NotRequired[str]  # the pod's spec.hostname, when its subdomain is this service


class DnsService(TypedDict):
    name: str
    namespace: str
    clusterIP: str | None  # None: headless
    ports: list[DnsPort]
    endpoints: list[DnsEndpoint]  # the ready ones only


class DnsPod(TypedDict):
    name: str
    namespace: str
    ip: str


class DnsZone(TypedDict):
    domain: str  # the cluster domain, e.g. cluster.local
    namespaces: list[str]
    services: list[DnsService]
    pods: list[DnsPod]
    reverseCIDRs: list[str]  # reverse names inside these are answered; others REFUSED
    nameserver: str | None  # the DNS service's cluster IP (ns.dns.<domain>)


def _pod_dns_fields(cluster: Cluster) -> dict[str, Mapping[str, Any]]:
    """Each pod spec's namespace, hostname and subdomain, read so that the zone
    follows when the lab model gains them (today: none, so `default`)."""
    return {p["name"]: cast(Mapping[str, Any], p) for p in cluster["pods"]}


def _namespace(spec: Mapping[str, Any] | None) -> str:
    return str((spec or {}).get("namespace") or DEFAULT_NAMESPACE)


def _dns_service(spec: ServiceSpec, ready: list[PublishedPod],
                 pod_specs: dict[str, Mapping[str, Any]]) -> DnsService:
    """A service as DNS sees it: its ready endpoints are the ready pods it selects
    in its own namespace; an endpoint has the pod's hostname when the pod's
    subdomain names this service (what the EndpointSlice controller copies)."""
    namespace = _namespace(cast(Mapping[str, Any], spec))
    endpoints: list[DnsEndpoint] = []
    for pod in ready:
        pod_spec = pod_specs.get(pod["name"]) or {}
        if _namespace(pod_spec) != namespace or not selects(spec["selector"], pod["labels"]):
            continue
        endpoint: DnsEndpoint = {"ip": str(pod["ip"]), "pod": pod["name"]}
        if pod_spec.get("hostname") and pod_spec.get("subdomain") == spec["name"]:
            endpoint["hostname"] = str(pod_spec["hostname"])
        endpoints.append(endpoint)
    cluster_ip = spec["clusterIP"] if spec["clusterIP"] not in ("", "None") else None
    return {"name": spec["name"], "namespace": namespace, "clusterIP": cluster_ip, "endpoints": endpoints,
            "ports": [{"name": p["name"], "protocol": p["protocol"], "port": p["port"]}
                      for p in spec["ports"]]}


def dns_zone(cluster: Cluster, pods: list[PublishedPod], domain: str = CLUSTER_DOMAIN,
             nameserver: str | None = None) -> DnsZone:
    """The DNS records' input: `pods` as `serving_pods` gives them. Pods and
    services without a namespace are in `default` (kgen labs have no others yet)."""
    pod_specs = _pod_dns_fields(cluster)
    services = [_dns_service(s, ready_pods(pods), pod_specs) for s in cluster["services"]]
    dns_pods: list[DnsPod] = [{"name": p["name"], "namespace": _namespace(pod_specs.get(p["name"])),
                               "ip": str(p["ip"])}
                              for p in pods if p.get("ip")]  # ready or not, as CoreDNS's pod index
    namespaces = {DEFAULT_NAMESPACE, "kube-system", *(s["namespace"] for s in services),
                  *(p["namespace"] for p in dns_pods)}
    return {"domain": domain, "namespaces": sorted(namespaces), "services": services,
            "pods": dns_pods, "reverseCIDRs": [cluster["serviceCIDR"], cluster["podCIDR"]],
            "nameserver": nameserver}
