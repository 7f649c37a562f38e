"""The elements of a lab's picture and their ids (see picture.py for how they are found).

Every renderer and the trace overlay name elements by these ids, so a pod, a
service or a node's device is the same element in dot, mermaid and html.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from generator.node.contract import DEFAULT_NAMESPACE

# Element ids: one namespace shared by every renderer and the trace overlay. Names are DNS
# labels ([a-z0-9-]), so '_' separates unambiguously and the ids are valid XML names.


def pod_id(name: str) -> str:
    return f"pod_{name}"


def client_id(name: str) -> str:
    return f"client_{name}"


def service_ref(name: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """A service as `kgen trace` names it: `NAME` in default, `NAME.NAMESPACE` elsewhere."""
    return name if namespace == DEFAULT_NAMESPACE else f"{name}.{namespace}"


def service_id(name: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    # '.' never occurs in a DNS label, so `web.shop` is unambiguous (and a valid XML id).
    return f"service_{service_ref(name, namespace)}"


def address_id(ip: str) -> str:
    """A LoadBalancer IP or externalIP on the node network."""
    return f"address_{ip.replace('.', '-')}"


def dev_id(node: str, device: str) -> str:
    """A device of a node: eth0, cbr0, or the overlay ('overlay': VXLAN device or host-gw routes)."""
    return f"node_{node}_{device}"


def host_id(name: str) -> str:
    """A Docker engine of a lab across hosts (its frame around its nodes and clients)."""
    return f"host_{name}"


UNDERLAY_ID = "underlay"
POOL_ID = "lbpool"
METADATA_NAME = "kubernetes.io/metadata.name"   # every namespace's own label: not repeated


@dataclass(frozen=True)
class PodBox:
    name: str
    node: str
    ip: str | None
    state: str
    labels: dict[str, str]
    containers: list[str]
    namespace: str = DEFAULT_NAMESPACE
    dns: bool = False             # one of the cluster DNS's pods


@dataclass(frozen=True)
class NamespaceBox:
    name: str
    labels: dict[str, str]        # without kubernetes.io/metadata.name (always its name)

    def title(self) -> str:
        labels = ", ".join(f"{k}={v}" for k, v in self.labels.items())
        return f"namespace {self.name}" + (f" ({labels})" if labels else "")


@dataclass(frozen=True)
class AddressBox:
    """A LoadBalancer IP or an externalIP: an address on the node network for a service."""

    ip: str
    kind: str                     # loadBalancerIP | externalIP
    service: str                  # the service's element id
    service_name: str             # NAME or NAME.NAMESPACE
    announced_by: str | None      # the node answering ARP for it
    note: str                     # who announces it, in words

    def text(self) -> list[str]:
        return [f"{self.kind} {self.ip}", f"→ {self.service_name}", self.note]


@dataclass(frozen=True)
class NodeBox:
    name: str
    container: str
    ip: str
    pod_cidr: str
    gateway: str
    vtep: str
    state: str
    pods: list[PodBox]
    host: str | None = None       # the lab's host it runs on (lab contract section 11)


@dataclass(frozen=True)
class ClientBox:
    name: str
    container: str
    ip: str
    host: str | None = None


@dataclass(frozen=True)
class HostBox:
    """One Docker engine of a lab that spans several (lab contract section 11)."""

    name: str
    docker: str                   # its DOCKER_HOST value or docker context name

    @property
    def id(self) -> str:
        return host_id(self.name)

    def title(self) -> str:
        return f"host {self.name} ({self.docker})"


@dataclass(frozen=True)
class PortLine:
    name: str
    port: int
    target_port: int
    protocol: str
    node_port: int | None

    def text(self) -> str:
        words = f"{self.port}/{self.protocol} → {self.target_port}"
        if self.node_port is not None:
            words += f", nodePort {self.node_port}"
        return f"{self.name}: {words}" if self.name else words


@dataclass(frozen=True)
class ServiceBox:
    name: str
    type: str
    cluster_ip: str
    ports: list[PortLine]
    selector: dict[str, str]
    external_traffic_policy: str
    internal_traffic_policy: str
    session_affinity: str
    endpoints: list[str]          # "ip:port" as `kgen status` lists them
    endpoint_pods: list[str]      # the pods behind them, by name, in lab order
    namespace: str = DEFAULT_NAMESPACE
    load_balancer_ip: str | None = None
    external_ips: list[str] = field(default_factory=list)
    source_ranges: list[str] = field(default_factory=list)
    health_check_node_port: int | None = None
    dns: bool = False             # the cluster DNS's service, kube-dns

    @property
    def id(self) -> str:
        return service_id(self.name, self.namespace)

    @property
    def ref(self) -> str:
        return service_ref(self.name, self.namespace)

    def policy_lines(self) -> list[str]:
        """What sets this service apart beyond its ports, one line each (labels, details)."""
        lines = []
        if self.load_balancer_ip:
            lines.append(f"loadBalancerIP {self.load_balancer_ip}")
        if self.source_ranges:
            lines.append(f"loadBalancerSourceRanges {', '.join(self.source_ranges)}")
        if self.external_ips:
            lines.append(f"externalIPs {', '.join(self.external_ips)}")
        if self.type in ("NodePort", "LoadBalancer") or self.external_ips:
            lines.append(f"externalTrafficPolicy {self.external_traffic_policy}")
        if self.health_check_node_port is not None:
            lines.append(f"healthCheckNodePort {self.health_check_node_port}")
        if self.internal_traffic_policy != "Cluster":
            lines.append(f"internalTrafficPolicy {self.internal_traffic_policy}")
        if self.session_affinity != "None":
            lines.append(f"sessionAffinity {self.session_affinity}")
        return lines
