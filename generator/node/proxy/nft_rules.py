"""kube-proxy's nftables mode (pkg/proxy/nftables): the rules (the proxier: nftables.py).

Everything lives in table `ip kube-proxy`: base chains hooked into netfilter,
the `service-ips` / `service-nodeports` verdict maps that dispatch to one chain
per service port (`service-HASH-ns/svc/proto/port`, with `external-` and
`local-` chains for the traffic policies), one chain per endpoint
(`endpoint-HASH-ns/svc/proto/port__ip/port`) chosen by `numgen random mod N
vmap`, and the `no-endpoint-services` / `no-endpoint-nodeports` maps that
drop or reject what has no endpoint. Each sync is an `nft -f` transaction: a
full one rebuilds the table's fixed parts and every map, a partial one only
what changed (map elements are diffed, as kube-proxy's nftElementStorage does).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from generator.node.proxy.endpoints import Endpoint
from generator.node.proxy.naming import nft_endpoint_base, nft_port_base
from generator.node.proxy.service import Policy, PortInfo, policy

TABLE = "ip kube-proxy"
# Names inside the table, as kube-proxy's nftables proxier has them.
SERVICES_CHAIN = "services"
SERVICE_IPS_MAP = "service-ips"
SERVICE_NODEPORTS_MAP = "service-nodeports"
NODEPORT_IPS_SET = "nodeport-ips"
SERVICE_ENDPOINTS_CHECK_CHAIN = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK_CHAIN = "nodeport-endpoints-check"
NO_ENDPOINT_SERVICES_MAP = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS_MAP = "no-endpoint-nodeports"
REJECT_CHAIN = "reject-chain"
FIREWALL_IPS_MAP = "firewall-ips"
FIREWALL_CHECK_CHAIN = "firewall-check"
MARK_MASQ_CHAIN = "mark-for-masquerade"
MASQUERADING_CHAIN = "masquerading"
CLUSTER_IPS_SET = "cluster-ips"
CLUSTER_IPS_CHECK_CHAIN = "cluster-ips-check"
# Prefixes of the per-service-port and per-endpoint chains and sets.
SERVICE_CHAIN_PREFIX = "service-"
LOCAL_CHAIN_PREFIX = "local-"
EXTERNAL_CHAIN_PREFIX = "external-"
FIREWALL_CHAIN_PREFIX = "firewall-"
ENDPOINT_CHAIN_PREFIX = "endpoint-"
AFFINITY_SET_PREFIX = "affinity-"
TABLE_LINE = f'add table {TABLE} {{ comment "rules for kube-proxy" ; }}'
MASQ_MARK = "0x4000"

# Base chains: name, type, hook, priority (filter before DNAT at dstnat-10, filter at 0).
BASE_CHAINS = [
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-input", "filter", "input", 0),
    ("filter-forward", "filter", "forward", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
]
# Regular chains jumped to from a base chain: (destination, source, match), in order.
JUMP_CHAINS = [
    (NODEPORT_ENDPOINTS_CHECK_CHAIN, "filter-input", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK_CHAIN, "filter-input", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK_CHAIN, "filter-forward", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK_CHAIN, "filter-output", "ct state new"),
    (FIREWALL_CHECK_CHAIN, "filter-prerouting-pre-dnat", "ct state new"),
    (FIREWALL_CHECK_CHAIN, "filter-output-pre-dnat", "ct state new"),
    (SERVICES_CHAIN, "nat-output", ""),
    (SERVICES_CHAIN, "nat-prerouting", ""),
    (MASQUERADING_CHAIN, "nat-postrouting", ""),
    (CLUSTER_IPS_CHECK_CHAIN, "filter-forward", "ct state new"),
    (CLUSTER_IPS_CHECK_CHAIN, "filter-output", "ct state new"),
]
CONTAINERS = {  # name: "set" | "map", flushed by every full sync
    CLUSTER_IPS_SET: "set", SERVICE_IPS_MAP: "map", FIREWALL_IPS_MAP: "map",
    NO_ENDPOINT_SERVICES_MAP: "map", NO_ENDPOINT_NODEPORTS_MAP: "map",
    SERVICE_NODEPORTS_MAP: "map",
}


def is_service_chain(name: str) -> bool:
    return "/" in name  # every per-service and per-endpoint chain name has one


@dataclass
class NftPort:
    """What one service port contributes to the table."""

    info: PortInfo
    chains: dict[str, list[str]] = field(default_factory=dict)  # chain: rules
    sets: dict[str, str] = field(default_factory=dict)  # affinity set: its spec
    elements: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    # (container, key): (value, comment); value "" for a set

    @property
    def key(self) -> str:
        return self.info.key


def _dispatch(info: PortInfo, endpoints: tuple[Endpoint, ...], names: dict[str, str],
              ) -> list[str]:
    rules = []
    if info.affinity is not None:
        for ep in endpoints:
            base = names[ep.address]
            rules.append(f"ip saddr @{AFFINITY_SET_PREFIX}{base} goto {ENDPOINT_CHAIN_PREFIX}{base}")
    vmap = " , ".join(f"{i} : goto {ENDPOINT_CHAIN_PREFIX}{names[ep.address]}"
                       for i, ep in enumerate(endpoints))
    rules.append(f"numgen random mod {len(endpoints)} vmap {{ {vmap} }}")
    return rules


@dataclass(frozen=True)
class _Names:
    cluster: str  # service-HASH-... (Cluster policy chain)
    local: str  # local-HASH-... (Local policy chain)
    external: str  # external-HASH-...
    firewall: str  # firewall-HASH-... (loadBalancerSourceRanges)
    endpoints: dict[str, str]  # endpoint address: HASH-...__ip/port (endpoint chain base)


def service_port_rules(info: PortInfo, node: str, cluster_cidr: str, zone: str = "",
                       node_ip: str = "") -> NftPort:
    """What one service port adds to the table on `node` (in `zone`, at `node_ip`)."""
    proto = info.protocol
    base = nft_port_base(info.namespace, info.service, proto, info.port_name)
    pol = policy(info, node, zone)
    names = _Names(SERVICE_CHAIN_PREFIX + base, LOCAL_CHAIN_PREFIX + base,
                   EXTERNAL_CHAIN_PREFIX + base, FIREWALL_CHAIN_PREFIX + base,
                   {ep.address: nft_endpoint_base(info.namespace, info.service, proto,
                                                  info.port_name, ep.ip, ep.port)
                    for ep in pol.reachable})
    r = NftPort(info)
    _port_elements(r, info, pol, names)
    _policy_chains(r, info, pol, names, cluster_cidr)
    if _uses_firewall(info):
        r.chains[names.firewall] = [_firewall_rule(info, node_ip)]
    for ep in pol.reachable:
        chain = ENDPOINT_CHAIN_PREFIX + names.endpoints[ep.address]
        r.chains[chain].append(f"ip saddr {ep.ip} jump {MARK_MASQ_CHAIN}")
        if info.affinity is not None:
            r.chains[chain].append(
                f"update @{AFFINITY_SET_PREFIX}{names.endpoints[ep.address]} {{ ip saddr }}")
        r.chains[chain].append(f"meta l4proto {proto} dnat to {ep.address}")
    return r


def _uses_firewall(info: PortInfo) -> bool:
    """kube-proxy's nftables usesFWChain: load-balancer IPs with source ranges (whether or
    not there are endpoints, unlike the iptables mode)."""
    return bool(info.lb_ips) and bool(info.source_ranges)


def _firewall_rule(info: PortInfo, node_ip: str) -> str:
    sources = list(info.source_ranges)
    if node_ip and any(ipaddress.ip_address(node_ip) in ipaddress.ip_network(c)
                       for c in info.source_ranges):
        # A node reaching a VIP it holds itself loops back with the VIP as source.
        sources += info.lb_ips
    return f"ip saddr != {{ {' , '.join(sources)} }} drop"


def _port_elements(r: NftPort, info: PortInfo, pol: Policy, names: _Names) -> None:
    """The port's elements of the dispatch, firewall and no-endpoint maps, in kube-proxy's
    order: cluster IP, external IPs, load-balancer IPs, nodePort."""
    proto = info.protocol
    internal = names.local if info.internal_local else names.cluster
    frontend = f"{info.cluster_ip} . {proto} . {info.port}"
    r.elements[(CLUSTER_IPS_SET, info.cluster_ip)] = ("", "")
    if pol.has_internal:
        r.elements[(SERVICE_IPS_MAP, frontend)] = (f"goto {internal}", "")
    else:
        verdict = f"goto {REJECT_CHAIN}" if not pol.has_endpoints else "drop"
        r.elements[(NO_ENDPOINT_SERVICES_MAP, frontend)] = (verdict, info.spn)
    external_verdict = f"goto {REJECT_CHAIN}" if not pol.has_endpoints else "drop"
    for ip in (*info.external_ips, *info.lb_ips):
        key = f"{ip} . {proto} . {info.port}"
        if pol.has_endpoints:
            r.elements[(SERVICE_IPS_MAP, key)] = (f"goto {names.external}", "")
        if ip in info.lb_ips and _uses_firewall(info):
            r.elements[(FIREWALL_IPS_MAP, key)] = (f"goto {names.firewall}", "")
        if not pol.has_external:
            r.elements[(NO_ENDPOINT_SERVICES_MAP, key)] = (external_verdict, info.spn)
    if info.node_port is not None:
        node_port = f"{proto} . {info.node_port}"
        if pol.has_endpoints:
            r.elements[(SERVICE_NODEPORTS_MAP, node_port)] = (f"goto {names.external}", "")
        if not pol.has_external:
            verdict = f"goto {REJECT_CHAIN}" if not pol.has_endpoints else "drop"
            r.elements[(NO_ENDPOINT_NODEPORTS_MAP, node_port)] = (verdict, info.spn)


def _policy_chains(r: NftPort, info: PortInfo, pol: Policy, names: _Names,
                   cluster_cidr: str) -> None:
    """The port's service, local and external chains, its endpoint chains (empty),
    and its affinity sets."""
    cluster, local, external = names.cluster, names.local, names.external
    internal = local if info.internal_local else cluster
    for ep in pol.reachable:
        r.chains[ENDPOINT_CHAIN_PREFIX + names.endpoints[ep.address]] = []
    if pol.cluster:
        r.chains[cluster] = []
    if pol.local:
        r.chains[local] = []
    if pol.has_endpoints and info.externally_accessible:
        r.chains[external] = []
    if pol.has_internal:
        # Masquerade off-cluster traffic to the service IP (it may bounce off-node).
        r.chains[internal].append(f"ip daddr {info.cluster_ip} ip saddr != {cluster_cidr} "
                                  f"jump {MARK_MASQ_CHAIN}")
    if external in r.chains:
        if not info.external_local:
            r.chains[external].append(f"jump {MARK_MASQ_CHAIN}")
        else:
            r.chains[external] += [
                f'ip saddr {cluster_cidr} goto {cluster} comment "short-circuit pod traffic"',
                f'fib saddr type local jump {MARK_MASQ_CHAIN} comment "masquerade local traffic"',
                f'fib saddr type local goto {cluster} comment "short-circuit local traffic"',
            ]
        if pol.has_external:
            r.chains[external].append(f"goto {local if info.external_local else cluster}")
    if info.affinity is not None:
        for ep in pol.reachable:
            r.sets[AFFINITY_SET_PREFIX + names.endpoints[ep.address]] = (
                f"{{ type ipv4_addr ; flags dynamic,timeout ; timeout {info.affinity}s ; }}")
    if pol.cluster:
        r.chains[cluster] += _dispatch(info, pol.cluster, names.endpoints)
    if pol.local:
        r.chains[local] += _dispatch(info, pol.local, names.endpoints)


# ---- transaction text

def _element(container: str, key: str, value: str, note: str) -> str:
    text = key + (f' comment "{note}"' if note else "") + (f" : {value}" if value else "")
    return f"{container} {{ {text} }}"


def setup_lines(node_ip: str, service_cidr: str | None, first: bool) -> list[str]:
    """kube-proxy's setupNFTables: the table's fixed parts, rebuilt by every full sync."""
    out = [TABLE_LINE]
    if first:
        # Once: recreate the base chains, so that changed properties (priorities) apply.
        for name, *_ in BASE_CHAINS:
            out += [f"add chain {TABLE} {name}", f"delete chain {TABLE} {name}"]
    for name, kind, hook, prio in BASE_CHAINS:
        out += [f"add chain {TABLE} {name} {{ type {kind} hook {hook} priority {prio} ; }}",
                f"flush chain {TABLE} {name}"]
    created: set[str] = set()

    def ensure(chain: str) -> None:
        if chain not in created:
            created.add(chain)
            out.extend([f"add chain {TABLE} {chain}", f"flush chain {TABLE} {chain}"])

    for dst, src, match in JUMP_CHAINS:
        ensure(dst)
        out.append(f"add rule {TABLE} {src} {match + ' ' if match else ''}jump {dst}")
    for chain in (SERVICES_CHAIN, CLUSTER_IPS_CHECK_CHAIN, MASQUERADING_CHAIN, MARK_MASQ_CHAIN):
        ensure(chain)
    out += _masquerade_and_cluster_ip_lines(service_cidr)
    out += _no_endpoint_lines(node_ip)
    ensure(FIREWALL_CHECK_CHAIN)
    out += _dispatch_lines()
    out += [f"flush {kind} {TABLE} {name}" for name, kind in CONTAINERS.items()]
    return out


def _masquerade_and_cluster_ip_lines(service_cidr: str | None) -> list[str]:
    t, check = TABLE, CLUSTER_IPS_CHECK_CHAIN
    out = [
        f"add rule {t} {MARK_MASQ_CHAIN} mark set mark or {MASQ_MARK}",
        f"add rule {t} {MASQUERADING_CHAIN} mark and {MASQ_MARK} == 0 return",
        f"add rule {t} {MASQUERADING_CHAIN} mark set mark xor {MASQ_MARK}",
        f"add rule {t} {MASQUERADING_CHAIN} masquerade fully-random",
        f'add set {t} {CLUSTER_IPS_SET} {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}',
        f"add rule {t} {check} ip daddr @{CLUSTER_IPS_SET} reject "
        'comment "Reject traffic to invalid ports of ClusterIPs"',
    ]
    if service_cidr:
        out.append(f"add rule {t} {check} ip daddr {{ {service_cidr} }} drop "
                   'comment "Drop traffic to unallocated ClusterIPs"')
    return out


def _no_endpoint_lines(node_ip: str) -> list[str]:
    t, services, nodeports = TABLE, NO_ENDPOINT_SERVICES_MAP, NO_ENDPOINT_NODEPORTS_MAP
    return [
        # NodePorts on the node's IP (kube-proxy's default --nodeport-addresses: primary).
        f'add set {t} {NODEPORT_IPS_SET} {{ type ipv4_addr ; comment "IPs that accept '
        'NodePort traffic" ; }',
        f"flush set {t} {NODEPORT_IPS_SET}",
        f"add element {t} {NODEPORT_IPS_SET} {{ {node_ip} }}",
        f"add map {t} {services} {{ type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "vmap to drop or reject packets to services with no endpoints" ; }',
        f"add map {t} {nodeports} {{ type inet_proto . inet_service : verdict ; "
        'comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }',
        f'add chain {t} {REJECT_CHAIN} {{ comment "helper for @{services} / @{nodeports}" ; }}',
        f"flush chain {t} {REJECT_CHAIN}",
        f"add rule {t} {REJECT_CHAIN} reject",
        f"add rule {t} {SERVICE_ENDPOINTS_CHECK_CHAIN} ip daddr . meta l4proto . th dport "
        f"vmap @{services}",
        f"add rule {t} {NODEPORT_ENDPOINTS_CHECK_CHAIN} ip daddr @{NODEPORT_IPS_SET} "
        f"meta l4proto . th dport vmap @{nodeports}",
        f"add map {t} {FIREWALL_IPS_MAP} {{ type ipv4_addr . inet_proto . inet_service : "
        'verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }',
    ]


def _dispatch_lines() -> list[str]:
    t = TABLE
    return [
        f"add rule {t} {FIREWALL_CHECK_CHAIN} ip daddr . meta l4proto . th dport "
        f"vmap @{FIREWALL_IPS_MAP}",
        f"add map {t} {SERVICE_IPS_MAP} {{ type ipv4_addr . inet_proto . inet_service : "
        'verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
        f"add map {t} {SERVICE_NODEPORTS_MAP} {{ type inet_proto . inet_service : verdict ; "
        'comment "NodePort traffic" ; }',
        f"add rule {t} {SERVICES_CHAIN} ip daddr . meta l4proto . th dport "
        f"vmap @{SERVICE_IPS_MAP}",
        f"add rule {t} {SERVICES_CHAIN} ip daddr @{NODEPORT_IPS_SET} meta l4proto . th dport "
        f"vmap @{SERVICE_NODEPORTS_MAP}",
    ]


def chain_lines(ports: Iterable[NftPort]) -> list[str]:
    """Affinity sets, then each owned chain created (or emptied) and filled."""
    out = []
    for p in ports:
        for name, spec in p.sets.items():
            out.append(f"add set {TABLE} {name} {spec}")
        for name, rules in p.chains.items():
            out += [f"add chain {TABLE} {name}", f"flush chain {TABLE} {name}"]
            out += [f"add rule {TABLE} {name} {rule}" for rule in rules]
    return out


def element_lines(old: dict[tuple[str, str], tuple[str, str]],
                  new: dict[tuple[str, str], tuple[str, str]]) -> list[str]:
    """From the map and set elements `old` to `new` (nftElementStorage's diff)."""
    out = []
    for (container, key), (value, note) in new.items():
        was = old.get((container, key))
        if was == (value, note):
            continue
        if was is not None:
            out.append(f"delete element {TABLE} {container} {{ {key} }}")
        out.append(f"add element {TABLE} {_element(container, key, value, note)}")
    for container, key in old.keys() - new.keys():
        out.append(f"delete element {TABLE} {container} {{ {key} }}")
    return out


def full_transaction(ports: list[NftPort], node_ip: str, service_cidr: str | None,
                     first: bool = True) -> str:
    """One whole ruleset from nothing (what the golden tests compare)."""
    elements = {k: v for p in ports for k, v in p.elements.items()}
    lines = [*setup_lines(node_ip, service_cidr, first), *chain_lines(ports),
             *element_lines({}, elements)]
    return "\n".join(lines) + "\n"
