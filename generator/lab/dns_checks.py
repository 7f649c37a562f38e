"""The lab file's checks that concern the lab's own DNS (contract §8): kube-dns's
address, the names its pods take, and the room they need on their nodes."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from generator.lab.errors import Problem, describe
from generator.lab.schema import LAB_SCHEMA

IPv4Network = ipaddress.IPv4Network
Doc = dict[str, Any]

DNS_OFFSET = 10  # kube-dns's default address: the 10th of serviceCIDR, as kubeadm picks it
_REPLICAS = LAB_SCHEMA["properties"]["dns"]["properties"]["replicas"]


def _dicts(data: Doc, key: str) -> list[tuple[int, Doc]]:
    items = data.get(key)
    return [(i, v) for i, v in enumerate(items) if isinstance(v, dict)] \
        if isinstance(items, list) else []


def default_dns_ip(net: IPv4Network) -> str:
    """The 10th address of serviceCIDR, as kubeadm picks it; a range too small for a 10th
    (a /29) gets its last usable one."""
    return str(min(net.network_address + DNS_OFFSET, net.broadcast_address - 1))


def dns_section(data: Doc) -> Doc:
    dns = data.get("dns")
    return dns if isinstance(dns, dict) else {}


def dns_cluster_ip(data: Doc, net: IPv4Network) -> tuple[str | None, Problem | None]:
    """kube-dns's address when the lab runs its DNS: dns.clusterIP, else the 10th address
    of serviceCIDR (kubeadm's choice); a problem when it is not one of serviceCIDR's."""
    dns = dns_section(data)
    if dns.get("enabled", True) is not True:
        return None, None
    text = dns.get("clusterIP", default_dns_ip(net))
    if not isinstance(text, str):
        return None, None  # the schema said so
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        return None, Problem("dns.clusterIP", f"{describe(text)} is not an IPv4 address")
    if ip not in net or ip in (net.network_address, net.broadcast_address):
        return None, Problem("dns.clusterIP", f"{ip} is not a usable address of serviceCIDR {net}")
    return str(ip), None


def check_dns_names(data: Doc) -> Iterator[Problem]:
    """The DNS pods and service are the lab's too: their names are taken."""
    # Only a count the schema accepts: 2**60 replicas would be a set of 2**60 names.
    taken = {f"coredns-{n}" for n in range(dns_replicas(data))}
    for i, pod in _dicts(data, "pods"):
        if isinstance(pod.get("name"), str) and pod["name"] in taken:  # a list is the schema's
            yield Problem(f"pods[{i}].name", f"{describe(pod['name'])} is a DNS pod's name "
                                             "(dns.replicas); rename the pod or set "
                                             "dns.enabled: false")
    for i, svc in _dicts(data, "services"):
        if (svc.get("namespace"), svc.get("name")) == ("kube-system", "kube-dns"):
            yield Problem(f"services[{i}]", "kube-system/kube-dns is the lab's DNS service; "
                                            "rename the service or set dns.enabled: false")


def dns_pods_fit(data: Doc, nodes: list[str], per_node: dict[str, int], capacity: int,
                 mask: int | None) -> Iterator[Problem]:
    """The DNS pods go on the nodes in turn (cluster.dns.dns_pods): they need room too."""
    replicas = dns_replicas(data)
    for n in range(replicas):
        node = nodes[n % len(nodes)]
        per_node[node] = per_node.get(node, 0) + 1
        if per_node[node] == capacity + 1:
            yield Problem("dns.replicas", f"coredns-{n} goes on node {node!r}, which then has "
                                          f"more pods than its /{mask} pod subnet holds "
                                          f"({capacity}); use a smaller nodeCIDRMaskSize or "
                                          "fewer dns.replicas")
            return


def dns_replicas(data: Doc) -> int:
    """The lab's DNS pods: 0 without its DNS, or a count the schema refuses."""
    dns = dns_section(data)
    replicas = dns.get("replicas", 2)
    if dns.get("enabled", True) is not True or not isinstance(replicas, int) \
            or isinstance(replicas, bool) \
            or not _REPLICAS["minimum"] <= replicas <= _REPLICAS["maximum"]:
        return 0
    return replicas
