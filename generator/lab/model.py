"""The lab file model (docs/reference.md, "The lab file"): a validated lab as dataclasses.

`load_lab(path)` returns a `Lab` or raises `LabError` listing every problem of
the file, one line each (file, field path, what). The structure is checked
against the lab schema (`schema.py`), the rest by `checks.py`; only a document
that passes both is built here. Nothing here touches Docker.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.lab.checks import cluster_problems, default, member_names
from generator.lab.errors import LabError, distinct
from generator.lab.load import load_data
from generator.lab.schema import NODE_PORT_RANGE
from generator.lab.validate import schema_problems

__all__ = ["NODE_PORT_RANGE", "Lab", "Pod", "Container", "ContainerPort", "Service", "ServicePort",
           "load_lab", "parse_lab"]

IPv4Network = ipaddress.IPv4Network
Doc = dict[str, Any]


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    protocol: str = "TCP"
    name: str = ""  # "": unnamed (a NetworkPolicy cannot name it)


@dataclass(frozen=True)
class Container:
    name: str
    command: list[str] | None = None  # None: the pod test server
    ready_ports: tuple[tuple[str, int], ...] = ()  # (tcp|udp, port) it must listen on
    ports: tuple[ContainerPort, ...] = ()  # declared in the lab file (the test server's are implied)


@dataclass(frozen=True)
class Pod:
    name: str
    node: str
    labels: dict[str, str] = field(default_factory=dict)
    containers: list[Container] = field(default_factory=list)
    termination_grace: int = 30  # terminationGracePeriodSeconds
    namespace: str = "default"


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target_port: int
    protocol: str
    node_port: int | None


@dataclass(frozen=True)
class Service:
    name: str
    type: str
    selector: dict[str, str]
    ports: list[ServicePort]
    cluster_ip: str | None
    session_affinity: str
    affinity_timeout: int
    external_traffic_policy: str
    internal_traffic_policy: str = "Cluster"
    traffic_distribution: str | None = None  # PreferClose | PreferSameZone | PreferSameNode
    load_balancer_ip: str | None = None  # asked for; else allocated from the pool
    load_balancer_source_ranges: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()
    namespace: str = "default"


@dataclass(frozen=True)
class Dns:
    """The cluster DNS (contract section 8); cluster_ip None: the 10th of serviceCIDR."""

    enabled: bool = True
    cluster_ip: str | None = None
    replicas: int = 2


@dataclass(frozen=True)
class Lab:
    name: str
    pod_cidr: IPv4Network
    node_cidr_mask: int
    service_cidr: IPv4Network
    node_network: IPv4Network | None  # None: pick a free /24 at render time
    backend: str
    vxlan_vni: int
    vxlan_port: int
    nodes: list[str]
    pods: list[Pod]
    services: list[Service]
    clients: list[str]
    source: str = ""
    proxy_mode: str = "iptables"
    node_grace_period: int = 6
    node_zones: dict[str, str] = field(default_factory=dict)  # node: zone, for nodes with one
    cluster_domain: str = "cluster.local"
    dns: Dns = field(default_factory=Dns)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # name: labels
    load_balancer_pool: IPv4Network | None = None  # None: the default (lb_checks.default_pool)
    # NetworkPolicy objects as the lab file gives them (validated; defaults not applied)
    network_policies: list[dict[str, Any]] = field(default_factory=list)


def load_lab(path: Path) -> Lab:
    """Read and validate a lab file; every error names the file."""
    return parse_lab(load_data(path), str(path))


def parse_lab(data: Any, source: str = "") -> Lab:
    """A validated Lab from a YAML document, or LabError with every problem."""
    doc = data if data is not None else {}
    problems = schema_problems(doc)
    if isinstance(doc, dict):
        problems = distinct(problems + cluster_problems(doc))
    if problems:
        raise LabError(problems, source)
    return _build(doc, source)


def _get(doc: Doc, key: str) -> Any:
    return doc.get(key, default(key))


def _build(doc: Doc, source: str) -> Lab:
    vxlan = doc.get("vxlan") or {}
    network = doc.get("nodeNetwork")
    return Lab(
        name=doc["name"],
        pod_cidr=IPv4Network(_get(doc, "podCIDR")),
        node_cidr_mask=_get(doc, "nodeCIDRMaskSize"),
        service_cidr=IPv4Network(_get(doc, "serviceCIDR")),
        node_network=IPv4Network(network) if network else None,
        backend=_get(doc, "backend"),
        vxlan_vni=int(vxlan.get("vni", 1)),
        vxlan_port=int(vxlan.get("port", 4789)),
        nodes=[name for _, _, name in member_names(doc, "nodes")],
        pods=[_pod(p) for p in doc.get("pods") or []],
        services=[_service(s) for s in doc.get("services") or []],
        clients=[name for _, _, name in member_names(doc, "clients")],
        source=source,
        proxy_mode=_get(doc, "proxyMode"),
        node_grace_period=_get(doc, "nodeGracePeriod"),
        node_zones={n["name"]: n["zone"] for n in doc["nodes"]
                    if isinstance(n, dict) and n.get("zone")},
        cluster_domain=_get(doc, "clusterDomain"),
        dns=_dns(doc.get("dns") or {}),
        namespaces=_namespaces(doc),
        load_balancer_pool=IPv4Network(doc["loadBalancerPool"]) if doc.get("loadBalancerPool")
        else None,
        network_policies=list(doc.get("networkPolicies") or []),
    )


def _dns(raw: Doc) -> Dns:
    return Dns(bool(raw.get("enabled", True)), raw.get("clusterIP"), int(raw.get("replicas", 2)))


def _namespaces(doc: Doc) -> dict[str, dict[str, str]]:
    """Every namespace of the lab with its labels: `default` and `kube-system`, the listed
    ones, and those a pod or service names; each carries kubernetes.io/metadata.name."""
    listed = {n["name"]: {k: str(v) for k, v in (n.get("labels") or {}).items()}
              for n in doc.get("namespaces") or []}
    named = ["default", "kube-system", *listed,
             *(o.get("namespace", "default") for key in ("pods", "services")
               for o in doc.get(key) or [])]
    return {name: {**listed.get(name, {}), "kubernetes.io/metadata.name": name}
            for name in dict.fromkeys(named)}


def _pod(raw: Doc) -> Pod:
    containers = [Container(c["name"], [str(w) for w in c["command"]] if "command" in c else None,
                            ports=tuple(ContainerPort(p["containerPort"], p.get("protocol", "TCP"),
                                                      p.get("name", "")) for p in c.get("ports") or []))
                  for c in raw.get("containers") or [{"name": raw["name"]}]]
    return Pod(raw["name"], raw["node"], {k: str(v) for k, v in (raw.get("labels") or {}).items()},
               containers, int(raw.get("terminationGracePeriodSeconds", 30)),
               raw.get("namespace", "default"))


def _service(raw: Doc) -> Service:
    affinity = ((raw.get("sessionAffinityConfig") or {}).get("clientIP") or {})
    ports = [ServicePort(p.get("name", ""), p["port"], p.get("targetPort", p["port"]),
                         p.get("protocol", "TCP"), p.get("nodePort"))
             for p in raw["ports"]]
    return Service(
        name=raw["name"],
        type=raw.get("type", "ClusterIP"),
        selector={k: str(v) for k, v in (raw.get("selector") or {}).items()},
        ports=ports,
        cluster_ip=raw.get("clusterIP"),
        session_affinity=raw.get("sessionAffinity", "None"),
        affinity_timeout=affinity.get("timeoutSeconds", 10800),
        external_traffic_policy=raw.get("externalTrafficPolicy", "Cluster"),
        internal_traffic_policy=raw.get("internalTrafficPolicy", "Cluster"),
        traffic_distribution=raw.get("trafficDistribution"),
        namespace=raw.get("namespace", "default"),
        load_balancer_ip=raw.get("loadBalancerIP"),
        load_balancer_source_ranges=tuple(raw.get("loadBalancerSourceRanges") or ()),
        external_ips=tuple(raw.get("externalIPs") or ()),
    )

