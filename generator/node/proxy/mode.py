"""kube-proxy in the lab's mode, set up as kube-proxy's NewProxier sets it up."""

from __future__ import annotations

from typing import Any

from generator.node.contract import Cluster
from generator.node.proxy.loop import BaseProxier
from generator.node.proxy.nfacct import ensure_counter
from generator.node.proxy.nftables import NFTablesProxier
from generator.node.proxy.proxier import Proxier, route_localnet
from generator.node.proxy.rules import INVALID_CT_COUNTER, LOCALHOST_NODEPORT_COUNTER


def make_proxier(cluster: Cluster, node: str, node_ip: str) -> BaseProxier[Any]:
    """kube-proxy in the lab's mode (cluster.json `proxyMode`: iptables | nftables).
    iptables mode, as kube-proxy's NewProxier: route_localnet=1 for localhost NodePorts,
    and its nfacct counters where the kernel has nfacct."""
    if cluster.get("proxyMode", "iptables") == "nftables":
        return NFTablesProxier(node, node_ip, cluster["podCIDR"], cluster.get("serviceCIDR"))
    route_localnet()
    counters = all(ensure_counter(name) for name in (LOCALHOST_NODEPORT_COUNTER,
                                                     INVALID_CT_COUNTER))
    return Proxier(node, node_ip, cluster["podCIDR"], nfacct=counters)
