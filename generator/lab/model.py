"""The lab file model (lab contract §1): dataclasses, defaults and validation.

`load_lab(path)` returns a validated `Lab` or raises `LabError` with one line
naming the file, the field path and what is wrong. Nothing here touches Docker.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from generator.lab import fields as f
from generator.lab.errors import LabError

DEFAULT_POD_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DEFAULT_AFFINITY_TIMEOUT = 10800
NODE_PORT_RANGE = (30000, 32767)
BACKENDS = ("vxlan", "host-gw")
PROXY_MODES = ("iptables", "nftables")
DEFAULT_NODE_GRACE_PERIOD = 6  # seconds without a heartbeat before a node is NotReady
# Lab names end up in container names (kgen-<lab>-<node>) and network names.
LAB_NAME_MAX = 20
NODE_NAME_MAX = 20

IPv4Network = ipaddress.IPv4Network


@dataclass(frozen=True)
class Container:
    name: str
    command: list[str] | None = None  # None: the pod test server


@dataclass(frozen=True)
class Pod:
    name: str
    node: str
    labels: dict[str, str] = field(default_factory=dict)
    containers: list[Container] = field(default_factory=list)


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
    node_grace_period: int = DEFAULT_NODE_GRACE_PERIOD


TOP_KEYS = {"name", "podCIDR", "nodeCIDRMaskSize", "serviceCIDR", "nodeNetwork", "backend",
            "proxyMode", "nodeGracePeriod", "vxlan", "nodes", "pods", "services", "clients"}


def load_lab(path: Path) -> Lab:
    """Read and validate a lab file; every error names the file."""
    source = str(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise LabError("", f"cannot read lab file: {err.strerror}", source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise LabError("", f"{where}{problem}", source) from None
    try:
        return parse_lab(data, source)
    except LabError as err:
        err.source = source
        raise


def parse_lab(data: Any, source: str = "") -> Lab:
    top = f.mapping(data if data is not None else {}, "", TOP_KEYS)
    name = f.get(top, "name", "", str)
    f.host_name(name, "name", LAB_NAME_MAX)
    pod_cidr = f.network(top, "podCIDR", "", DEFAULT_POD_CIDR)
    mask = f.int_range(top, "nodeCIDRMaskSize", "", 1, 30, 24)
    if mask <= pod_cidr.prefixlen:
        raise LabError("nodeCIDRMaskSize", f"{mask} must be longer than podCIDR's "
                                           f"/{pod_cidr.prefixlen}")
    service_cidr = f.network(top, "serviceCIDR", "", DEFAULT_SERVICE_CIDR)
    node_network = f.network(top, "nodeNetwork", "", None)
    backend = f.choice(top, "backend", "", BACKENDS)
    proxy_mode = f.choice(top, "proxyMode", "", PROXY_MODES)
    grace = f.int_range(top, "nodeGracePeriod", "", 1, 3600, DEFAULT_NODE_GRACE_PERIOD)
    vni, port = _vxlan(top)
    nodes = _names(top, "nodes", NODE_NAME_MAX, required=True)
    clients = _names(top, "clients", NODE_NAME_MAX, required=False)
    pods = [_pod(p, f"pods[{i}]") for i, p in enumerate(f.get(top, "pods", "", list, []))]
    services = [_service(s, f"services[{i}]")
                for i, s in enumerate(f.get(top, "services", "", list, []))]
    lab = Lab(name, pod_cidr, mask, service_cidr, node_network, backend, vni, port,
              nodes, pods, services, clients, source, proxy_mode, grace)
    _check_cluster(lab)
    return lab


def _vxlan(top: Mapping[str, Any]) -> tuple[int, int]:
    vx = f.mapping(f.get(top, "vxlan", "", Mapping, {}), "vxlan", {"vni", "port"})
    vni = f.int_range(vx, "vni", "vxlan", 1, 16777215, 1)
    port = f.int_range(vx, "port", "vxlan", 1, 65535, 4789)
    return vni, port


def _names(top: Mapping[str, Any], key: str, max_len: int, required: bool) -> list[str]:
    """A list of names, or of {name: ...} mappings (nodes, clients)."""
    items = f.get(top, key, "", list, f.MISSING if required else [])
    if required and not items:
        raise LabError(key, "needs at least one entry")
    names = []
    for i, item in enumerate(items):
        here = f"{key}[{i}]"
        if isinstance(item, Mapping):
            item = f.get(f.mapping(item, here, {"name"}), "name", here, str)
            here = f"{here}.name"
        elif not isinstance(item, str):
            raise LabError(here, f"expected a name or a mapping with 'name', got {f.describe(item)}")
        names.append(f.host_name(item, here, max_len))
    return names


def _pod(raw: Any, path: str) -> Pod:
    obj = f.mapping(raw, path, {"name", "node", "labels", "containers"})
    name = f.dns_label(f.get(obj, "name", path, str), f.join(path, "name"))
    node = f.get(obj, "node", path, str)
    labels = f.labels(obj, "labels", path)
    raw_containers = f.get(obj, "containers", path, list, [])
    containers = [_container(c, f"{path}.containers[{i}]") for i, c in enumerate(raw_containers)]
    if not containers:
        containers = [Container(name=name)]
    _unique([c.name for c in containers], f"{path}.containers", "container name")
    return Pod(name, node, labels, containers)


def _container(raw: Any, path: str) -> Container:
    obj = f.mapping(raw, path, {"name", "command"})
    name = f.dns_label(f.get(obj, "name", path, str), f.join(path, "name"))
    command = f.get(obj, "command", path, list, None)
    if command is not None:
        if not command:
            raise LabError(f.join(path, "command"), "must not be empty (omit it for the test server)")
        for i, word in enumerate(command):
            if isinstance(word, bool) or not isinstance(word, str | int | float):
                raise LabError(f"{path}.command[{i}]", f"expected a string, got {f.describe(word)}")
        command = [str(word) for word in command]
    return Container(name, command)


SERVICE_KEYS = {"name", "type", "selector", "clusterIP", "sessionAffinity",
                "sessionAffinityConfig", "externalTrafficPolicy", "internalTrafficPolicy",
                "ports"}


def _service(raw: Any, path: str) -> Service:
    obj = f.mapping(raw, path, SERVICE_KEYS)
    name = f.dns_label(f.get(obj, "name", path, str), f.join(path, "name"))
    kind = f.choice(obj, "type", path, ("ClusterIP", "NodePort"))
    selector = f.labels(obj, "selector", path)
    cluster_ip = f.get(obj, "clusterIP", path, str, None)
    affinity = f.choice(obj, "sessionAffinity", path, ("None", "ClientIP"))
    timeout = _affinity_timeout(obj, path)
    policy = f.choice(obj, "externalTrafficPolicy", path, ("Cluster", "Local"))
    if "externalTrafficPolicy" in obj and kind != "NodePort":
        raise LabError(f.join(path, "externalTrafficPolicy"), "may only be set on NodePort services")
    internal = f.choice(obj, "internalTrafficPolicy", path, ("Cluster", "Local"))
    raw_ports = f.get(obj, "ports", path, list)
    if not raw_ports:
        raise LabError(f.join(path, "ports"), "needs at least one port")
    ports = [_port(p, f"{path}.ports[{i}]", kind) for i, p in enumerate(raw_ports)]
    _check_ports(ports, path)
    return Service(name, kind, selector, ports, cluster_ip, affinity, timeout, policy, internal)


def _affinity_timeout(obj: Mapping[str, Any], path: str) -> int:
    """sessionAffinityConfig.clientIP.timeoutSeconds, as in a Kubernetes Service."""
    here = f.join(path, "sessionAffinityConfig")
    config = f.mapping(f.get(obj, "sessionAffinityConfig", path, Mapping, {}), here, {"clientIP"})
    client = f.mapping(f.get(config, "clientIP", here, Mapping, {}), f"{here}.clientIP",
                       {"timeoutSeconds"})
    return int(f.int_range(client, "timeoutSeconds", f"{here}.clientIP", 1, 86400,
                           DEFAULT_AFFINITY_TIMEOUT))


def _port(raw: Any, path: str, kind: str) -> ServicePort:
    obj = f.mapping(raw, path, {"name", "port", "targetPort", "protocol", "nodePort"})
    name = f.get(obj, "name", path, str, "")
    if name:
        f.dns_label(name, f.join(path, "name"), 15)
    port = f.int_range(obj, "port", path, 1, 65535)
    target = f.int_range(obj, "targetPort", path, 1, 65535, port)
    protocol = f.choice(obj, "protocol", path, ("TCP", "UDP"))
    node_port = f.int_range(obj, "nodePort", path, *NODE_PORT_RANGE, None)
    if node_port is not None and kind != "NodePort":
        raise LabError(f.join(path, "nodePort"), "may only be set on NodePort services")
    return ServicePort(name, port, target, protocol, node_port)


def _check_ports(ports: list[ServicePort], path: str) -> None:
    if len(ports) > 1:
        for i, p in enumerate(ports):
            if not p.name:
                raise LabError(f"{path}.ports[{i}].name", "is required when a service has "
                                                          "more than one port")
    _unique([p.name for p in ports if p.name], f"{path}.ports", "port name")
    seen: dict[tuple[int, str], int] = {}
    for i, p in enumerate(ports):
        key = (p.port, p.protocol)
        if key in seen:
            raise LabError(f"{path}.ports[{i}].port",
                           f"{p.port}/{p.protocol} is already used by ports[{seen[key]}]")
        seen[key] = i


def _unique(names: list[str], path: str, what: str) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise LabError(f"{path}[{i}]", f"duplicate {what} {name!r} (also at [{seen[name]}])")
        seen[name] = i


def _check_cluster(lab: Lab) -> None:
    """Checks that span fields: names, ranges, placement, nodePorts, cluster IPs."""
    _check_names(lab)
    _check_ranges(lab)
    _check_placement(lab)
    _check_node_ports(lab)
    _check_cluster_ips(lab)


def _check_names(lab: Lab) -> None:
    # Nodes, clients and pods are all `kgen exec` targets: one namespace of names.
    owners: dict[str, str] = {}
    groups = (("nodes", lab.nodes), ("clients", lab.clients), ("pods", [p.name for p in lab.pods]))
    for key, names in groups:
        for i, name in enumerate(names):
            here = f"{key}[{i}]" + (".name" if key == "pods" else "")
            if name in owners:
                raise LabError(here, f"duplicate name {name!r} (already used by {owners[name]})")
            owners[name] = here
    _unique([s.name for s in lab.services], "services", "service name")


def _check_ranges(lab: Lab) -> None:
    ranges = [("podCIDR", lab.pod_cidr), ("serviceCIDR", lab.service_cidr)]
    if lab.node_network is not None:
        ranges.append(("nodeNetwork", lab.node_network))
    for i, (key, net) in enumerate(ranges):
        for other_key, other in ranges[:i]:
            if net.overlaps(other):
                raise LabError(key, f"{net} overlaps {other_key} {other}")
    subnets = 2 ** (lab.node_cidr_mask - lab.pod_cidr.prefixlen)
    if len(lab.nodes) > subnets:
        raise LabError("nodes", f"{len(lab.nodes)} nodes need {len(lab.nodes)} /"
                                f"{lab.node_cidr_mask} subnets but podCIDR {lab.pod_cidr} has "
                                f"{subnets}")
    if lab.service_cidr.prefixlen > 29:
        raise LabError("serviceCIDR", f"{lab.service_cidr} is too small (at most /29)")
    if lab.node_network is not None:
        hosts = lab.node_network.num_addresses - 3  # network, Docker's gateway, broadcast
        wanted = len(lab.nodes) + len(lab.clients)
        if wanted > hosts:
            raise LabError("nodeNetwork", f"{lab.node_network} has room for {hosts} nodes and "
                                          f"clients, the lab has {wanted}")


def _check_placement(lab: Lab) -> None:
    nodes = set(lab.nodes)
    per_node: dict[str, int] = {}
    capacity = 2 ** (32 - lab.node_cidr_mask) - 3  # network, gateway, broadcast
    for i, pod in enumerate(lab.pods):
        if pod.node not in nodes:
            raise LabError(f"pods[{i}].node", f"unknown node {pod.node!r} "
                                              f"(nodes: {', '.join(lab.nodes)})")
        per_node[pod.node] = per_node.get(pod.node, 0) + 1
        if per_node[pod.node] > capacity:
            raise LabError(f"pods[{i}].node", f"node {pod.node!r} has more pods than its "
                                              f"/{lab.node_cidr_mask} pod subnet holds "
                                              f"({capacity}); use a smaller nodeCIDRMaskSize")


def _check_node_ports(lab: Lab) -> None:
    used: dict[tuple[int, str], str] = {}
    for i, svc in enumerate(lab.services):
        for j, port in enumerate(svc.ports):
            if port.node_port is None:
                continue
            here = f"services[{i}].ports[{j}].nodePort"
            key = (port.node_port, port.protocol)
            if key in used:
                raise LabError(here, f"{port.node_port}/{port.protocol} is already used by "
                                     f"{used[key]}")
            used[key] = here


def _check_cluster_ips(lab: Lab) -> None:
    used: dict[str, str] = {}
    net = lab.service_cidr
    if len(lab.services) > net.num_addresses - 2:
        raise LabError("services", f"{len(lab.services)} services do not fit in serviceCIDR {net}")
    for i, svc in enumerate(lab.services):
        if svc.cluster_ip is None:
            continue
        here = f"services[{i}].clusterIP"
        try:
            ip = ipaddress.ip_address(svc.cluster_ip)
        except ValueError:
            raise LabError(here, f"{svc.cluster_ip!r} is not an IPv4 address") from None
        if ip not in net or ip in (net.network_address, net.broadcast_address):
            raise LabError(here, f"{ip} is not a usable address of serviceCIDR {net}")
        if str(ip) in used:
            raise LabError(here, f"{ip} is already used by {used[str(ip)]}")
        used[str(ip)] = here
