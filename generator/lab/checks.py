"""What a schema cannot say about a lab file: address arithmetic, names unique
across lists, placement, nodePorts and cluster IPs.

Each check reads the raw document (defaults filled in where they matter) and
returns every problem it finds. A check skips values the schema already
refused, so one mistake is reported once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

from generator.lab.dns_checks import check_dns_names, dns_cluster_ip, dns_pods_fit
from generator.lab.errors import Problem, describe, distinct
from generator.lab.hosts import check_hosts
from generator.lab.lb_checks import check_load_balancers, host_addresses, needs_health_check
from generator.lab.schema import LAB_SCHEMA, NODE_PORT_RANGE

IPv4Network = ipaddress.IPv4Network
Doc = dict[str, Any]

_TOP = LAB_SCHEMA["properties"]
# Service types that get nodePorts (LoadBalancer is a NodePort service with an address more).
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
RANGE_KEYS = ("podCIDR", "serviceCIDR", "nodeNetwork")
# The lab's own address space: RFC 1918 and the shared address space (RFC 6598).
PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                               "100.64.0.0/10")]


def default(key: str) -> Any:
    return _TOP[key].get("default")


def top_int(data: Doc, key: str) -> int | None:
    """A top-level integer field (or its default) when the schema accepts it, else None:
    arithmetic never sees 24.0, true or 2**63 (the schema reports those)."""
    value, spec = data.get(key, default(key)), _TOP[key]
    if isinstance(value, int) and not isinstance(value, bool) \
            and spec["minimum"] <= value <= spec["maximum"]:
        return value
    return None


def _port_key(port: Doc, field: str) -> tuple[int, str] | None:
    """(number, protocol) of a port's `field`, or None when either is not what the schema
    wants (then the schema reports it and a list or mapping never reaches a set)."""
    number, protocol = port.get(field), port.get("protocol", "TCP")
    if isinstance(number, int) and not isinstance(number, bool) and isinstance(protocol, str):
        return number, protocol
    return None


def _some(names: list[str], shown: int = 5) -> str:
    """A few names for an error line: a lab of 3,000 nodes does not list them all."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _dicts(value: Any) -> list[tuple[int, Doc]]:
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)] \
        if isinstance(value, list) else []


def member_names(data: Doc, key: str) -> list[tuple[int, str, str]]:
    """(index, path, name) of nodes or clients given as names or {name: ...}."""
    found = []
    items = data.get(key)
    for i, item in enumerate(items if isinstance(items, list) else []):
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str):
            found.append((i, f"{key}[{i}]", name))
    return found


# ------------------------------------------------------------------ ranges


def _kind_of(net: IPv4Network) -> str:
    for what, test in (("loopback", net.is_loopback), ("multicast", net.is_multicast),
                       ("link-local", net.is_link_local), ("unspecified", net.is_unspecified),
                       ("reserved", net.is_reserved)):
        if test:
            return what
    return "public"


def parse_cidr(text: Any, path: str) -> tuple[IPv4Network | None, list[Problem]]:
    if not isinstance(text, str):
        return None, []  # the schema said so already
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None, [Problem(path, f"{describe(text)} is not a CIDR such as 10.244.0.0/16")]
    if "/" not in text:
        return None, [Problem(path, f"{describe(text)} needs a prefix length, as in {net}")]
    if not isinstance(net, IPv4Network):
        return None, [Problem(path, f"{describe(text)} is not IPv4 (kgen labs are IPv4)")]
    prefix = text.rsplit("/", 1)[1]
    if not prefix.isdigit():  # Python also takes a netmask after the slash; Kubernetes does not
        return None, [Problem(path, f"{describe(text)} has a netmask where the prefix length "
                                    f"goes; write {net.network_address}/{net.prefixlen}")]
    if prefix != str(net.prefixlen):  # as Go's netip.ParsePrefix, no leading zeros
        return None, [Problem(path, f"{describe(text)} has a leading zero in its prefix length; "
                                    f"write /{net.prefixlen}")]
    if str(net) != text:
        return None, [Problem(path, f"{describe(text)} has host bits set; did you mean {net}?")]
    if not any(net.subnet_of(p) for p in PRIVATE):  # type: ignore[arg-type]
        return None, [Problem(path, f"{net} is {_kind_of(net)} address space; lab ranges must be "
                                    "private (RFC 1918 or 100.64.0.0/10)")]
    return net, []


def lab_ranges(data: Doc) -> tuple[dict[str, IPv4Network], list[Problem]]:
    nets: dict[str, IPv4Network] = {}
    problems: list[Problem] = []
    for key in RANGE_KEYS:
        text = data.get(key, default(key))
        if text is None:
            continue
        net, found = parse_cidr(text, key)
        problems += found
        if net is not None:
            nets[key] = net
    return nets, problems


def check_ranges(data: Doc, nets: dict[str, IPv4Network]) -> Iterator[Problem]:
    keys = list(nets)
    for i, key in enumerate(keys):
        for other in keys[:i]:
            if nets[key].overlaps(nets[other]):
                yield Problem(key, f"{nets[key]} overlaps {other} {nets[other]}")
    pods, mask = nets.get("podCIDR"), top_int(data, "nodeCIDRMaskSize")
    nodes = member_names(data, "nodes")
    if pods is not None and mask is not None:
        if mask <= pods.prefixlen:
            yield Problem("nodeCIDRMaskSize", f"{mask} must be longer than podCIDR's "
                                              f"/{pods.prefixlen}")
        elif len(nodes) > 2 ** (mask - pods.prefixlen):
            yield Problem("nodes", f"{len(nodes)} nodes need {len(nodes)} /{mask} subnets but "
                                   f"podCIDR {pods} has {2 ** (mask - pods.prefixlen)}")
    services = nets.get("serviceCIDR")
    if services is not None and services.prefixlen > 29:
        yield Problem("serviceCIDR", f"{services} is too small (at most /29)")
    underlay = nets.get("nodeNetwork")
    if underlay is not None:
        hosts = max(0, underlay.num_addresses - 3)  # network, Docker's gateway, broadcast
        wanted = len(nodes) + len(member_names(data, "clients"))
        if wanted > hosts:
            yield Problem("nodeNetwork", f"{underlay} has room for {hosts} nodes and clients, "
                                         f"the lab has {wanted}")


# ------------------------------------------------------------------ names


def check_names(data: Doc) -> Iterator[Problem]:
    # Nodes, clients and pods are all `kgen exec` targets: one namespace of names.
    owners: dict[str, str] = {}
    pods = [(i, f"pods[{i}].name", p["name"]) for i, p in _dicts(data.get("pods"))
            if isinstance(p.get("name"), str)]
    for path, name in [(p, n) for _, p, n in
                       member_names(data, "nodes") + member_names(data, "clients") + pods]:
        if name in owners:
            yield Problem(path, f"duplicate name {describe(name)} (already used by {owners[name]})")
        owners.setdefault(name, path)
    # Services are unique per namespace: `web` in two namespaces is two services.
    seen: dict[tuple[str, str], int] = {}
    for i, svc in _dicts(data.get("services")):
        key = _namespaced(svc)
        if key is not None and key in seen:
            yield Problem(f"services[{i}]", f"duplicate service {describe(key[1])} in namespace "
                                            f"{describe(key[0])} (also at [{seen[key]}])")
        elif key is not None:
            seen[key] = i
    yield from unique([n.get("name") for _, n in _dicts(data.get("namespaces"))], "namespaces",
                      "namespace")
    for i, pod in _dicts(data.get("pods")):
        yield from unique([c.get("name") for _, c in _dicts(pod.get("containers"))],
                          f"pods[{i}].containers", "container name")


def _namespaced(obj: Doc) -> tuple[str, str] | None:
    """(namespace, name) of a service, None when the schema refuses either part."""
    name, namespace = obj.get("name"), obj.get("namespace", "default")
    return (namespace, name) if isinstance(name, str) and isinstance(namespace, str) else None


def unique(names: list[Any], path: str, what: str) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str):
            continue
        if name in seen:
            yield Problem(f"{path}[{i}]", f"duplicate {what} {describe(name)} (also at [{seen[name]}])")
        seen.setdefault(name, i)


# ------------------------------------------------------------------ services


def check_service(svc: Doc, path: str) -> Iterator[Problem]:
    node_port = svc.get("type", "ClusterIP") in ("NodePort", "LoadBalancer")
    if "externalTrafficPolicy" in svc and not node_port:
        yield Problem(f"{path}.externalTrafficPolicy", "may only be set on NodePort and "
                                                      "LoadBalancer services")
    ports = _dicts(svc.get("ports"))
    seen: dict[tuple[int, str], int] = {}
    for j, port in ports:
        here = f"{path}.ports[{j}]"
        if len(ports) > 1 and not port.get("name"):
            yield Problem(f"{here}.name", "is required when a service has more than one port")
        if "nodePort" in port and not node_port:
            yield Problem(f"{here}.nodePort", "may only be set on NodePort and LoadBalancer "
                                              "services")
        key = _port_key(port, "port")
        if key is None:
            continue
        if key in seen:
            yield Problem(f"{here}.port", f"{key[0]}/{key[1]} is already used by ports[{seen[key]}]")
        seen.setdefault(key, j)
    yield from unique([p.get("name") for _, p in ports if p.get("name")], f"{path}.ports",
                      "port name")


def check_node_ports(data: Doc) -> Iterator[Problem]:
    used: dict[tuple[int, str], str] = {}
    for i, svc in _dicts(data.get("services")):
        for j, port in _dicts(svc.get("ports")):
            key = _port_key(port, "nodePort")
            if key is None:
                continue
            here = f"services[{i}].ports[{j}].nodePort"
            if key in used:
                yield Problem(here, f"{key[0]}/{key[1]} is already used by {used[key]}")
            used.setdefault(key, here)
    yield from _node_port_room(data, {number for number, _ in used})


def _node_port_room(data: Doc, given: set[int]) -> Iterator[Problem]:
    """Every port of a NodePort (or LoadBalancer) service gets a nodePort: the ones not
    given are allocated from what is left of the range, which must hold them all."""
    low, high = NODE_PORT_RANGE
    services = [svc for _, svc in _dicts(data.get("services"))]
    wanted = sum(1 for svc in services if svc.get("type") in NODE_PORT_TYPES
                 for _, port in _dicts(svc.get("ports")) if "nodePort" not in port)
    health = sum(1 for svc in services if needs_health_check(svc))
    free = (high - low + 1) - len({n for n in given if low <= n <= high})
    if wanted + health > free:
        what = f"{wanted} NodePort service ports" + (
            f" and {health} health check node ports" if health else "")
        yield Problem("services", f"{what} need a nodePort allocated but "
                                  f"{low}-{high} has {free} left")


def check_cluster_ips(data: Doc, nets: dict[str, IPv4Network]) -> Iterator[Problem]:
    net = nets.get("serviceCIDR")
    services = _dicts(data.get("services"))
    if net is None:
        return
    if len(services) > net.num_addresses - 2:
        yield Problem("services", f"{len(services)} services do not fit in serviceCIDR {net}")
    used: dict[str, str] = {}
    dns_ip, problem = dns_cluster_ip(data, net)
    if problem is not None:
        yield problem
    elif dns_ip is not None:
        used[dns_ip] = "dns.clusterIP (the kube-dns service)"
    for i, svc in services:
        text = svc.get("clusterIP")
        if not isinstance(text, str):
            continue
        here = f"services[{i}].clusterIP"
        if text == "None":  # headless: no cluster IP, DNS answers with the endpoints
            if svc.get("type", "ClusterIP") != "ClusterIP":
                yield Problem(here, "None (a headless service) is for ClusterIP services only")
            continue
        try:
            ip = ipaddress.IPv4Address(text)
        except ValueError:
            yield Problem(here, f"{describe(text)} is not an IPv4 address")
            continue
        if ip not in net or ip in (net.network_address, net.broadcast_address):
            yield Problem(here, f"{ip} is not a usable address of serviceCIDR {net}")
        elif str(ip) in used:
            yield Problem(here, f"{ip} is already used by {used[str(ip)]}")
        used.setdefault(str(ip), here)


# ------------------------------------------------------------------ pods


def check_placement(data: Doc) -> Iterator[Problem]:
    nodes = [name for _, _, name in member_names(data, "nodes")]
    known = set(nodes)
    mask = top_int(data, "nodeCIDRMaskSize")
    capacity = 2 ** (32 - mask) - 3 if mask is not None else None
    per_node: dict[str, int] = {}
    for i, pod in _dicts(data.get("pods")):
        node = pod.get("node")
        if not isinstance(node, str):
            continue
        if node not in known:
            yield Problem(f"pods[{i}].node", f"unknown node {describe(node)} (nodes: "
                                             f"{_some(nodes)})")
            continue
        per_node[node] = per_node.get(node, 0) + 1
        if capacity is not None and per_node[node] == capacity + 1:
            yield Problem(f"pods[{i}].node", f"node {node!r} has more pods than its /{mask} pod "
                                             f"subnet holds ({capacity}); use a smaller "
                                             "nodeCIDRMaskSize")
    if capacity is not None and nodes:
        yield from dns_pods_fit(data, nodes, per_node, capacity, mask)


def _load_balancers(data: Doc, nets: dict[str, IPv4Network]) -> Iterator[Problem]:
    pool, problems = parse_cidr(data.get("loadBalancerPool"), "loadBalancerPool")
    yield from problems
    underlay = nets.get("nodeNetwork")
    taken = host_addresses(underlay, len(member_names(data, "nodes")),
                           len(member_names(data, "clients"))) if underlay else set()
    yield from check_load_balancers(data, underlay, pool, taken)


def cluster_problems(data: Doc) -> list[Problem]:
    """Every problem the schema cannot see, in the order the file reads."""
    nets, problems = lab_ranges(data)
    checks: list[Callable[[], Iterator[Problem]]] = [
        lambda: check_ranges(data, nets),
        lambda: check_names(data),
        lambda: check_placement(data),
        lambda: check_hosts(data),
        lambda: (p for i, s in _dicts(data.get("services"))
                 for p in check_service(s, f"services[{i}]")),
        lambda: check_node_ports(data),
        lambda: check_cluster_ips(data, nets),
        lambda: check_dns_names(data),
        lambda: _load_balancers(data, nets),
    ]
    for check in checks:
        problems += check()
    return distinct(problems)
