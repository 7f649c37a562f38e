"""The cluster state: every address the lab needs, computed from the model.

This is what a control plane would hold: node IPs on the node network, each
node's pod subnet (host-local IPAM range), VTEP addresses and MACs, cluster
IPs and nodePorts, and every pod's IP (the node's CNI ADD asks host-local for
it, so that pods can be set up in parallel and still get the same addresses).
It is written to `cluster.json` and read by node agents.
Allocation is hash-seeded so that adding a service does not move others, and
a pod keeps the address an earlier state gave it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from typing import Any, cast

from generator.cluster.dns import dns_spec, with_dns
from generator.cluster.names import container_name
from generator.cluster.netpol import normalise
from generator.lab.lb_checks import default_pool, host_addresses
from generator.lab.model import NODE_PORT_RANGE, Container, ContainerPort, Lab, Pod, Service
from generator.node.contract import (
    DEFAULT_TERMINATION_GRACE,
    ClientSpec,
    Cluster,
    ContainerPortSpec,
    ContainerSpec,
    NodeSpec,
    PodSpec,
    ServicePortSpec,
    ServiceSpec,
)

HEADLESS = "None"  # a service's clusterIP when it has none (DNS answers with its endpoints)
UNDERLAY_MTU = 1500
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8


def mac_of(address: ipaddress.IPv4Address) -> str:
    """0a:58 + the IPv4 address: the locally administered scheme Kubernetes uses."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in address.packed)


def build_state(lab: Lab, node_network: ipaddress.IPv4Network,
                previous: Mapping[str, Any] | None = None) -> Cluster:
    """`previous`: the state this one replaces (pods keep their addresses)."""
    lab = with_dns(lab)  # the DNS pods and kube-dns are pods and a service like the others
    nodes = _nodes(lab, node_network)
    ips = pod_ips(lab, nodes, previous)
    body = {
        "name": lab.name,
        "podCIDR": str(lab.pod_cidr),
        "serviceCIDR": str(lab.service_cidr),
        "nodeNetwork": str(node_network),
        "nodeNetworkGateway": str(node_network.network_address + 1),
        **({"loadBalancerPool": str(pool)} if (pool := load_balancer_pool(lab, node_network))
           else {}),
        "backend": lab.backend,
        "proxyMode": lab.proxy_mode,
        "nodeGracePeriod": lab.node_grace_period,
        "clusterDomain": lab.cluster_domain,
        "dns": dns_spec(lab),
        "namespaces": [{"name": name, "labels": labels} for name, labels in lab.namespaces.items()],
        "vxlan": {"vni": lab.vxlan_vni, "port": lab.vxlan_port, "device": f"kgen.{lab.vxlan_vni}"},
        "mtu": UNDERLAY_MTU - VXLAN_OVERHEAD if lab.backend == "vxlan" else UNDERLAY_MTU,
        "nodes": nodes,
        "pods": [_pod(p, ips[p.name]) for p in lab.pods],
        "services": _services(lab, node_network),
        "clients": _clients(lab, node_network),
    }
    if lab.network_policies:  # absent otherwise: a lab without policies renders as before
        body["networkPolicies"] = [normalise(p) for p in lab.network_policies]
    return cast(Cluster, {**body, "generation": generation(body)})


def generation(state: Mapping[str, Any]) -> str:
    body = {k: v for k, v in state.items() if k != "generation"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _nodes(lab: Lab, node_network: ipaddress.IPv4Network) -> list[NodeSpec]:
    subnets = lab.pod_cidr.subnets(new_prefix=lab.node_cidr_mask)
    nodes: list[NodeSpec] = []
    for i, (name, subnet) in enumerate(zip(lab.nodes, subnets, strict=False)):
        # .1 is Docker's gateway on the node network, so nodes start at .2.
        nodes.append({
            "name": name,
            "container": container_name(lab.name, name),
            "ip": str(node_network.network_address + 2 + i),
            "podCIDR": str(subnet),
            "gateway": str(subnet.network_address + 1),
            # A bridge without a MAC of its own takes its lowest port's, and changes it
            # when that pod goes: every pod's ARP entry for the gateway goes stale.
            "gatewayMAC": mac_of(subnet.network_address + 1),
            "vtep": str(subnet.network_address),
            "vtepMAC": mac_of(subnet.network_address),
        })
        if lab.node_zones.get(name):
            nodes[-1]["zone"] = lab.node_zones[name]
    return nodes


def _clients(lab: Lab, node_network: ipaddress.IPv4Network) -> list[ClientSpec]:
    # Clients count down from the top so that adding a node never moves them.
    top = node_network.broadcast_address - 1
    return [{"name": name, "container": container_name(lab.name, name), "ip": str(top - i)}
            for i, name in enumerate(lab.clients)]


def pod_ips(lab: Lab, nodes: list[NodeSpec],
            previous: Mapping[str, Any] | None) -> dict[str, str]:
    """Each pod's address in its node's subnet (host-local's range: the gateway .1
    and the VTEP, the subnet's own address, excluded).

    A pod that stays on its node keeps its previous address. The others take the
    lowest free one in lab-file order, so a fresh lab gets what round-robin IPAM
    gave one pod at a time (.2, .3, ...), avoiding addresses this change releases
    (connections may still point at them) while others are free.
    """
    subnets = {n["name"]: ipaddress.IPv4Network(n["podCIDR"]) for n in nodes}
    before = {p["name"]: p for p in (previous or {}).get("pods", []) if p.get("ip")}
    held: dict[str, set[ipaddress.IPv4Address]] = {n: set() for n in subnets}
    ips: dict[str, str] = {}
    for pod in lab.pods:
        old = before.get(pod.name)
        if old is None or old.get("node") != pod.node:
            continue
        ip = ipaddress.IPv4Address(old["ip"])
        subnet = subnets[pod.node]
        if subnet.network_address + 1 < ip < subnet.broadcast_address and ip not in held[pod.node]:
            held[pod.node].add(ip)
            ips[pod.name] = str(ip)
    released = {ipaddress.IPv4Address(p["ip"]) for name, p in before.items()
                if ips.get(name) != p["ip"]}
    # Per node, where the search for the lowest free address resumes: addresses are only
    # taken, never freed, below, so it never moves back (linear in pods, not quadratic).
    fresh = {n: int(s.network_address) + 2 for n, s in subnets.items()}  # avoiding released
    reused = dict(fresh)  # released ones allowed, once no other address is left
    for pod in lab.pods:
        if pod.name in ips:
            continue
        subnet, taken = subnets[pod.node], held[pod.node]
        found = _first_free(subnet, fresh, pod.node, (taken, released))
        if found is None:
            found = _first_free(subnet, reused, pod.node, (taken,))
        if found is None:
            raise ValueError(f"pod subnet {subnet} of {pod.node} has no address left for {pod.name}")
        taken.add(found)
        ips[pod.name] = str(found)
    return ips


def _first_free(subnet: ipaddress.IPv4Network, cursor: dict[str, int], node: str,
                avoid: tuple[set[ipaddress.IPv4Address], ...]) -> ipaddress.IPv4Address | None:
    """The lowest address of `subnet` at or after cursor[node] in none of `avoid`."""
    last = int(subnet.broadcast_address) - 1
    address = cursor[node]
    while address <= last and any(ipaddress.IPv4Address(address) in s for s in avoid):
        address += 1
    cursor[node] = address
    return ipaddress.IPv4Address(address) if address <= last else None


def _pod(pod: Pod, ip: str) -> PodSpec:
    spec: PodSpec = {
        "name": pod.name,
        "namespace": pod.namespace,
        "node": pod.node,
        "ip": ip,
        "labels": dict(pod.labels),
        "containers": [_container(c) for c in pod.containers],
    }
    if pod.termination_grace != DEFAULT_TERMINATION_GRACE:
        spec["terminationGracePeriodSeconds"] = pod.termination_grace
    return spec


def _container(container: Container) -> ContainerSpec:
    spec: ContainerSpec = {"name": container.name, "command": container.command}
    if container.ready_ports:
        spec["readyPorts"] = [[proto, port] for proto, port in container.ready_ports]
    if container.ports:
        spec["ports"] = [_container_port(p) for p in container.ports]
    return spec


def _container_port(port: ContainerPort) -> ContainerPortSpec:
    spec: ContainerPortSpec = {"containerPort": port.container_port, "protocol": port.protocol}
    if port.name:
        spec["name"] = port.name
    return spec


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _probe(seed: int, size: int, taken: set[int]) -> int:
    """Linear probing from a hash seed: stable under unrelated additions."""
    for step in range(size):
        candidate = (seed + step) % size
        if candidate not in taken:
            return candidate
    raise ValueError("range exhausted")


def load_balancer_pool(lab: Lab, node_network: ipaddress.IPv4Network,
                       ) -> ipaddress.IPv4Network | None:
    return lab.load_balancer_pool or default_pool(node_network)


def _load_balancer_ips(lab: Lab, node_network: ipaddress.IPv4Network) -> dict[str, str]:
    """Each LoadBalancer service's IP: the one it asks for, else one of the pool's free
    addresses (hash-seeded, so adding a service moves no other), as MetalLB assigns."""
    pool = load_balancer_pool(lab, node_network)
    wanted = [s for s in lab.services if s.type == "LoadBalancer"]
    if pool is None or not wanted:
        return {}
    off_limits = host_addresses(node_network, len(lab.nodes), len(lab.clients))
    usable = [a for a in pool if a not in off_limits]
    ips = {s.name: s.load_balancer_ip for s in wanted if s.load_balancer_ip}
    taken = {usable.index(ipaddress.IPv4Address(ip)) for ip in ips.values()
             if ipaddress.IPv4Address(ip) in usable}
    for svc in wanted:
        if svc.name not in ips:
            index = _probe(_seed(svc.name), len(usable), taken)
            taken.add(index)
            ips[svc.name] = str(usable[index])
    return ips


def _services(lab: Lab, node_network: ipaddress.IPv4Network) -> list[ServiceSpec]:
    net = lab.service_cidr
    hosts = net.num_addresses - 2
    ip_taken = {int(ipaddress.ip_address(s.cluster_ip)) - int(net.network_address) - 1
                for s in lab.services if s.cluster_ip and s.cluster_ip != HEADLESS}
    low, high = NODE_PORT_RANGE
    port_taken = {p.node_port - low for s in lab.services for p in s.ports if p.node_port}
    out = []
    for svc in lab.services:
        ip = svc.cluster_ip
        if ip is None:
            offset = _probe(_seed(_allocation_name(svc)), hosts, ip_taken)
            ip_taken.add(offset)
            ip = str(net.network_address + 1 + offset)
        out.append(_service(svc, ip, port_taken, high - low + 1))
    lb_ips = _load_balancer_ips(lab, node_network)
    for svc, spec in zip(lab.services, out, strict=True):
        _external_fields(svc, spec, lb_ips.get(svc.name), port_taken, high - low + 1)
    return out


def _allocation_name(svc: Service) -> str:
    """What seeds a service's allocations: its name in `default` (so that addresses labs
    had before namespaces stay), `NAMESPACE/NAME` elsewhere."""
    return svc.name if svc.namespace == "default" else f"{svc.namespace}/{svc.name}"


def _external_fields(svc: Service, spec: ServiceSpec, lb_ip: str | None, port_taken: set[int],
                     span: int) -> None:
    """LoadBalancer and externalIP fields, only where a service has them (a lab without
    them keeps the cluster.json, and generation, it had)."""
    if svc.type == "LoadBalancer":
        spec["loadBalancerIP"] = lb_ip
        if svc.load_balancer_source_ranges:
            spec["loadBalancerSourceRanges"] = list(svc.load_balancer_source_ranges)
        if svc.external_traffic_policy == "Local":
            # After every nodePort, as the API server allocates it: from the same range.
            offset = _probe(_seed(f"{svc.name}/healthCheckNodePort"), span, port_taken)
            port_taken.add(offset)
            spec["healthCheckNodePort"] = NODE_PORT_RANGE[0] + offset
    if svc.external_ips:
        spec["externalIPs"] = list(svc.external_ips)


def _service(svc: Service, cluster_ip: str, port_taken: set[int], span: int) -> ServiceSpec:
    ports: list[ServicePortSpec] = []
    for p in svc.ports:
        node_port = p.node_port
        if svc.type in ("NodePort", "LoadBalancer") and node_port is None:
            offset = _probe(_seed(f"{_allocation_name(svc)}/{p.name}/{p.protocol}"), span,
                            port_taken)
            port_taken.add(offset)
            node_port = NODE_PORT_RANGE[0] + offset
        ports.append({"name": p.name, "port": p.port, "targetPort": p.target_port,
                      "protocol": p.protocol, "nodePort": node_port})
    spec: ServiceSpec = {
        "name": svc.name,
        "namespace": svc.namespace,
        "type": svc.type,
        "clusterIP": cluster_ip,
        "selector": dict(svc.selector),
        "sessionAffinity": svc.session_affinity,
        "sessionAffinityTimeout": svc.affinity_timeout,
        "externalTrafficPolicy": svc.external_traffic_policy,
        "internalTrafficPolicy": svc.internal_traffic_policy,
        "ports": ports,
    }
    if svc.traffic_distribution:
        spec["trafficDistribution"] = svc.traffic_distribution
    return spec
